#!/usr/bin/env bash
# Loads GET /r/{token} (a tracked link) with wrk on SQLite and on PostgreSQL and prints
# redirects per second and p99 latency for each.
#
#   bench/clicks.sh [DURATION_SECONDS] [CONNECTIONS] [MODE]
#
# MODE is IRIA_CLICK_TRACKING (anonymous by default; personal to load per-copy rows). Every
# request is a real click: checked token, address from memory, 302, and the click handed to the
# recorder, which writes once a second (wrk's requests have no user agent, so they are counted as
# machine clicks, which costs the same). The script checks afterwards that the clicks were written.
#
# IRIA_BENCH_BIN=PATH runs that binary instead of building this tree's.
# Needs: wrk (Debian package), sqlite3, PostgreSQL on 127.0.0.1:5432 (or IRIA_BENCH_POSTGRES_URL).
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10}"
connections="${2:-32}"
mode="${3:-anonymous}"
admin="${IRIA_BENCH_POSTGRES_URL:-postgres://root@127.0.0.1:5432/postgres}"
command -v wrk >/dev/null || { echo "bench: wrk is not installed (apt-get install wrk)" >&2; exit 2; }
command -v sqlite3 >/dev/null || { echo "bench: sqlite3 is not installed" >&2; exit 2; }

bin="${IRIA_BENCH_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin=./target/release/iria-news
fi
bin="$(realpath "$bin")"
work="$(mktemp -d)"
pg_db="iria_clicks_$$"
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  psql "$admin" -qc "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

port=18090
export IRIA_LISTEN="127.0.0.1:$port"
export IRIA_BASE_URL="http://127.0.0.1:$port"
export IRIA_SECRET_KEY="bench-secret-key-bench-secret-key-0123456789"
export IRIA_CLICK_TRACKING="$mode"
export IRIA_DB_POOL_SIZE=16
export RUST_LOG=warn
cat >"$work/issue.html" <<'HTML'
<h1>This week</h1>
<p><a href="https://www.ir-ia.com/analysis/one">One</a>, <a href="https://www.ir-ia.com/analysis/two">two</a>
and <a href="https://www.ir-ia.com/analysis/three">three</a>.</p>
HTML

# Runs one backend: one reader, one issue sent to a folder, then wrk on the copy's first link.
run() {
  local name="$1" url="$2" count_sql="$3" query="$4"
  export IRIA_DATABASE_URL="$url"
  export IRIA_SMTP_URL="file://$work/$name-outbox"
  "$bin" migrate >/dev/null
  eval "$query \"INSERT INTO subscribers (email, status, topics, created_at, updated_at) VALUES ('reader@example.org', 'confirmed', '', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)\""
  "$bin" send --subject "Clicks bench" --html-file "$work/issue.html" --wait >/dev/null
  local link
  link=$(cat "$work/$name-outbox"/*.eml | tr -d '\r' | sed -e ':a;/=$/{N;s/=\n//;ba}' \
    | grep -o "http://127.0.0.1:$port/r/[A-Za-z0-9_-]*" | head -n1)
  [ -n "$link" ] || { echo "bench: no tracked link in the $name copy" >&2; exit 1; }
  "$bin" serve >"$work/$name-serve.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
  wrk -t1 -c"$connections" -d2s "$link" >"$work/$name-warmup.txt"
  wrk -t2 -c"$connections" -d"${duration}s" --latency "$link" | tee "$work/$name-wrk.txt"
  kill -TERM "$server_pid"; wait "$server_pid" || true; server_pid=""
  local rps p99 requests counted
  rps=$(awk '/^Requests\/sec/ {print $2}' "$work/$name-wrk.txt")
  p99=$(awk '$1 == "99%" {print $2}' "$work/$name-wrk.txt")
  requests=$(cat "$work/$name-warmup.txt" "$work/$name-wrk.txt" | awk '/requests in/ {n += $1} END {print n}')
  counted=$(eval "$query \"$count_sql\"")
  printf '%s: redirects/s %s   p99 %s   clicks written after SIGTERM %s of %s requests (warm-up included)\n' \
    "$name" "$rps" "$p99" "$counted" "$requests" | tee -a "$work/summary.txt"
}

count_sql="SELECT (SELECT COALESCE(SUM(clicks + machine_clicks), 0) FROM issue_links) + (SELECT COUNT(*) FROM clicks)"
run sqlite "sqlite://$work/bench.db" "$count_sql" "sqlite3 '$work/bench.db'"
psql "$admin" -qc "CREATE DATABASE $pg_db"
run postgres "${admin%/*}/$pg_db?sslmode=disable" "$count_sql" "psql -Atq '${admin%/*}/$pg_db' -c"
echo
echo "mode $mode, $connections connections, ${duration}s:"
cat "$work/summary.txt"
