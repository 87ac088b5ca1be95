#!/usr/bin/env bash
# Queues one issue to N confirmed subscribers and delivers it to Postfix's smtp-sink, on
# PostgreSQL and on SQLite; in the same run, Postfix's smtp-source sends the same number of
# messages of the same size over the same number of connections to the same sink. Prints
# emails/s for both, their ratio, the time to queue and the peak RSS of the sending process.
#
#   bench/delivery.sh [SUBSCRIBERS] [CONNECTIONS]      (defaults: 100000 8)
#
# IRIA_BENCH_BIN=PATH runs that binary instead of building this tree's. IRIA_CLICK_TRACKING
# (off, anonymous, personal) is passed on: run the script once per mode to see what tracked links
# cost.
#
# Needs PostgreSQL on 127.0.0.1:5432 (or IRIA_BENCH_POSTGRES_URL), sqlite3, and smtp-sink and
# smtp-source from Debian's postfix package: fetched here with `apt-get download` and unpacked
# with `dpkg -x` (postfix itself is not installed).
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-100000}"
conns="${2:-8}"
admin="${IRIA_BENCH_POSTGRES_URL:-postgres://root@127.0.0.1:5432/postgres}"
port=2526

tools="${IRIA_BENCH_POSTFIX_DIR:-$HOME/.cache/iria-news-bench/postfix}"
if [ ! -x "$tools/usr/sbin/smtp-sink" ]; then
  mkdir -p "$tools"
  (cd "$tools" && apt-get download postfix >/dev/null 2>&1 && dpkg -x postfix_*.deb . && rm -f postfix_*.deb)
fi
export LD_LIBRARY_PATH="$tools/usr/lib/postfix${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
sink="$tools/usr/sbin/smtp-sink"
source_="$tools/usr/sbin/smtp-source"

bin="${IRIA_BENCH_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin=./target/release/iria-news
fi
work="$(mktemp -d)"
sink_pid=""
dbs=()
cleanup() {
  [ -n "$sink_pid" ] && kill "$sink_pid" 2>/dev/null || true
  for db in "${dbs[@]}"; do psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# The sink: accepts everything, keeps nothing.
"$sink" -u "$(id -un)" 127.0.0.1:$port 1024 &
sink_pid=$!
sleep 0.5

cat >"$work/issue.html" <<'HTML'
<h1>IRIA News, week of 23 November 2026</h1>
<p>US and Iraqi defense chiefs met in Washington to discuss the future of the coalition against ISIS.
The Joint Security Cooperation Dialogue aims at a transition to a sustainable bilateral security
partnership, ten years after the Global Coalition's military mission in Iraq began.</p>
<h2>Also this week</h2>
<ul><li><a href="https://www.ir-ia.com/europe-defence-spending/">Europe's defence spending after the summit</a></li>
<li><a href="https://www.ir-ia.com/sahel-counter-terrorism/">Counter-terrorism cooperation in the Sahel</a></li>
<li><a href="https://www.ir-ia.com/red-sea-shipping/">Analysis: the Red Sea shipping crisis</a></li></ul>
<p><a href="https://www.ir-ia.com/">All analysis on ir-ia.com</a></p>
HTML

export IRIA_SECRET_KEY="bench-secret-key-bench-secret-key-0123456789"
export IRIA_BASE_URL="https://news.iria.example"
export IRIA_FROM="IRIA News <news@iria.example>"
export IRIA_DELIVERY_CONCURRENCY="$conns"
export IRIA_DELIVERY_BATCH_SIZE="${IRIA_DELIVERY_BATCH_SIZE:-200}"
export RUST_LOG=warn

# The size of one message as sent: one copy written to a file.
(
  export IRIA_DATABASE_URL="sqlite://$work/size.db" IRIA_SMTP_URL="file://$work/size"
  $bin migrate >/dev/null
  sqlite3 "$work/size.db" "INSERT INTO subscribers (email, status, topics, created_at, updated_at) VALUES ('r1@example.org', 'confirmed', '', datetime('now'), datetime('now'))"
  $bin send --subject "IRIA News, week of 23 November 2026: 5 new articles" --html-file "$work/issue.html" --wait >/dev/null
)
size=$(stat -c %s "$work"/size/*.eml | head -n1)

# Runs one backend: fills it, then `send --wait` queues and delivers, under /usr/bin/time.
run() {
  local name="$1" url="$2" fill="$3"
  export IRIA_DATABASE_URL="$url" IRIA_SMTP_URL="smtp://127.0.0.1:$port"
  $bin migrate >/dev/null
  eval "$fill"
  /usr/bin/time -f "%M" -o "$work/$name.rss" \
    $bin send --subject "IRIA News, week of 23 November 2026: 5 new articles" --html-file "$work/issue.html" --wait \
    >"$work/$name.out"
  local queue_ms seconds rss
  queue_ms=$(sed -n 's/.* in \([0-9]*\) ms$/\1/p' "$work/$name.out" | head -n1)
  seconds=$(tail -n1 "$work/$name.out" | sed -n 's/.*(\([0-9.]*\) s)$/\1/p')
  rss=$(tail -n1 "$work/$name.rss")
  grep -q "sent $n, failed 0, bounced 0, skipped 0, waiting 0" "$work/$name.out" || { echo "bench: $name did not send all:" >&2; tail -n2 "$work/$name.out" >&2; exit 1; }
  printf '%s\t%s\t%s\t%s\n' "$name" "$queue_ms" "$seconds" "$rss" >>"$work/results"
}

pg_db="iria_bench_delivery_$$"
dbs+=("$pg_db")
psql "$admin" -qc "CREATE DATABASE $pg_db"
pg_url="${admin%/*}/$pg_db?sslmode=disable"
run postgres "$pg_url" "psql '${admin%/*}/$pg_db' -qc \"INSERT INTO subscribers (email, status, topics, created_at, updated_at) SELECT 'reader' || g || '@example.org', 'confirmed', '', now(), now() FROM generate_series(1, $n) g\""
run sqlite "sqlite://$work/bench.db" "sqlite3 '$work/bench.db' \"WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < $n) INSERT INTO subscribers (email, status, topics, created_at, updated_at) SELECT 'reader' || i || '@example.org', 'confirmed', '', datetime('now'), datetime('now') FROM g\""

# smtp-source: the same number of messages, of the same size, over the same connections.
start=$(date +%s.%N)
"$source_" -l "$size" -m "$n" -s "$conns" -f news@iria.example -t reader@example.org 127.0.0.1:$port
end=$(date +%s.%N)
source_rate=$(echo "$n / ($end - $start)" | bc -l)

echo
printf 'messages: %d of %d bytes, %d connections\n' "$n" "$size" "$conns"
printf 'smtp-source: %.0f emails/s\n' "$source_rate"
while IFS=$'\t' read -r name queue_ms seconds rss; do
  rate=$(echo "$n / $seconds" | bc -l)
  ratio=$(echo "$rate / $source_rate" | bc -l)
  printf '%-9s %.0f emails/s, ratio to smtp-source %.2f, queued in %s ms, peak RSS %.1f MB\n' \
    "$name:" "$rate" "$ratio" "$queue_ms" "$(echo "$rss / 1024" | bc -l)"
done <"$work/results"
