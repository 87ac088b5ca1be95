#!/usr/bin/env bash
# The console under load of data: every page of the console and every list of the API with
# SUBSCRIBERS on file (1,000,000 by default) and an issue sent to them (half of it delivered),
# the median of RUNS loads of each (5), on PostgreSQL
# (IRIA_BENCH_BACKEND=sqlite: on an SQLite file). With IO=io, also the CSV export and an import of
# ROWS new addresses (consent held, then confirmation emails).
# Usage: bench/console.sh [SUBSCRIBERS] [ROWS] [IO]
#   IRIA_BENCH_BIN names the binary (to compare two builds); IRIA_BENCH_RUNS the loads per page;
#   IRIA_BENCH_KEEP=1 keeps the PostgreSQL database afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
subscribers="${1:-1000000}"
rows="${2:-10000}"
io="${3:-}"
runs="${IRIA_BENCH_RUNS:-5}"
backend="${IRIA_BENCH_BACKEND:-postgres}"
admin="${IRIA_BENCH_POSTGRES_URL:-postgres://root@127.0.0.1:5432/postgres}"
db="iria_bench_console"
port="${IRIA_BENCH_PORT:-18093}"
bin="${IRIA_BENCH_BIN:-target/release/iria-news}"
[ -x "$bin" ] || cargo build --release --locked
work=$(mktemp -d)
# The million-row database is dropped at the end (IRIA_BENCH_KEEP=1 keeps it, to look into a plan).
cleanup() {
  kill "${app:-0}" 2>/dev/null && wait "$app" 2>/dev/null
  rm -rf "$work"
  if [ "$backend" != sqlite ] && [ -z "${IRIA_BENCH_KEEP:-}" ]; then
    psql -q "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
if [ "$backend" = sqlite ]; then
  url="sqlite://$work/bench.db"
else
  psql -q "$admin" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  url="${admin%/*}/$db"
fi
export IRIA_DATABASE_URL="$url" IRIA_LISTEN="127.0.0.1:$port" IRIA_BASE_URL="http://127.0.0.1:$port" \
  IRIA_SECRET_KEY="bench-secret-key-of-at-least-32-bytes" IRIA_SMTP_URL="file://$work/outbox" \
  IRIA_DIGEST_SCHEDULE="0 0 8 1 1 * 2099" RUST_LOG=warn
"$bin" migrate >/dev/null
# One in ten unsubscribed, one in 20,000 bounced, one in three reading only "Terrorism"; sign-ups spread
# over 90 days.
# PostgreSQL's statistics are taken at once, as autovacuum would soon after; SQLite's are not
# taken at all, as in a deployment: nothing in IRIA News runs ANALYZE on SQLite, and its queries
# are written for the planner without statistics (with them, the deep page took 81 ms, not 32).
seed_start=$(date +%s.%N)
if [ "$backend" = sqlite ]; then
  sqlite3 "$work/bench.db" "PRAGMA journal_mode=WAL;
  WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < $subscribers)
  INSERT INTO subscribers (email, name, status, topics, created_at, updated_at, confirmed_at, unsubscribed_at)
  SELECT 'reader' || n || '@example.org', 'Reader ' || n, CASE WHEN n % 10 = 0 THEN 'unsubscribed' WHEN n % 20000 = 7 THEN 'bounced' ELSE 'confirmed' END,
         CASE WHEN n % 3 = 0 THEN 'Terrorism' ELSE '' END,
         strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (n % 90) || ' days'), strftime('%Y-%m-%d %H:%M:%f', 'now'),
         strftime('%Y-%m-%d %H:%M:%f', 'now'),
         CASE WHEN n % 10 = 0 THEN strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (n % 60) || ' days') END
  FROM g;" >/dev/null
else
  psql -q "$url" -c "INSERT INTO subscribers (email, name, status, topics, created_at, updated_at, confirmed_at, unsubscribed_at)
    SELECT 'reader' || g || '@example.org', 'Reader ' || g, CASE WHEN g % 10 = 0 THEN 'unsubscribed' WHEN g % 20000 = 7 THEN 'bounced' ELSE 'confirmed' END,
           CASE WHEN g % 3 = 0 THEN 'Terrorism' ELSE '' END,
           now() - (g % 90) * interval '1 day', now(), now(), CASE WHEN g % 10 = 0 THEN now() - (g % 60) * interval '1 day' END
    FROM generate_series(1, $subscribers) g" -c "VACUUM ANALYZE subscribers"
