"""De-escalation guidance for the agent: short Chinese lines per stage and per dominant cue.

The lines live in ``guidance.yaml`` (human-editable).  Order of choice:
1. the supervisor line when the stage is >= ``supervisor.min_level`` or the customer threatens to
   escalate outside (a cue of kind ``external``: 12315 / 媒体 / 律师);
2. a line for the dominant cue of the window (strongest first, e.g. repetition -> 「别让客户重复讲」;
   ``max_cue_lines`` of them), only for cues whose ``cue_min_level`` the stage has reached (a line that
   says 「客户情绪激动」 never stands beside 平静);
3. the stage's own lines.
Duplicates are dropped; at most ``max_lines`` lines are returned.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from pipelines.errors import InputError

log = logging.getLogger("nuqi.fusion.guidance")

GUIDANCE_PATH = Path(__file__).with_name("guidance.yaml")


@dataclass
class Guidance:
    stages: dict[int, list[str]]
    cues: dict[str, list[str]]
    supervisor_min_level: int
    supervisor_line: str
    apology: list[str]
    agent_flags: dict[str, str]
    cue_min_level: dict[str, int] = field(default_factory=dict)  # cue kind -> lowest stage its line fits

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Guidance":
        path = Path(path) if path else GUIDANCE_PATH
        try:
            raw: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
            g = cls(
                stages={int(k): [str(x) for x in v] for k, v in raw["stages"].items()},
                cues={str(k): [str(x) for x in v] for k, v in raw.get("cues", {}).items()},
                supervisor_min_level=int(raw["supervisor"]["min_level"]),
                supervisor_line=str(raw["supervisor"]["line"]),
                apology=[str(x) for x in raw.get("apology", [])],
                agent_flags={str(k): str(v) for k, v in raw.get("agent_flags", {}).items()},
                cue_min_level={str(k): int(v) for k, v in (raw.get("cue_min_level") or {}).items()},
            )
        except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
            raise InputError(f"guidance file {path} is unreadable or malformed: {exc!r}") from exc
        bad = {k: v for k, v in g.cue_min_level.items() if not 0 <= v <= 6}
        if bad:
            raise InputError(f"guidance file {path}: cue_min_level must be stages 0..6, got {bad}")
        missing = [lvl for lvl in range(7) if not g.stages.get(lvl)]
        if missing:
            raise InputError(f"guidance file {path} has no lines for stages {missing}")
        return g

    def choose(
        self,
        level: int,
        cue_kinds: Iterable[str] = (),
        max_lines: int = 3,
        max_cue_lines: int = 1,
    ) -> list[str]:
        """Lines for an agent at stage ``level`` whose customer showed ``cue_kinds`` (strongest first;
        kinds of :class:`~pipelines.fusion.explain.CueExplanation`, e.g. ``external`` for 12315/媒体/律师)."""
        level = max(0, min(6, int(level)))
        kinds = list(cue_kinds)
        lines: list[str] = []

        def add(items: Iterable[str]) -> None:
            for x in items:
                if x not in lines:
                    lines.append(x)

        if level >= self.supervisor_min_level or "external" in kinds:
            add([self.supervisor_line])
        n_cue = 0
        for kind in kinds:
            if n_cue >= max_cue_lines:
                break
            if level < self.min_level(kind):  # e.g. 「客户情绪激动」 does not fit 平静
                continue
            before = len(lines)
            add(self.cues.get(kind, [])[:1])
            n_cue += len(lines) > before
        add(self.stages[level])
        return lines[:max_lines]

    def min_level(self, kind: str) -> int:
        """The lowest stage at which the line of cue ``kind`` is shown."""
        return self.cue_min_level.get(kind, self.cue_min_level.get("default", 0))

    def agent_lines(self, flags: Iterable[str]) -> list[str]:
        return [self.agent_flags[f] for f in flags if f in self.agent_flags]


_DEFAULT: Guidance | None = None


def default_guidance() -> Guidance:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Guidance.load()
    return _DEFAULT
