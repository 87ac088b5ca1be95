#!/usr/bin/env bash
# The console under load of data: the dashboard and a subscriber search with SUBSCRIBERS on file,
# and a CSV import of ROWS new addresses (consent held, then confirmation emails), on PostgreSQL.
# Prints the median of 5 page loads and the import's wall time. Usage: bench/console.sh [SUBSCRIBERS] [ROWS]
set -euo pipefail
cd "$(dirname "$0")/.."
subscribers="${1:-100000}"
rows="${2:-10000}"
admin="${IRIA_BENCH_POSTGRES_URL:-postgres://root@127.0.0.1:5432/postgres}"
db="iria_bench_console"
port=18093
bin=target/release/iria-news
[ -x "$bin" ] || cargo build --release --locked
work=$(mktemp -d)
trap 'kill "${app:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
psql -q "$admin" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
url="${admin%/*}/$db"
export IRIA_DATABASE_URL="$url" IRIA_LISTEN="127.0.0.1:$port" IRIA_BASE_URL="http://127.0.0.1:$port" \
  IRIA_SECRET_KEY="bench-secret-key-of-at-least-32-bytes" IRIA_SMTP_URL="file://$work/outbox" \
  IRIA_DIGEST_SCHEDULE="0 0 8 1 1 * 2099" RUST_LOG=warn
"$bin" migrate >/dev/null
psql -q "$url" -c "INSERT INTO subscribers (email, name, status, topics, created_at, updated_at, confirmed_at, unsubscribed_at)
  SELECT 'reader' || g || '@example.org', 'Reader ' || g, CASE WHEN g % 10 = 0 THEN 'unsubscribed' ELSE 'confirmed' END,
         CASE WHEN g % 3 = 0 THEN 'Terrorism' ELSE '' END,
         now() - (g % 90) * interval '1 day', now(), now(), CASE WHEN g % 10 = 0 THEN now() - (g % 60) * interval '1 day' END
  FROM generate_series(1, $subscribers) g"
printf 'a long enough password' | "$bin" admin create-user bench --password-stdin >/dev/null
"$bin" serve >"$work/log" 2>&1 &
app=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.2; done
jar="$work/jar"
csrf=$(curl -s -c "$jar" "http://127.0.0.1:$port/admin/login" | sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' | head -1)
curl -s -b "$jar" -c "$jar" -o /dev/null -d "csrf=$csrf&name=bench&password=a+long+enough+password" "http://127.0.0.1:$port/admin/login"
csrf=$(curl -s -b "$jar" "http://127.0.0.1:$port/admin" | sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' | head -1)
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for page in "/admin" "/admin/subscribers?q=reader4242" "/admin/subscribers?status=confirmed&topic=Terrorism&page=100"; do
  t=$(for _ in 1 2 3 4 5; do curl -s -b "$jar" -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$port$page"; done | median)
  echo "GET $page with $subscribers subscribers: median ${t}s"
done
t=$(for _ in 1 2 3; do curl -s -b "$jar" -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$port/admin/subscribers/export.csv"; done | median)
echo "GET /admin/subscribers/export.csv ($subscribers rows): median ${t}s"
for consent in held confirm; do
  { echo "email,name"; for i in $(seq 1 "$rows"); do echo "new-$consent-$i@example.org,New $i"; done; } >"$work/list.csv"
  out=$(curl -s -b "$jar" -w '\n%{http_code} %{time_total}' -F "file=@$work/list.csv;type=text/csv" -F "source=bench" -F "consent=$consent" \
    "http://127.0.0.1:$port/admin/subscribers/import?csrf=$csrf")
  added=$(printf '%s' "$out" | sed -n 's/.*<span id="\(confirmed\|invited\)">\([0-9]*\)<.*/\2/p' | paste -sd+ | bc)
  echo "import $rows rows, consent $consent: $(printf '%s' "$out" | tail -1) (status, seconds); added $added"
done
