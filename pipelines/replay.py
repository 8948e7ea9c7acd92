"""Replay a recorded dialogue (JSONL turns, optional audio) through the live pipeline.

Yields one JSON-able line per transcript turn (and per stage change seen on audio
windows) with the stage after it, then a final summary line.  Used by ``nuqi replay``
and by the CPED escalation evaluation.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from pipelines.analyze import process_file
from pipelines.registry import ModelRegistry
from pipelines.session import CallState, process_transcript, summarize
from pipelines.transcripts import Turn, load_turns


def _line(entry: dict[str, Any], kind: str) -> dict[str, Any]:
    stage = entry.get("stage") or {}
    out = {
        "kind": kind,
        "t": entry.get("end", entry.get("t_end")),
        "role": entry.get("role"),
        "stage": stage.get("level"),
        "stage_name": stage.get("name"),
        "anger_fused": entry.get("anger_fused", (entry.get("anger") or {}).get("fused")
                                 if isinstance(entry.get("anger"), dict) else entry.get("anger_fused")),
        "explanation": (entry.get("explanation") or {}).get("text"),
    }
    if kind == "turn":
        out.update(text=entry.get("text"), text_anger=entry.get("anger"), text_mode=entry.get("text_mode"),
                   keywords=[k["term"] for k in entry.get("keywords", []) if not k.get("negated")])
    if entry.get("alerts"):
        out["alerts"] = [{"level": a["level"], "kind": a["kind"], "guidance": a.get("guidance", [])[:2]}
                         for a in entry["alerts"]]
    return out


def replay_turns(turns: list[Turn], models: ModelRegistry) -> Iterator[dict[str, Any]]:
    """Text-only replay: each turn is a final transcript snippet at its end time."""
    state = CallState()
    for turn in turns:
        state.clock_s = max(state.clock_s, turn.end)
        result = process_transcript(state, turn.role, turn.text, turn.start, turn.end, True, models)
        yield _line(result.to_dict(), "turn")
    yield {"kind": "summary", **summarize(state, [], models.fusion)}


def components_for(audio: Path | None) -> tuple[str, ...]:
    """The model components :func:`replay` needs (a text-only replay loads no acoustic model)."""
    return ModelRegistry.REQUIRED if audio is not None else ("text", "text_context", "lexicon", "fusion")


def replay(path: Path, models: ModelRegistry, *, audio: Path | None = None, channel_map: str | None = None
           ) -> Iterator[dict[str, Any]]:
    """Replay the turns of ``path`` (and ``audio`` when given) with ``models`` (see :func:`components_for`)."""
    turns = load_turns(path)
    if audio is None:
        yield from replay_turns(turns, models)
        return
    result = process_file(audio, models, channel_map=channel_map, turns=turns)
    events: list[tuple[float, dict[str, Any]]] = []
    last_level = 0
    for entry in result.timeline:
        cust = entry["roles"].get("customer", {})
        level = (cust.get("stage") or {}).get("level")
        if level is not None and (level != last_level or entry.get("alerts")):
            last_level = level
            events.append((entry["t_end"], _line({**cust, "t_end": entry["t_end"], "role": "customer",
                                                   "alerts": entry.get("alerts")}, "audio")))
    for utt in result.utterances:
        events.append((utt["end"], _line(utt, "turn")))
    for _, line in sorted(events, key=lambda e: e[0]):
        yield line
    yield {"kind": "summary", **result.summary}
