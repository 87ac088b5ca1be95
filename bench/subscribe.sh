#!/usr/bin/env bash
# Loads POST /subscriptions with wrk on PostgreSQL and prints sign-ups per second and p99 latency.
#
#   bench/subscribe.sh [DURATION_SECONDS] [CONNECTIONS]
#
# IRIA_BENCH_BIN=PATH runs that binary instead of building this tree's (to compare two builds in
# one sitting). IRIA_BENCH_SPREAD_IPS=1 sends each request from its own client address (an
# `X-Forwarded-For` hop, the server trusting one proxy), as a real form's visitors would; without
# it every sign-up comes from 127.0.0.1 and so updates one per-IP counter.
#
# Needs: wrk (Debian package), PostgreSQL on 127.0.0.1:5432 (or IRIA_BENCH_POSTGRES_URL), and a
# release build (built here if missing). Every request signs up a new address, so each one is a
# full sign-up: subscriber, consent record, token and queued confirmation in one transaction.
# The per-IP and per-address limits are raised by configuration; the delivery worker inside
# `serve` runs as in production and delivers the confirmations meanwhile to Postfix's smtp-sink
# on a loopback port (fetched as `bench/delivery.sh` does; IRIA_SMTP_URL=file://DIR writes them
# to a folder instead). The last line says how many confirmations were delivered during the run.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-20}"
connections="${2:-32}"
admin="${IRIA_BENCH_POSTGRES_URL:-postgres://root@127.0.0.1:5432/postgres}"
# TLS on loopback only burns CPU on both sides.
sslmode="?sslmode=disable"
command -v wrk >/dev/null || { echo "bench: wrk is not installed (apt-get install wrk)" >&2; exit 2; }
sink_port=2527
if [ -z "${IRIA_SMTP_URL:-}" ]; then
  # shellcheck source=bench/postfix.sh
  . bench/postfix.sh
fi

bin="${IRIA_BENCH_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin=./target/release/iria-news
fi
spread="${IRIA_BENCH_SPREAD_IPS:-0}"
db="iria_bench_$$"
work="$(mktemp -d)"
psql "$admin" -qc "CREATE DATABASE $db"
server_pid=""
sink_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  [ -n "$sink_pid" ] && kill "$sink_pid" 2>/dev/null || true
  psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
  rm -rf "$work"
}
trap cleanup EXIT

port=18080
export IRIA_DATABASE_URL="${admin%/*}/$db$sslmode"
if [ -z "${IRIA_SMTP_URL:-}" ]; then
  # The sink: accepts everything, keeps nothing.
  "$sink" -u "$(id -un)" 127.0.0.1:$sink_port 1024 &
  sink_pid=$!
  sleep 0.5
  kill -0 "$sink_pid" 2>/dev/null || { echo "bench: smtp-sink did not start (port $sink_port taken?)" >&2; exit 2; }
  export IRIA_SMTP_URL="smtp://127.0.0.1:$sink_port"
fi
export IRIA_LISTEN="127.0.0.1:$port"
export IRIA_BASE_URL="http://127.0.0.1:$port"
export IRIA_SECRET_KEY="bench-secret-key-bench-secret-key-0123456789"
export IRIA_SIGNUP_PER_IP_PER_HOUR=100000000
export IRIA_SIGNUP_PER_ADDRESS_PER_HOUR=1000
export IRIA_DB_POOL_SIZE="${IRIA_DB_POOL_SIZE:-24}"
export RUST_LOG=warn
if [ "$spread" = 1 ]; then
  # One proxy hop trusted (IRIA_TRUST_FORWARDED_FOR is the older builds' name for it).
  export IRIA_TRUSTED_PROXIES=1 IRIA_TRUST_FORWARDED_FOR=true
fi
"$bin" serve >"$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done

cat >"$work/signup.lua" <<'LUA'
-- Every request signs up an address never seen before: RUN (the script's argument) keeps the
-- warm-up's addresses apart from the measured run's.
local counter = 0
local threads = 0
local run = "x"
local spread = false
function init(args)
  run = args[1] or "x"
  spread = args[2] == "1"
end
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end
function request()
  counter = counter + 1
  local body = "email=reader-" .. run .. "-" .. id .. "-" .. counter .. "%40example.org&name=Bench+Reader&topics=Europe&topics=Defense"
  local headers = {["Content-Type"] = "application/x-www-form-urlencoded"}
  if spread then
    headers["X-Forwarded-For"] = "10." .. id .. "." .. (math.floor(counter / 256) % 256) .. "." .. (counter % 256)
  end
  return wrk.format("POST", "/subscriptions", headers, body)
end
LUA
# A short warm-up, then the measured run.
wrk -t1 -c"$connections" -d3s -s "$work/signup.lua" "http://127.0.0.1:$port" -- warmup "$spread" >/dev/null
wrk -t2 -c"$connections" -d"${duration}s" --latency -s "$work/signup.lua" "http://127.0.0.1:$port" -- measured "$spread" | tee "$work/wrk.txt"

rps=$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.txt")
p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.txt")
errors=$(awk '/Non-2xx or 3xx responses/ {print $NF}' "$work/wrk.txt")
dbq() { psql "${admin%/*}/$db" -Atc "$1"; }
stored=$(dbq "SELECT count(*) FROM subscribers")
sent=$(dbq "SELECT count(*) FROM deliveries WHERE kind = 'confirmation' AND status = 'sent'")
echo
echo "sign-ups/s: $rps   p99: $p99   non-2xx: ${errors:-0}   subscribers stored: $stored   confirmations delivered by then: $sent   (connections: $connections, ${duration}s)"
[ -z "$errors" ] || { echo "bench: some sign-ups failed" >&2; exit 1; }
