# Compliance Academy — two commands: `make run` and `make test`.
# Everything else (virtualenv, packages, translations, browser) is set up on the way.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FLASK := $(VENV)/bin/flask --app wsgi
HOST ?= 127.0.0.1
PORT ?= 5000
PYTEST_ARGS ?=
IS_ROOT := $(shell [ "$$(id -u)" = 0 ] && echo yes)

.PHONY: run test install install-test translations translations-update browser-deps cjk-font lint bench clean help

help:
	@echo "make run    - install, migrate, load demo data, serve on http://$(HOST):$(PORT)"
	@echo "make test   - install test extras and run the whole suite"
	@echo "make lint   - ruff"
	@echo "make bench  - benchmarks in bench/"

$(PY):
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  if [ "$(IS_ROOT)" = yes ] && command -v apt-get >/dev/null; then \
	    echo "installing python3-venv (Debian ships venv separately)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; \
	    rm -rf $(VENV); $(PYTHON) -m venv $(VENV); \
	  else echo "python3 -m venv failed: install python3-venv" >&2; exit 1; fi; }
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

install: $(VENV)/.installed translations

# Compiled catalogs are build output (not committed); rebuilt when a .po changes.
translations: $(VENV)/.installed
	@$(VENV)/bin/pybabel compile -f -d lms/translations >/dev/null

# The system Chromium for Playwright (never a downloaded browser) and a CJK font.
browser-deps:
	@if [ ! -x /usr/bin/chromium ] || [ ! -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ]; then \
	  if [ "$(IS_ROOT)" = yes ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei; \
	  else echo "warning: /usr/bin/chromium missing; run as root or: apt-get install chromium fonts-wqy-microhei" >&2; fi; \
	fi

# The TrueType CJK font evidence PDFs embed (without it every Chinese character is a box;
# EVIDENCE_FONT_PATH may name another .ttf/.ttc instead).
cjk-font:
	@if [ ! -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] && [ -z "$$EVIDENCE_FONT_PATH" ]; then \
	  if [ "$(IS_ROOT)" = yes ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-microhei; \
	  else echo "warning: no CJK font for evidence PDFs; run as root or: apt-get install fonts-wqy-microhei" >&2; fi; \
	fi

# After adding UI strings: refresh the catalog, translate the new entries, commit the .po.
translations-update: $(VENV)/.installed
	$(VENV)/bin/pybabel extract -F babel.cfg -k _l -k lazy_gettext --no-location --sort-output -o lms/translations/messages.pot .
	$(VENV)/bin/pybabel update -i lms/translations/messages.pot -d lms/translations -l zh_Hans_CN --no-fuzzy-matching

run: install cjk-font
	$(FLASK) db upgrade
	$(FLASK) lms demo
	@echo "Serving on http://$(HOST):$(PORT)  (Ctrl-C to stop)"
	$(FLASK) run --host $(HOST) --port $(PORT)

test: $(VENV)/.installed-test translations browser-deps
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .

bench: $(VENV)/.installed-test
	@for f in bench/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
