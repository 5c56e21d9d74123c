# LightSource: `make demo` runs the product on this machine, `make test` runs the tests.
SHELL := /bin/bash
VENV ?= .venv
PORT ?= 8000
PYTHON ?=
PY := $(VENV)/bin/python
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/lightsource
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: demo test lint format venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@python="$(PYTHON)"; \
	if [ -z "$$python" ]; then python=$$(scripts/find-python) || exit 1; fi; \
	if [ -x "$(PY)" ] && ! "$(PY)" -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then \
		echo "Replacing $(VENV): its Python is older than 3.12."; rm -rf "$(VENV)"; fi; \
	if [ ! -x "$(PY)" ]; then echo "Creating $(VENV) with $$python"; "$$python" -m venv "$(VENV)" || exit 1; fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

demo: venv
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py loadcatalog
	$(PY) manage.py demo --port $(PORT)

test: venv
	DATABASE_URL="$${DATABASE_URL:-$(TEST_DATABASE_URL)}" \
	REDIS_URL="$${REDIS_URL:-$(TEST_REDIS_URL)}" \
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) staticfiles
