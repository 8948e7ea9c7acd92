"""Benchmark/evaluation result files: a hand-written head, then tables a script regenerates."""
from __future__ import annotations

from pathlib import Path


def write_below_mark(path: Path, mark: str, body: str) -> None:
    """Write ``body`` into ``path`` below ``mark``, keeping whatever the file already has above the mark."""
    path = Path(path)
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    head = old.split(mark)[0] if mark in old else ""
    path.write_text(head + mark + "\n\n" + body.rstrip("\n") + "\n", encoding="utf-8")
