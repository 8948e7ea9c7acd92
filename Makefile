# nuqi — the two set-up commands are `make serve` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 8000
WORKERS ?= 1
export PORT WORKERS

.PHONY: serve test install install-dev bench sample-audio lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[dev,asr]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

serve: install  ## start the service on $$PORT with the embedded SQLite store
	$(VENV)/bin/nuqi serve --host 0.0.0.0 --port $(PORT) --workers $(WORKERS)

test: install-dev  ## install dev extras and run the test suite
	$(PY) -m pytest -q

bench: install-dev  ## run the benchmark scripts (slow; results go to bench/RESULTS_*.md)
	$(PY) bench/bench_acoustic.py
	$(PY) bench/bench_text.py

sample-audio: install-dev  ## regenerate sample_audio/ (needs espeak-ng and sox)
	$(PY) scripts/make_sample_audio.py

clean:
	rm -rf $(VENV) data .pytest_cache