fi
echo "seeded $subscribers subscribers ($backend) in $(echo "$(date +%s.%N) - $seed_start" | bc | cut -c1-5) s"
# An issue to every confirmed reader, half of it sent (as an editor watching a send sees it);
# `serve` sends one a second (IRIA_DELIVERY_RATE_PER_SECOND) so that the counts stay as they are.
echo '<p>An analysis for the bench.</p>' >"$work/issue.html"
queue_start=$(date +%s.%N)
"$bin" send --subject "Bench issue" --html-file "$work/issue.html" >/dev/null
echo "queued the issue to every confirmed reader in $(echo "$(date +%s.%N) - $queue_start" | bc | cut -c1-5) s"
sent="UPDATE deliveries SET status = 'sent', attempts = 1, finished_at = created_at WHERE id % 2 = 0"
if [ "$backend" = sqlite ]; then sqlite3 "$work/bench.db" "$sent" >/dev/null; else psql -q "$url" -c "$sent"; fi
issue=1
printf 'a long enough password' | "$bin" admin create-user bench --password-stdin >/dev/null
token=$("$bin" admin create-token bench --scope subscribers:read,articles:read,issues:read,webhooks:write,audit:read 2>/dev/null)
IRIA_DELIVERY_RATE_PER_SECOND=1 "$bin" serve >"$work/log" 2>&1 &
app=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.2; done
jar="$work/jar"
csrf=$(curl -s -c "$jar" "http://127.0.0.1:$port/admin/login" | sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' | head -1)
curl -s -b "$jar" -c "$jar" -o /dev/null -d "csrf=$csrf&name=bench&password=a+long+enough+password" "http://127.0.0.1:$port/admin/login"
csrf=$(curl -s -b "$jar" "http://127.0.0.1:$port/admin" | sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' | head -1)
median() { sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)] * 1000}'; }
# The median of RUNS loads, in ms, the first load's time (before anything was kept), and the
# status of the last; a status other than 200 is shown.
measure() {
  local path="$1"; shift
  local times status
  times=$(for _ in $(seq "$runs"); do curl -s "$@" -o "$work/body" -w '%{time_total} %{http_code}\n' "http://127.0.0.1:$port$path"; done)
  status=$(echo "$times" | tail -1 | cut -d' ' -f2)
  printf '%-62s %8s ms (first %s ms)%s\n' "GET $path" "$(echo "$times" | cut -d' ' -f1 | median)" \
    "$(echo "$times" | head -1 | cut -d' ' -f1 | median)" "$([ "$status" = 200 ] || echo "  (status $status)")"
}
echo "medians of $runs loads with $subscribers subscribers ($backend), $(basename "$bin"):"
for page in "/admin" "/admin/issues" "/admin/issues/$issue" "/admin/issues/new" "/admin/digest" \
  "/admin/subscribers" "/admin/subscribers?q=reader4242" "/admin/subscribers?q=Reader+99999" \
  "/admin/subscribers?q=example" "/admin/subscribers?q=der+4" "/admin/subscribers?q=42" \
  "/admin/subscribers?q=no-such-reader" \
  "/admin/subscribers?status=confirmed&topic=Terrorism&page=100" "/admin/subscribers?status=unsubscribed" \
  "/admin/subscribers?status=bounced" \
  "/admin/subscribers?page=19000" "/admin/subscribers?before=50000" "/admin/subscribers/4242" \
  "/admin/subscribers/import" "/admin/repermission" "/admin/articles" "/admin/signup-form" "/admin/welcome" \
  "/admin/webhooks" "/admin/accounts" "/admin/sessions" "/admin/audit" "/admin/tokens" "/admin/2fa"; do
  measure "$page" -b "$jar"
done
for list in "/api/v1/subscribers" "/api/v1/subscribers?q=reader4242" "/api/v1/subscribers?q=example" \
  "/api/v1/subscribers?q=der+4" \
  "/api/v1/subscribers?status=confirmed&topic=Terrorism&offset=5000" "/api/v1/subscribers?topic=Terrorism" \
  "/api/v1/subscribers?status=bounced" \
  "/api/v1/subscribers/4242" \
  "/api/v1/articles" "/api/v1/issues" "/api/v1/issues/$issue" "/api/v1/webhooks" "/api/v1/audit"; do
  measure "$list" -H "Authorization: Bearer $token"
done
[ "$io" = io ] || exit 0
t=$(for _ in 1 2 3; do curl -s -b "$jar" -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$port/admin/subscribers/export.csv"; done | median)
echo "GET /admin/subscribers/export.csv ($subscribers rows): median ${t} ms"
for consent in held confirm; do
  { echo "email,name"; for i in $(seq 1 "$rows"); do echo "new-$consent-$i@example.org,New $i"; done; } >"$work/list.csv"
  out=$(curl -s -b "$jar" -w '\n%{http_code} %{time_total}' -F "file=@$work/list.csv;type=text/csv" -F "source=bench" -F "consent=$consent" \
    "http://127.0.0.1:$port/admin/subscribers/import?csrf=$csrf")
  added=$(printf '%s' "$out" | sed -n 's/.*<span id="\(confirmed\|invited\)">\([0-9]*\)<.*/\2/p' | paste -sd+ | bc)
  echo "import $rows rows, consent $consent: $(printf '%s' "$out" | tail -1) (status, seconds); added $added"
done
