"""Small builders shared by the fusion tests (real rules, real params; no mocks)."""
from __future__ import annotations

from pipelines.fusion.cues import Cues
from pipelines.fusion.fuse import FusedAnger, logit


def fused_of(p: float) -> FusedAnger:
    """A FusedAnger with a chosen fused value (the tracker's input), for tests of the stage rules."""
    return FusedAnger(fused=p, logit=logit(p), groups={}, available=["text"])


def win(t0: float, t1: float, **kw) -> Cues:
    return Cues(t_start=t0, t_end=t1, **kw)
