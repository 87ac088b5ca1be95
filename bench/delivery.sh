#!/usr/bin/env bash
# Delivers a digest-sized issue to N confirmed subscribers through Postfix's smtp-sink, on
# PostgreSQL and on SQLite, unsigned and DKIM-signed; in the same run, Postfix's smtp-source sends
# the same number of messages of the same size over the same number of connections, keeping them
# open between messages (`-d`, as IRIA's connection pool does), just before and just after each
# of IRIA's runs. Prints emails/s for each, the ratio to smtp-source (to the mode's first
# measurement, and to the mean of the two around the run), the time to queue and the peak RSS of
# the sending process.
#
#   bench/delivery.sh [SUBSCRIBERS] [CONNECTIONS]      (defaults: 100000 8)
#
# The issue is a real digest: `bench/feed.sh` writes a feed of 40 articles, `articles import`
# stores them and `digest run --force --wait` renders, queues and delivers the digest (about
# 55 KB a copy, HTML and text).
#
# IRIA_BENCH_DKIM: the signing modes to run, space-separated, among `off`, `rsa` (RSA-2048,
# rsa-sha256), `ed25519` (ed25519-sha256, RFC 8463) and `both` (the two signatures on each
# message); default "off rsa". IRIA_BENCH_BACKENDS: "postgres sqlite" (default) or either alone.
# IRIA_BENCH_BIN=PATH runs that binary instead of building this tree's. IRIA_CLICK_TRACKING (off,
# anonymous, personal) is passed on.
#
# Needs PostgreSQL on 127.0.0.1:5432 (or IRIA_BENCH_POSTGRES_URL), sqlite3, openssl, and
# smtp-sink and smtp-source from Debian's postfix package: fetched here with `apt-get download`
# and unpacked with `dpkg -x` (postfix itself is not installed).
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-100000}"
conns="${2:-8}"
modes="${IRIA_BENCH_DKIM:-off rsa}"
backends="${IRIA_BENCH_BACKENDS:-postgres sqlite}"
admin="${IRIA_BENCH_POSTGRES_URL:-postgres://root@127.0.0.1:5432/postgres}"
port=2526

# shellcheck source=bench/postfix.sh
. bench/postfix.sh

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

bench/feed.sh >"$work/feed.xml"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 2>/dev/null | openssl rsa -traditional -out "$work/rsa.pem" 2>/dev/null
openssl genpkey -algorithm ed25519 -out "$work/ed25519.pem" 2>/dev/null

export IRIA_SECRET_KEY="bench-secret-key-bench-secret-key-0123456789"
export IRIA_BASE_URL="https://news.iria.example"
export IRIA_FROM="IRIA News <news@iria.example>"
export IRIA_DELIVERY_CONCURRENCY="$conns"
export RUST_LOG=warn

# The signing settings of one mode.
dkim_env() {
  unset IRIA_DKIM_DOMAIN IRIA_DKIM_SELECTOR IRIA_DKIM_KEY_FILE IRIA_DKIM_ED25519_SELECTOR IRIA_DKIM_ED25519_KEY_FILE
  case "$1" in
    off) ;;
    rsa) export IRIA_DKIM_DOMAIN=iria.example IRIA_DKIM_SELECTOR=rsa2026 IRIA_DKIM_KEY_FILE="$work/rsa.pem" ;;
    ed25519) export IRIA_DKIM_DOMAIN=iria.example IRIA_DKIM_SELECTOR=ed2026 IRIA_DKIM_KEY_FILE="$work/ed25519.pem" ;;
    both) export IRIA_DKIM_DOMAIN=iria.example IRIA_DKIM_SELECTOR=rsa2026 IRIA_DKIM_KEY_FILE="$work/rsa.pem" \
        IRIA_DKIM_ED25519_SELECTOR=ed2026 IRIA_DKIM_ED25519_KEY_FILE="$work/ed25519.pem" ;;
    *) echo "bench: unknown IRIA_BENCH_DKIM mode $1" >&2; exit 1 ;;
  esac
}

