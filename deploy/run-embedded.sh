#!/usr/bin/env bash
# `make run`: Visus on a laptop with nothing to install: SQLite, media on disk, a real Celery
# worker on the embedded filesystem broker. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/bootstrap.sh
source deploy/services.sh
ensure_tesseract  # photographs are checked for burned-in text with Tesseract OCR

PY=.venv/bin/python
HOST=${VISUS_HOST:-127.0.0.1}
PORT=${VISUS_PORT:-8000}
export OMP_WAIT_POLICY=PASSIVE
# Static files as in production: hashed names cached for good, gzip and brotli copies (collectstatic below).
export VISUS_STATIC_MANIFEST=1

$PY manage.py migrate --noinput
$PY manage.py collectstatic --noinput >/dev/null
# Trains and registers the demo networks (a few minutes, once); their cross-validation is queued for the worker below,
# which runs it after the demo cases' predictions while the server is already up (demo/cross_validation.py).
# --resume-running: no worker runs yet, so a card still "running" from a run stopped mid-way has no fold running
# and, on this broker, no message left (a fetched message is lost with its worker): it is sent again from fold 1
# rather than waiting until it is stale (the fold task's time limit, 31 minutes).
$PY manage.py seed_demo --resume-running

mkdir -p var/log
# -B: the worker also runs Celery beat (the daily signed anchor of the audit trail).
.venv/bin/celery -A platform_core worker -B --schedule var/celerybeat-schedule -Q default,gpu --concurrency=1 \
  --loglevel=INFO >var/log/worker.log 2>&1 &
WORKER=$!
trap 'kill $WORKER 2>/dev/null; wait $WORKER 2>/dev/null' EXIT INT TERM

echo
echo "Visus is running at http://$HOST:$PORT/  (worker log: var/log/worker.log; Ctrl-C stops)"
echo
export OPENBLAS_NUM_THREADS=1  # one BLAS thread per web worker (see deploy/systemd/visus-web.service)
.venv/bin/gunicorn platform_core.wsgi:application --bind "$HOST:$PORT" --workers 2 --threads 4 \
  --access-logfile - --timeout 120 --control-socket "$(pwd)/var/gunicorn-$PORT.ctl"
