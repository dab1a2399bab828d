# Two commands for a newcomer: `make run` and `make test`. See README.md.
PY := .venv/bin/python
export DJANGO_SETTINGS_MODULE := athena_admin.settings

.PHONY: run test setup lint bench

.venv/.installed: requirements.txt
	python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q -r requirements.txt
	touch $@

setup: .venv/.installed
	$(PY) manage.py migrate --noinput
	$(PY) manage.py bootstrap
	$(PY) manage.py ensure_oidc_key
	$(PY) scripts/make_tiny_model.py

run: setup
	.venv/bin/honcho start -f Procfile

# The suite needs PostgreSQL and Redis on 127.0.0.1 (see README); DATABASE_URL= runs it on SQLite.
test: .venv/.installed
	DATABASE_URL=$${DATABASE_URL-postgres://postgres@127.0.0.1:5432/athena} $(PY) -m pytest

lint: .venv/.installed
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy routing mlx_server athena_admin backends

# Every benchmark, each printing a table of ratios against a reference measured in the same
# run; the figures go to docs/benchmarks.md. Needs PostgreSQL for the Celery benchmarks.
BENCH_DB ?= postgres://postgres@127.0.0.1:5432/athena_bench
bench: .venv/.installed var/litellm-venv/.installed
	$(PY) bench/router_bench.py
	$(PY) bench/gateway_bench.py
	$(PY) bench/mlx_bench.py
	DATABASE_URL=$(BENCH_DB) $(PY) bench/probe_bench.py
	DATABASE_URL=$(BENCH_DB) $(PY) bench/rollup_bench.py

# The peer the gateway is measured against, in its own venv so its pins never touch ours.
LITELLM_VERSION ?= 1.108.7
var/litellm-venv/.installed:
	python3 -m venv var/litellm-venv
	var/litellm-venv/bin/pip install -q 'litellm[proxy]==$(LITELLM_VERSION)'
	touch $@
