"""Energy voice-activity detector with an adaptive noise floor and hangover.

Works on per-frame levels (dB) computed by :mod:`pipelines.audio.stream`.  Every piece of
state is a handful of floats, so it serialises to JSON exactly (webrtcvad keeps its noise
model inside a C object that cannot be saved and restored on another worker).

Decision for frame level ``db``:  speech if ``db > max(floor + margin_db, abs_min_db)``
where ``floor`` is the minimum level over the last ``floor_blocks`` blocks of
``block_frames`` frames (minimum statistics), then ``hangover`` frames of hold-over.
At stream start the block history is pre-filled with ``prior_floor_db``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger("nuqi.audio.vad")


@dataclass
class VadParams:
    margin_db: float = 12.0  # speech must be this far above the tracked noise floor
    abs_min_db: float = -55.0  # and above this absolute level (dBFS)
    block_frames: int = 25  # 250 ms blocks for minimum statistics
    floor_blocks: int = 12  # floor = min over the last 3 s
    prior_floor_db: float = -60.0
    hangover: int = 5  # frames (10 ms each) kept as speech after the level drops


@dataclass
class EnergyVad:
    params: VadParams = field(default_factory=VadParams)
    block_mins: list[float] = field(default_factory=list)
    cur_min: float = float("inf")
    cur_count: int = 0
    hang: int = 0

    def __post_init__(self) -> None:
        if not self.block_mins:
            self.block_mins = [self.params.prior_floor_db] * self.params.floor_blocks

    def process(self, db: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (speech flags, floor used per frame) for consecutive frame levels."""
        p = self.params
        n = len(db)
        out = np.zeros(n, dtype=bool)
        floors = np.empty(n)
        i = 0
        while i < n:
            # frames until the current block closes: floor is constant within that span
            span = min(n - i, p.block_frames - self.cur_count)
            seg = db[i : i + span]
            floor = min(min(self.block_mins), self.cur_min)
            # within the span the running block minimum can only fall; include it causally
            run_min = np.minimum.accumulate(np.concatenate(([self.cur_min], seg)))[1:]
            fl = np.minimum(floor, run_min)
            thr = np.maximum(fl + p.margin_db, p.abs_min_db)
            raw = seg > thr
            floors[i : i + span] = fl
            # hangover (sequential but cheap: only loops over this span)
            hang = self.hang
            res = out[i : i + span]
            for k in range(span):
                if raw[k]:
                    hang = p.hangover
                    res[k] = True
                elif hang > 0:
                    hang -= 1
                    res[k] = True
            self.hang = hang
            self.cur_min = float(run_min[-1])
            self.cur_count += span
            if self.cur_count >= p.block_frames:
                self.block_mins = self.block_mins[1:] + [self.cur_min]
                self.cur_min = float("inf")
                self.cur_count = 0
            i += span
        return out, floors

    def state_dict(self) -> dict:
        return {
            "block_mins": [float(x) for x in self.block_mins],
            "cur_min": None if not np.isfinite(self.cur_min) else float(self.cur_min),
            "cur_count": int(self.cur_count),
            "hang": int(self.hang),
        }

    @classmethod
    def from_state(cls, d: dict, params: VadParams | None = None) -> "EnergyVad":
        v = cls(params=params or VadParams(), block_mins=list(d["block_mins"]))
        v.cur_min = float("inf") if d["cur_min"] is None else float(d["cur_min"])
        v.cur_count = int(d["cur_count"])
        v.hang = int(d["hang"])
        return v
