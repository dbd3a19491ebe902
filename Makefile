# Two commands do all the set-up on a fresh machine:
#   make app   - install, then serve the dashboard on the built-in CIFAR-10 sample
#   make test  - install, then lint, type-check and run the whole test suite

VENV := .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

# glibc returns big freed buffers to the system and maps them again each step,
# which slows CPU training 1.3-2x; these must be set before the process starts.
export MALLOC_MMAP_MAX_ := 0
export MALLOC_TRIM_THRESHOLD_ := 100000000000

.PHONY: app test lint browser select-demo bench bench-precision

$(INSTALLED): requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements-dev.txt
	touch $@

app: $(INSTALLED)
	$(VENV)/bin/streamlit run app.py

test: $(INSTALLED) browser lint
	$(PYTHON) -m pytest -q --durations=10

lint: $(INSTALLED)
	$(PYTHON) -m ruff check .
	$(PYTHON) -m mypy

# Debian's Chromium and ChromeDriver for the browser test; installed when
# missing and this user may install packages, otherwise that test is skipped.
browser:
	@if [ ! -x /usr/bin/chromedriver ] && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi

select-demo: $(INSTALLED)
	$(PYTHON) -m coreset_core select --out runs

bench: $(INSTALLED)
	$(PYTHON) -m bench.select_speed

bench-precision: $(INSTALLED)
	$(PYTHON) -m bench.precision_check