# The size of one message as sent, in a mode: one copy written to a file.
size_of() {
  (
    dkim_env "$1"
    export IRIA_DATABASE_URL="sqlite://$work/size-$1.db" IRIA_SMTP_URL="file://$work/size-$1"
    $bin migrate >/dev/null
    sqlite3 "$work/size-$1.db" "INSERT INTO subscribers (email, status, topics, created_at, updated_at) VALUES ('r1@example.org', 'confirmed', '', datetime('now'), datetime('now'))"
    $bin articles import "$work/feed.xml" >/dev/null
    $bin digest run --force --wait >/dev/null
  )
  stat -c %s "$work"/size-"$1"/*.eml | head -n1
}

# One backend in one mode: fills it, then `digest run --force --wait` queues and delivers,
# under /usr/bin/time.
run() {
  local name="$1" url="$2" fill="$3" mode="$4"
  (
    dkim_env "$mode"
    export IRIA_DATABASE_URL="$url" IRIA_SMTP_URL="smtp://127.0.0.1:$port"
    $bin migrate >/dev/null
    eval "$fill"
    $bin articles import "$work/feed.xml" >/dev/null
    /usr/bin/time -f "%M" -o "$work/$name-$mode.rss" \
      $bin digest run --force --wait >"$work/$name-$mode.out"
  )
  local queue_ms seconds rss
  queue_ms=$(sed -n 's/.* in \([0-9]*\) ms$/\1/p' "$work/$name-$mode.out" | head -n1)
  seconds=$(tail -n1 "$work/$name-$mode.out" | sed -n 's/.*(\([0-9.]*\) s)$/\1/p')
  rss=$(tail -n1 "$work/$name-$mode.rss")
  grep -q "sent $n, failed 0, bounced 0, skipped 0, waiting 0" "$work/$name-$mode.out" || { echo "bench: $name ($mode) did not send all:" >&2; tail -n2 "$work/$name-$mode.out" >&2; exit 1; }
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$mode" "$queue_ms" "$seconds" "$rss" >>"$work/results"
  # Whether the rate holds as the queue empties: the rate up to the progress line nearest the
  # half, and after it.
  sed -n 's/.*: sent \([0-9]*\), .*(\([0-9.]*\) s)$/\1 \2/p' "$work/$name-$mode.out" |
    awk -v n="$n" -v name="$name" -v mode="$mode" '
      { sent[NR] = $1; at[NR] = $2 }
      END {
        best = 0
        for (i = 1; i < NR; i++) if (best == 0 || (sent[i] - n / 2) ^ 2 < (sent[best] - n / 2) ^ 2) best = i
        if (best == 0 || at[best] <= 0 || at[NR] <= at[best]) exit
        printf "%s\t%s\t%d\t%.0f\t%.0f\n", name, mode, sent[best], sent[best] / at[best], (sent[NR] - sent[best]) / (at[NR] - at[best])
      }' >>"$work/halves"
}

# smtp-source: the same number of messages, of the same size, over the same connections kept
# open.
source_rate() {
  local size="$1" start end
  start=$(date +%s.%N)
  "$source_" -d -l "$size" -m "$n" -s "$conns" -f news@iria.example -t reader@example.org 127.0.0.1:$port
  end=$(date +%s.%N)
  echo "$n / ($end - $start)" | bc -l
}

pg_fill() {
  echo "psql '${admin%/*}/$1' -qc \"INSERT INTO subscribers (email, status, topics, created_at, updated_at) SELECT 'reader' || g || '@example.org', 'confirmed', '', now(), now() FROM generate_series(1, $n) g\""
}
lite_fill() {
  echo "sqlite3 '$1' \"WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < $n) INSERT INTO subscribers (email, status, topics, created_at, updated_at) SELECT 'reader' || i || '@example.org', 'confirmed', '', datetime('now'), datetime('now') FROM g\""
}

: >"$work/results"
: >"$work/halves"
: >"$work/sources"
: >"$work/around"
for mode in $modes; do
  size=$(size_of "$mode")
  first=1
  for backend in $backends; do
    # On a shared machine the reference itself moves by half between one minute and the next:
    # each run is also compared with smtp-source measured just before and just after it. The
    # mode's reference below is the first of these.
    before=$(source_rate "$size")
    if [ "$first" = 1 ]; then
      printf '%s\t%s\t%s\n' "$mode" "$size" "$before" >>"$work/sources"
      first=0
    fi
    case "$backend" in
      postgres)
        pg_db="iria_bench_delivery_$$_$mode"
        dbs+=("$pg_db")
        psql "$admin" -qc "CREATE DATABASE $pg_db"
        run postgres "${admin%/*}/$pg_db?sslmode=disable" "$(pg_fill "$pg_db")" "$mode"
        psql "$admin" -qc "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null
        ;;
      sqlite)
        run sqlite "sqlite://$work/bench-$mode.db" "$(lite_fill "$work/bench-$mode.db")" "$mode"
        rm -f "$work/bench-$mode.db"*
        ;;
    esac
    printf '%s\t%s\t%s\t%s\n' "$backend" "$mode" "$before" "$(source_rate "$size")" >>"$work/around"
  done
done

echo
printf '%d messages, %d connections kept open\n' "$n" "$conns"
while IFS=$'\t' read -r mode size rate; do
  printf 'smtp-source -d (%s, %d B): %.0f emails/s\n' "$mode" "$size" "$rate"
done <"$work/sources"
while IFS=$'\t' read -r name mode queue_ms seconds rss; do
  source=$(awk -F'\t' -v m="$mode" '$1 == m { print $3 }' "$work/sources")
  rate=$(echo "$n / $seconds" | bc -l)
  ratio=$(echo "$rate / $source" | bc -l)
  printf '%-9s DKIM %-8s %.0f emails/s, ratio to smtp-source %.2f, queued in %s ms, peak RSS %.1f MB\n' \
    "$name:" "$mode" "$rate" "$ratio" "$queue_ms" "$(echo "$rss / 1024" | bc -l)"
done <"$work/results"
while IFS=$'\t' read -r name mode before after; do
  seconds=$(awk -F'\t' -v b="$name" -v m="$mode" '$1 == b && $2 == m { print $4 }' "$work/results")
  rate=$(echo "$n / $seconds" | bc -l)
  printf '%-9s DKIM %-8s smtp-source just before %.0f/s, just after %.0f/s: ratio %.2f to their mean\n' \
    "$name:" "$mode" "$before" "$after" "$(echo "2 * $rate / ($before + $after)" | bc -l)"
done <"$work/around"
while IFS=$'\t' read -r name mode mid first second; do
  printf '%-9s DKIM %-8s the first %d: %.0f emails/s; the rest: %.0f emails/s\n' "$name:" "$mode" "$mid" "$first" "$second"
done <"$work/halves"
