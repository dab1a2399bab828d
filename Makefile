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

run: setup
	.venv/bin/honcho start -f Procfile

# The suite needs PostgreSQL and Redis on 127.0.0.1 (see README); DATABASE_URL= runs it on SQLite.
test: .venv/.installed
	DATABASE_URL=$${DATABASE_URL-postgres://postgres@127.0.0.1:5432/athena} $(PY) -m pytest

lint: .venv/.installed
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
