#!/usr/bin/env bash
# Times a 1,000,000-row CSV import on PostgreSQL through the same job path as the console's
# upload: `iria-news subscribers import FILE --consent-held --wait` stores the file as an import
# job and runs it from this process (chunks of 5,000 rows, one transaction each).
#
#   cargo build --release && bash bench/import.sh [ROWS]
#
# Needs PostgreSQL on 127.0.0.1:5432 (user root, trust), or IRIA_BENCH_POSTGRES naming a server.
set -euo pipefail
rows="${1:-1000000}"
here="$(cd "$(dirname "$0")/.." && pwd)"
bin="${IRIA_BENCH_BIN:-$here/target/release/iria-news}"
server="${IRIA_BENCH_POSTGRES:-postgres://root@127.0.0.1:5432}"
db="iria_import_bench_$$"
work="$(mktemp -d)"
trap 'psql "$server/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

awk -v n="$rows" 'BEGIN { print "email,name,topics"; for (i = 0; i < n; i++) printf "reader%07d@example.org,Reader %d,Europe;Asia\n", i, i }' > "$work/list.csv"
echo "$(wc -l < "$work/list.csv") lines, $(du -m "$work/list.csv" | cut -f1) MB"

psql "$server/postgres" -qc "CREATE DATABASE $db" >/dev/null
export IRIA_DATABASE_URL="$server/$db?sslmode=disable"
export IRIA_SECRET_KEY="bench-secret-key-of-at-least-32-bytes!!"
export IRIA_SMTP_URL="file://$work/outbox"
"$bin" migrate >/dev/null

start=$(date +%s.%N)
"$bin" subscribers import "$work/list.csv" --source "bench" --consent-held --wait | head -3
end=$(date +%s.%N)
echo "wall time, file to done: $(echo "$end - $start" | bc) s"
psql "$IRIA_DATABASE_URL" -Atc "SELECT 'subscribers: ' || count(*) FROM subscribers UNION ALL SELECT 'consents: ' || count(*) FROM consents"
