.PHONY: run test lint format bench

# Runs the product on this machine with embedded services and demo data.
run:
	deploy/run-embedded.sh

# Installs what the tests need, starts the services, lints, and runs `python manage.py test`.
test:
	deploy/test.sh

lint:
	deploy/bootstrap.sh && .venv/bin/ruff check . && .venv/bin/ruff format --check . && \
	.venv/bin/lint-imports --no-cache --no-logo && .venv/bin/mypy && \
	.venv/bin/python manage.py makemigrations --check --dry-run

format:
	.venv/bin/ruff format . && .venv/bin/ruff check --fix .

# Benchmarks print figures (speed and memory targets); they are not part of make test.
bench:
	deploy/bootstrap.sh && .venv/bin/pip install --quiet -r requirements-bench.txt && \
	OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m tests.benchmarks $(ARGS)
