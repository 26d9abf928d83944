#!/usr/bin/env bash
# `make test`: install what the tests need, start the services they need, lint, run the suite on
# PostgreSQL + Redis + a live Celery worker + SeaweedFS S3 + headless Chromium.
# Extra arguments go to `manage.py test` (e.g. `make test ARGS=tests.platform_core`).
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/services.sh

deploy/bootstrap.sh
ensure_chromium
ensure_tesseract
ensure_postgres
ensure_redis
ensure_rabbitmq

S3_DIR="$(pwd)/var/ci/seaweedfs"
trap 'stop_seaweedfs "$S3_DIR"' EXIT
start_seaweedfs "$S3_DIR"

echo "Lint (ruff)..."
.venv/bin/ruff check .
.venv/bin/ruff format --check . >/dev/null || { .venv/bin/ruff format --diff . | head -50; echo "ERROR: ruff format would change files (run: .venv/bin/ruff format .)" >&2; exit 1; }
echo "Lint (import-linter: layers and pure cores, contracts in pyproject.toml)..."
.venv/bin/lint-imports --no-cache --no-logo
echo "Types (mypy: strict on the pure cores, services and selectors)..."
.venv/bin/mypy
echo "Migrations (every model change has its migration)..."
.venv/bin/python manage.py makemigrations --check --dry-run

export DJANGO_ENV=development
export DATABASE_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/visus}
export CELERY_BROKER_URL=${TEST_CELERY_BROKER_URL:-redis://127.0.0.1:6379/14}
export CELERY_RESULT_BACKEND=$CELERY_BROKER_URL
export VISUS_TEST_RABBITMQ_URL=${VISUS_TEST_RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672//}
export VISUS_DATA_DIR="$(pwd)/var/test"
# Tests that need a real service fail (never skip) when it is missing.
export VISUS_REQUIRE_SERVICES=1
export OMP_WAIT_POLICY=PASSIVE
export PYTHONUNBUFFERED=1
mkdir -p "$VISUS_DATA_DIR"
.venv/bin/python manage.py test --noinput ${ARGS:-}

# After the suite: the audit trail of a real installation verifies. A fresh database takes the demo's writes
# (every service that records an event on the way), then verify_audit_trail checks the keyed chain, writes a
# signed anchor, and checks again against it.
# Only for the whole suite (make test with no ARGS), as .ci/run runs it.
[ -n "${ARGS:-}" ] && exit 0
echo "Audit trail: fresh database, seed_demo's writes, verify_audit_trail..."
AUDIT_DB=${TEST_AUDIT_DB:-visus_ci_audit}
psql -h 127.0.0.1 -U postgres -q -c "DROP DATABASE IF EXISTS $AUDIT_DB" -c "CREATE DATABASE $AUDIT_DB" postgres
AUDIT_DATA=$(mktemp -d)
(
  export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$AUDIT_DB VISUS_DATA_DIR=$AUDIT_DATA
  .venv/bin/python manage.py migrate --noinput >/dev/null
  .venv/bin/python manage.py seed_demo --skip-models >/dev/null
  .venv/bin/python manage.py verify_audit_trail --anchor
  .venv/bin/python manage.py verify_audit_trail
)
rm -rf "$AUDIT_DATA"
psql -h 127.0.0.1 -U postgres -q -c "DROP DATABASE IF EXISTS $AUDIT_DB" postgres
