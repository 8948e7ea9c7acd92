"""Shared fixtures: real models loaded once per test session, a fresh store per test."""
from __future__ import annotations

import io
import os
import wave
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

from app.settings import ServiceSettings  # noqa: E402
from pipelines.settings import REPO_ROOT, Settings  # noqa: E402

SAMPLE_AUDIO = REPO_ROOT / "sample_audio"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = Settings().data_dir
    if not (d / "speech").is_dir():
        pytest.skip(f"shared data not found at {d} (set NUQI_DATA_DIR)")
    return d


@pytest.fixture(scope="session")
def models():
    """The real model registry (acoustic, text, lexicon, fusion), loaded once."""
    from pipelines.registry import ModelRegistry

    reg = ModelRegistry.load(Settings())
    failed = {k: v.error for k, v in reg.status.items() if not v.loaded}
    assert not failed, f"models failed to load: {failed}"
    return reg


@pytest.fixture()
def settings(tmp_path: Path) -> ServiceSettings:
    return ServiceSettings(state_dir=tmp_path / "state", store=os.environ.get("NUQI_TEST_STORE", "sqlite"))


@pytest.fixture()
def client(settings: Settings, models):
    from fastapi.testclient import TestClient

    from app.main import create_app

    app = create_app(settings, models=models)
    with TestClient(app) as c:
        yield c


def wav_bytes(x: np.ndarray, sr: int, channels: int = 1) -> bytes:
    """float32 samples (n,) or (n, ch) → 16-bit PCM WAV bytes."""
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    from pipelines.audio.files import read_audio_file

    return read_audio_file(path)
