"""Input files for the batch tests: real sample audio in other containers, and broken files."""
from __future__ import annotations

import csv
import json
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from tests.conftest import SAMPLE_AUDIO, read_wav

BAD_FILES = ("empty.wav", "corrupt.wav", "zero_channels.wav", "adpcm.wav", "noise.flac")


def _riff(fmt_tag: int, channels: int, rate: int, bits: int, data: bytes) -> bytes:
    block = max(1, channels * bits // 8)
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def make_bad_files(folder: Path) -> dict[str, Path]:
    """Zero-length, truncated/corrupt, 0-channel, unsupported codec (IMA ADPCM) and a non-audio .flac."""
    folder.mkdir(parents=True, exist_ok=True)
    good = (SAMPLE_AUDIO / "call_calm_8k.wav").read_bytes()
    files = {
        "empty.wav": b"",
        "corrupt.wav": good[:44] + bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8))[:1500],
        "zero_channels.wav": _riff(1, 0, 8000, 16, b"\0" * 1600),
        "adpcm.wav": _riff(0x11, 1, 8000, 4, b"\x11" * 4000),
        "noise.flac": b"this is not a FLAC file\n" * 50,
    }
    out = {}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        out[name] = folder / name
    return out


def make_format_files(folder: Path) -> dict[str, Path]:
    """The 16 kHz sample utterances as 8 kHz G.711 µ-law WAV, FLAC and MP3 (real audio, other containers)."""
    folder.mkdir(parents=True, exist_ok=True)
    angry, sr = read_wav(SAMPLE_AUDIO / "customer_angry_16k.wav")
    calm, _ = read_wav(SAMPLE_AUDIO / "customer_calm_16k.wav")
    x8 = soxr.resample(angry[:, 0], sr, 8000).astype(np.float32)
    ulaw = folder / "angry_ulaw_8k.wav"
    sf.write(ulaw, x8, 8000, subtype="ULAW", format="WAV")
    flac = folder / "calm_16k.flac"
    sf.write(flac, calm[:, 0], sr, subtype="PCM_16", format="FLAC")
    mp3 = folder / "angry_16k.mp3"
    sf.write(mp3, angry[:, 0], sr, format="MP3")
    return {"ulaw": ulaw, "flac": flac, "mp3": mp3}


@dataclass
class CliRun:
    proc: subprocess.CompletedProcess
    out: Path
    inputs: Path
    rows: list[dict[str, str]]
    header: list[str]

    def row(self, name: str) -> dict[str, str]:
        return next(r for r in self.rows if Path(r["file"]).name == name)


def read_summary(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def load_call(run: CliRun, call: str) -> dict:
    return json.loads((run.out / "calls" / f"{call}.json").read_text(encoding="utf-8"))
