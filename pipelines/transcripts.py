"""Transcript turns of a recorded call and the sidecar formats they come in (JSON, JSON lines, SRT).

In SRT a speaker prefix ``客户:``/``坐席:``/``customer:``/``agent:`` sets the role.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import InputError


@dataclass(frozen=True)
class Turn:
    role: str
    text: str
    start: float
    end: float


_TIME = re.compile(r"(\d+):(\d+):(\d+)[,.](\d+)\s*-->\s*(\d+):(\d+):(\d+)[,.](\d+)")
_ROLE = {"客户": "customer", "顾客": "customer", "customer": "customer", "坐席": "agent", "客服": "agent",
         "agent": "agent"}


def _secs(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / (10 ** len(ms))


def parse_srt(text: str, default_role: str = "customer") -> list[Turn]:
    turns = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n").strip()):
        lines = [ln.strip() for ln in block.split("\n") if ln.strip()]
        idx = next((i for i, ln in enumerate(lines) if _TIME.search(ln)), None)
        if idx is None:
            continue
        m = _TIME.search(lines[idx])
        assert m is not None
        start, end = _secs(*m.groups()[:4]), _secs(*m.groups()[4:])
        body = " ".join(lines[idx + 1:])
        role = default_role
        pm = re.match(r"^\s*(\S+?)\s*[:：]\s*(.*)$", body)
        if pm and pm.group(1).lower() in _ROLE:
            role, body = _ROLE[pm.group(1).lower()], pm.group(2)
        if body:
            turns.append(Turn(role, body, start, end))
    if not turns and text.strip():
        raise InputError("SRT sidecar has no cues with timings", field="transcript")
    return sorted(turns, key=lambda t: t.end)


def load_turns(path: Path) -> list[Turn]:
    """Transcript turns from a sidecar: ``.json`` (``{"turns": [...]}`` or a list), ``.jsonl`` or ``.srt``."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".srt":
        return parse_srt(text)
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        data = json.loads(text)
        rows = data.get("turns", []) if isinstance(data, dict) else data
    turns = []
    for i, r in enumerate(rows):
        try:
            turns.append(Turn(str(r.get("role", "customer")), str(r["text"]), float(r["start"]), float(r["end"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: turn {i} needs role, text, start, end ({exc})", field="transcript") from None
    return sorted(turns, key=lambda t: t.end)
