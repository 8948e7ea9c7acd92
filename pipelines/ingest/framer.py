"""Frames of any size, per call and leg -> fixed analysis windows on the call's media clock.

Call platforms stream 10-100 ms frames, often one connection per leg (customer, agent), each leg with its
own sequence numbers and, on some platforms, its own media timestamps.  The analysis wants what
``POST /v1/calls/{id}/audio`` gets today: one window (1 s by default) per speaker, on one time line.

:class:`LegFramer` turns one leg's frames into windows ``[k*W, (k+1)*W)`` of the *call* clock:

* **Order** -- frames are placed in sequence-number order.  A frame ahead of the next expected one waits in a
  small jitter buffer; when the waiting audio exceeds ``jitter_s`` in at least two frames (so a swapped pair of
  frames longer than the jitter window still reorders), or ``max_pending`` frames wait, the missing frames are
  declared lost.
* **Loss** -- lost frames become digital silence of the right length and are reported as :class:`Gap`
  (``reason="loss"``).  With media timestamps the length is exact (next frame's timestamp minus the current
  position); without, each missing frame counts as long as the last frame placed.  A timestamp jump with no
  sequence gap (a platform that sends nothing while a leg is on hold) is a gap too (``reason="timestamp"``).
  A frame that turns up after its sequence number was declared lost is dropped and counted as ``late``.
* **Duplicates** -- a frame whose sequence number was already placed or is waiting is dropped (counted).
* **Silence** -- all-zero frames (hold, mute) are ordinary audio: they advance the clock like any other.
* **Alignment** -- a leg's first frame is placed on the call clock by its media timestamp when the platform's
  timestamps are call-relative (``ts_clock="call"``, e.g. Twilio: ms since the stream started, shared by both
  tracks), by an explicit ``anchor_s``, or else by its arrival (wall) time relative to the call's first frame.
  A leg that starts inside a window gets silence before its first sample (``Window.pad``), so every leg's
  window ``k`` covers the same media time span and can be fused with the other leg's window ``k``.

Samples are int16 (telephony's linear PCM; G.711 expands exactly into it), so windows are bit-exact whatever
the framing, and the state is small: ``state_dict()`` is plain JSON (the partial window and waiting frames as
base64 little-endian int16, at most about one window plus ``jitter_s`` of audio per leg: ~22 KB for 1 s at
8 kHz) and :meth:`CallFramer.from_state` continues on another worker with identical output.

This module is pure (numpy only): no I/O, no clock reads (callers pass ``wall`` times), no web framework.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines.audio.decode import ROLES, parse_channel_map
from pipelines.errors import InputError, UnsupportedAudioError

STATE_VERSION = 1
MIN_RATE = 8000
MAX_RATE = 48000
WALL_ALIGN_S = 0.01  # a leg placed by its first frame's arrival time starts on a 10 ms boundary
_SKIP_ROLES = ("-", "none", "ignore")
_RECENT_LOST = 16  # lost sequence ranges remembered to tell a late frame from a duplicate


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<i2").tobytes()).decode("ascii")


def _unb64(s: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype="<i2").astype(np.int16)


def as_int16(samples: Any) -> np.ndarray:
    """int16 samples from an int16 array, a float array in [-1, 1] (scaled by 32768, clipped) or s16le bytes."""
    if isinstance(samples, (bytes, bytearray, memoryview)):
        b = bytes(samples)
        if len(b) % 2:
            raise InputError(f"s16le frame of {len(b)} bytes is not a whole number of samples", field="body")
        return np.frombuffer(b, dtype="<i2").astype(np.int16)
    a = np.asarray(samples)
    if a.dtype == np.int16:
        return a.reshape(-1) if a.ndim == 1 else a
    if a.dtype.kind == "f":
        return np.clip(np.round(a * 32768.0), -32768, 32767).astype(np.int16)
    raise UnsupportedAudioError(f"frame samples must be int16 or float, got {a.dtype}", field="body")


@dataclass(frozen=True, eq=False)  # eq=False: samples is an array (compare to_dict() and samples)
class Window:
    """One completed analysis window of one leg (``samples`` int16 at ``sample_rate``)."""

    role: str
    index: int  # window k covers call-clock [k*W, (k+1)*W)
    sample_rate: int
    start: int  # call-clock position of samples[0], in samples at sample_rate
    samples: np.ndarray
    lost: int = 0  # samples of silence standing in for lost / missing audio
    pad: int = 0  # samples of silence before the leg's first frame (or after a resync jump)
    final: bool = False  # the short last window of a leg, from flush()
    wall_s: float | None = None  # wall-clock time of the push that completed the window, if given

    @property
    def t_start(self) -> float:
        return self.start / self.sample_rate

    @property
    def t_end(self) -> float:
        return (self.start + len(self.samples)) / self.sample_rate

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate

    def audio(self) -> np.ndarray:
        """float32 in [-1, 1): the same values ``decode_chunk`` gives for the same s16le / G.711 bytes."""
        return self.samples.astype(np.float32) / np.float32(32768.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role, "index": self.index, "t_start": round(self.t_start, 4), "t_end": round(self.t_end, 4),
            "sample_rate": self.sample_rate, "lost_s": round(self.lost / self.sample_rate, 4),
            "pad_s": round(self.pad / self.sample_rate, 4), "final": self.final, "wall_s": self.wall_s,
        }


@dataclass(frozen=True)
class Gap:
    """Silence the framer inserted for audio it did not get."""

    role: str
    reason: str  # loss | timestamp | jump | segment | or what advance() was told (paused, idle, ...)
    start: int  # call-clock sample where the silence begins
    samples: int
    sample_rate: int
    first_seq: int | None = None  # missing sequence numbers (reason "loss")
    last_seq: int | None = None

    @property
    def t_start(self) -> float:
        return self.start / self.sample_rate

    @property
    def duration_s(self) -> float:
        return self.samples / self.sample_rate

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"role": self.role, "reason": self.reason, "t_start": round(self.t_start, 4),
                             "duration_s": round(self.duration_s, 4)}
        if self.first_seq is not None:
            d["seq"] = [self.first_seq, self.last_seq]
        return d


@dataclass
class PushResult:
    """What one push (or flush) produced."""

    windows: list[Window] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    duplicates: int = 0
    late: int = 0

    def extend(self, other: "PushResult") -> "PushResult":
        self.windows.extend(other.windows)
        self.gaps.extend(other.gaps)
        self.duplicates += other.duplicates
        self.late += other.late
        return self


class LegFramer:
    """One leg (speaker) of a call: reorders its frames and cuts them into call-clock windows."""

    def __init__(self, role: str, sample_rate: int, *, window_s: float = 1.0, jitter_s: float = 0.2,
                 max_pending: int = 64, ts_tolerance_s: float = 0.002, max_gap_s: float = 600.0,
                 ts_clock: str = "leg", first_seq: int | None = None) -> None:
        if role not in ROLES:
            raise InputError(f"role {role!r} is not one of {', '.join(ROLES)}", field="role")
        if not MIN_RATE <= int(sample_rate) <= MAX_RATE:
            raise UnsupportedAudioError(f"sample_rate {sample_rate} Hz: a leg takes {MIN_RATE}-{MAX_RATE} Hz",
                                        field="sample_rate")
        if ts_clock not in ("leg", "call"):
            raise InputError(f"ts_clock must be 'leg' or 'call', not {ts_clock!r}", field="ts_clock")
        self.role = role
        self.rate = int(sample_rate)
        window = window_s * self.rate
        if window < 1 or abs(window - round(window)) > 1e-6:
            raise InputError(f"window_s={window_s} is not a whole number of samples at {self.rate} Hz",
                             field="window_s")
        self.window = int(round(window))
        self.jitter = int(round(jitter_s * self.rate))
        self.max_pending = int(max_pending)
        self.tol = int(round(ts_tolerance_s * self.rate))
        self.max_gap = int(round(max_gap_s * self.rate))
        self.ts_clock = ts_clock
        self.first_seq = first_seq
        self.started = False
        self.ended = False
        self.resegment = False  # the next frame starts a new sequence space / timestamp origin (new_segment)
        self.next_seq = 0  # sequence number of the next frame to place
        self.next_auto = 0  # sequence number given to a frame that comes without one
        self.pos = 0  # call-clock sample index of the next sample to place
        self.ts_offset: int | None = None  # call position = media timestamp + ts_offset
        self.win_index = 0
        self._buf: list[np.ndarray] = []
        self._buf_len = 0
        self.win_lost = 0
        self.win_pad = 0
        self.pending: dict[int, tuple[int | None, np.ndarray]] = {}
        self._pending_len = 0
        self._loss_ctx: tuple[int, int] | None = None  # seq range declared lost, sized by the next frame's ts
        self.last_len = 0
        self.recent_lost: list[list[int]] = []
        self.stats = {"frames": 0, "samples": 0, "duplicates": 0, "late": 0, "lost_frames": 0, "lost_samples": 0,
                      "overlap_samples": 0, "windows": 0}

    # ------------------------------------------------------------------ public
    @property
    def buffered_samples(self) -> int:
        """Audio received but not yet in a completed window (partial window + waiting frames)."""
        return self._buf_len - self.win_pad + self._pending_len

    @property
    def buffered_s(self) -> float:
        return self.buffered_samples / self.rate

    def push(self, samples: Any, *, seq: int | None = None, ts: int | None = None, anchor: int = 0,
             wall: float | None = None) -> PushResult:
        """Add one frame.  ``seq``: this leg's sequence number (None: next); ``ts``: media timestamp in samples
        at this leg's rate (optional); ``anchor``: call-clock sample of the leg's first frame (first push only,
        unused when ``ts_clock="call"``)."""
        res = PushResult()
        if self.ended:
            raise InputError(f"{self.role} leg has ended; it takes no more frames", field="body")
        x = as_int16(samples)
        if x.ndim != 1:
            raise InputError(f"a leg frame must be mono, got shape {x.shape}", field="body")
        if seq is None:
            seq = self.next_auto
        seq = int(seq)
        ts = None if ts is None else int(ts)
        if not self.started:
            self._start(seq, ts, anchor, len(x))
        elif self.resegment:
            self._restart(seq, ts, anchor, res, wall)
        self.next_auto = max(self.next_auto, seq + 1)
        if seq < self.next_seq or seq in self.pending:
            if any(a <= seq <= b for a, b in self.recent_lost):
                self.stats["late"] += 1
                res.late += 1
            else:
                self.stats["duplicates"] += 1
                res.duplicates += 1
            return res
        self.stats["frames"] += 1
        self.stats["samples"] += len(x)
        self.pending[seq] = (ts, x)
        self._pending_len += len(x)
        self._drain(res, wall)
        return res

    def advance_to(self, position: int, reason: str = "advance", wall: float | None = None) -> PushResult:
        """Fill silence up to call-clock ``position`` (pause, discarded audio, idle leg).  Waiting frames are
        placed first (their gaps declared lost)."""
        res = PushResult()
        if not self.started:  # nothing placed yet: the first frame's anchor decides where the leg starts
            return res
        while self.pending:
            self._declare_loss(res, wall)
            self._drain(res, wall)
        if position > self.pos:
            self._fill(position - self.pos, reason, None, None, res, wall)
        return res

    def new_segment(self, wall: float | None = None) -> PushResult:
        """A new stream continues this leg (a new connection with its own sequence numbers and timestamps, e.g. a
        restarted Twilio stream): waiting frames are placed now; the next frame starts a new sequence space and
        timestamp origin, at its anchor (arrival time) but never before where the leg already is."""
        res = PushResult()
        while self.pending:
            self._declare_loss(res, wall)
            self._drain(res, wall)
        if self.started:
            self.resegment = True
        return res

    def ahead_s(self, elapsed_s: float) -> float:
        """How far this leg's received audio runs ahead of ``elapsed_s`` of wall time since media time 0 (a leg
        sending faster than real time makes it grow; the service can refuse frames above a limit)."""
        return (self.pos + self._pending_len) / self.rate - elapsed_s

    def flush(self, wall: float | None = None) -> PushResult:
        """End of the leg: place waiting frames and emit the last, possibly short, window."""
        res = PushResult()
        while self.pending:
            self._declare_loss(res, wall)
            self._drain(res, wall)
        if self._buf_len > self.win_pad:
            self._emit(res, wall, final=True)
        self.ended = True
        return res

    # ----------------------------------------------------------------- internals
    def _start(self, seq: int, ts: int | None, anchor: int, n: int) -> None:
        self.started = True
        self.next_seq = self.first_seq if self.first_seq is not None and self.first_seq <= seq else seq
        if ts is not None:
            self.ts_offset = 0 if self.ts_clock == "call" else int(anchor) - ts
            start = ts + self.ts_offset
        else:  # the first frame to arrive is not the leg's first: its predecessors are (assumed) as long as it
            start = int(anchor) - (seq - self.next_seq) * n
        start = max(0, start)
        self.win_index = start // self.window
        self.pos = self.win_index * self.window
        if start > self.pos:
            self._append(None, start - self.pos, "pad", PushResult(), None)

    def _restart(self, seq: int, ts: int | None, anchor: int, res: PushResult, wall: float | None) -> None:
        self.resegment = False
        self.next_seq = self.next_auto = seq
        self.recent_lost = []
        self._loss_ctx = None
        if anchor > self.pos:
            self._fill(anchor - self.pos, "segment", None, None, res, wall)
        self.ts_offset = None if ts is None else self.pos - ts

    def _drain(self, res: PushResult, wall: float | None) -> None:
        while True:
            while self.next_seq in self.pending:
                ts, x = self.pending.pop(self.next_seq)
                self._pending_len -= len(x)
                self._place(self.next_seq, ts, x, res, wall)
                self.next_seq += 1
            if self.pending and ((self._pending_len > self.jitter and len(self.pending) >= 2)
                                 or len(self.pending) > self.max_pending):
                self._declare_loss(res, wall)
            else:
                return

    def _declare_loss(self, res: PushResult, wall: float | None) -> None:
        lowest = min(self.pending)
        first, last = self.next_seq, lowest - 1
        self.next_seq = lowest
        if last < first:
            return
        n_frames = last - first + 1
        self.stats["lost_frames"] += n_frames
        self.recent_lost = (self.recent_lost + [[first, last]])[-_RECENT_LOST:]
        ts, x = self.pending[lowest]
        if ts is not None and self.ts_offset is not None:
            self._loss_ctx = (first, last)  # sized exactly by the next frame's timestamp in _place
        else:
            self._fill(n_frames * (self.last_len or len(x)), "loss", first, last, res, wall)

    def _place(self, seq: int, ts: int | None, x: np.ndarray, res: PushResult, wall: float | None) -> None:
        loss = self._loss_ctx
        self._loss_ctx = None
        if ts is not None:
            if self.ts_offset is None:  # first timestamp of a leg that started without one
                self.ts_offset = self.pos - ts
            d = ts + self.ts_offset - self.pos
            if d > self.tol:
                reason = "loss" if loss else "timestamp"
                self._fill(d, reason, *(loss or (None, None)), res, wall)
            elif d < -self.tol:
                cut = min(-d, len(x))
                self.stats["overlap_samples"] += cut
                x = x[cut:]
        if len(x):
            self._append(x, len(x), "audio", res, wall)
            self.last_len = len(x)

    def _fill(self, n: int, reason: str, first: int | None, last: int | None, res: PushResult,
              wall: float | None) -> None:
        if n <= 0:
            return
        res.gaps.append(Gap(self.role, "jump" if n > self.max_gap else reason, self.pos, n, self.rate, first, last))
        self.stats["lost_samples"] += n
        if n > self.max_gap:  # a resync, not a silence worth analysing: close this window, restart the grid
            target = self.pos + n
            if self._buf_len > self.win_pad:
                self._append(None, self.window - self._buf_len, "lost", res, wall)
            else:
                self._buf, self._buf_len, self.win_lost, self.win_pad = [], 0, 0, 0
            self.win_index = target // self.window
            self.pos = self.win_index * self.window
            if target > self.pos:
                self._append(None, target - self.pos, "pad", res, wall)
            return
        self._append(None, n, "lost", res, wall)

    def _append(self, x: np.ndarray | None, n: int, kind: str, res: PushResult, wall: float | None) -> None:
        i = 0
        while i < n:
            take = min(self.window - self._buf_len, n - i)
            self._buf.append(np.zeros(take, np.int16) if x is None else x[i:i + take])
            self._buf_len += take
            if kind == "lost":
                self.win_lost += take
            elif kind == "pad":
                self.win_pad += take
            i += take
            self.pos += take
            if self._buf_len == self.window:
                self._emit(res, wall)

    def _emit(self, res: PushResult, wall: float | None, final: bool = False) -> None:
        samples = np.concatenate(self._buf) if len(self._buf) > 1 else self._buf[0].copy()
        res.windows.append(Window(self.role, self.win_index, self.rate, self.win_index * self.window, samples,
                                  self.win_lost, self.win_pad, final, wall))
        self.stats["windows"] += 1
        self._buf, self._buf_len, self.win_lost, self.win_pad = [], 0, 0, 0
        self.win_index += 1

    # --------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        buf = np.concatenate(self._buf) if self._buf else np.zeros(0, np.int16)
        return {
            "role": self.role, "rate": self.rate, "window": self.window, "jitter": self.jitter,
            "max_pending": self.max_pending, "tol": self.tol, "max_gap": self.max_gap, "ts_clock": self.ts_clock,
            "first_seq": self.first_seq, "started": self.started, "ended": self.ended, "resegment": self.resegment,
            "next_seq": self.next_seq,
            "next_auto": self.next_auto, "pos": self.pos, "ts_offset": self.ts_offset, "win_index": self.win_index,
            "buf": _b64(buf), "win_lost": self.win_lost, "win_pad": self.win_pad,
            "pending": [[s, ts, _b64(x)] for s, (ts, x) in sorted(self.pending.items())],
            "loss_ctx": list(self._loss_ctx) if self._loss_ctx else None, "last_len": self.last_len,
            "recent_lost": self.recent_lost, "stats": dict(self.stats),
        }

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> "LegFramer":
        leg = cls(d["role"], d["rate"], window_s=d["window"] / d["rate"], ts_clock=d["ts_clock"],
                  first_seq=d["first_seq"])
        leg.window, leg.jitter, leg.max_pending = int(d["window"]), int(d["jitter"]), int(d["max_pending"])
        leg.tol, leg.max_gap = int(d["tol"]), int(d["max_gap"])
        leg.started, leg.ended, leg.resegment = bool(d["started"]), bool(d["ended"]), bool(d["resegment"])
        leg.next_seq, leg.next_auto, leg.pos = int(d["next_seq"]), int(d["next_auto"]), int(d["pos"])
        leg.ts_offset = None if d["ts_offset"] is None else int(d["ts_offset"])
        leg.win_index = int(d["win_index"])
        buf = _unb64(d["buf"])
        leg._buf, leg._buf_len = ([buf] if len(buf) else []), len(buf)
        leg.win_lost, leg.win_pad = int(d["win_lost"]), int(d["win_pad"])
        leg.pending = {int(s): (None if ts is None else int(ts), _unb64(b)) for s, ts, b in d["pending"]}
        leg._pending_len = sum(len(x) for _, x in leg.pending.values())
        leg._loss_ctx = tuple(d["loss_ctx"]) if d["loss_ctx"] else None
        leg.last_len = int(d["last_len"])
        leg.recent_lost = [list(r) for r in d["recent_lost"]]
        leg.stats = dict(d["stats"])
        return leg


class CallFramer:
    """All legs of one call on one media clock (t = 0 at the call's first frame)."""

    def __init__(self, *, window_s: float = 1.0, jitter_s: float = 0.2, max_pending: int = 64,
                 ts_tolerance_s: float = 0.002, max_gap_s: float = 600.0) -> None:
        self.params = {"window_s": float(window_s), "jitter_s": float(jitter_s), "max_pending": int(max_pending),
                       "ts_tolerance_s": float(ts_tolerance_s), "max_gap_s": float(max_gap_s)}
        self.t0_wall: float | None = None  # wall-clock time of media time 0
        self.legs: dict[str, LegFramer] = {}

    def leg(self, role: str, sample_rate: int = 8000, *, ts_clock: str = "leg",
            first_seq: int | None = None) -> LegFramer:
        """The leg for ``role``, created on first use (a leg keeps the rate it started with)."""
        leg = self.legs.get(role)
        if leg is None:
            leg = LegFramer(role, sample_rate, ts_clock=ts_clock, first_seq=first_seq, **self.params)
            self.legs[role] = leg
        elif leg.rate != int(sample_rate):
            raise UnsupportedAudioError(
                f"{role} leg started at {leg.rate} Hz; frames at {sample_rate} Hz cannot join it", field="sample_rate")
        return leg

    def wall_at(self, t: float) -> float | None:
        """Wall-clock time of media time ``t`` (None until a frame came with a wall time)."""
        return None if self.t0_wall is None else self.t0_wall + t

    def push(self, role: str, samples: Any, *, seq: int | None = None, ts: int | None = None,
             wall: float | None = None, sample_rate: int = 8000, ts_clock: str = "leg",
             anchor_s: float | None = None, first_seq: int | None = None) -> PushResult:
        """One mono frame of ``role``.  ``wall``: arrival time (s, any epoch) of the frame's last sample;
        ``anchor_s``: media time of the leg's first sample (overrides the arrival-time alignment)."""
        leg = self.leg(role, sample_rate, ts_clock=ts_clock, first_seq=first_seq)
        x = as_int16(samples)
        dur = len(x) / leg.rate
        if self.t0_wall is None and wall is not None:
            self.t0_wall = wall - dur
        anchor = 0
        if not leg.started or leg.resegment:
            if anchor_s is not None:
                anchor = int(round(anchor_s * leg.rate))
            elif wall is not None and self.t0_wall is not None:  # arrival time, to the nearest 10 ms (jitter)
                quantum = int(round(WALL_ALIGN_S * leg.rate))
                anchor = max(0, int(round((wall - dur - self.t0_wall) / WALL_ALIGN_S)) * quantum)
        return leg.push(x, seq=seq, ts=ts, anchor=anchor, wall=wall)

    def push_stereo(self, samples: Any, channel_map: str | tuple[str, ...] = ("agent", "customer"), *,
                    seq: int | None = None, ts: int | None = None, wall: float | None = None,
                    sample_rate: int = 8000, ts_clock: str = "leg", anchor_s: float | None = None,
                    first_seq: int | None = None) -> PushResult:
        """One interleaved multi-channel frame (int16 shape (n, channels), flat interleaved int16, or s16le bytes),
        split into legs by ``channel_map`` (``"agent,customer"``, ``"customer=1,agent=0"``, ...; ``none`` skips a
        channel).  Each leg gets the same ``seq`` and ``ts``."""
        roles = parse_channel_map(channel_map) if isinstance(channel_map, str) else tuple(channel_map)
        if not roles:
            raise InputError("channel_map is empty", field="channel_map")
        x = as_int16(samples)
        n_ch = len(roles)
        if x.ndim == 1:
            if len(x) % n_ch:
                raise InputError(f"{len(x)} samples are not a whole number of {n_ch}-channel frames", field="body")
            x = x.reshape(-1, n_ch)
        if x.ndim != 2 or x.shape[1] != n_ch:
            raise InputError(f"frame has shape {x.shape}; channel_map names {n_ch} channels", field="channel_map")
        res = PushResult()
        for i, role in enumerate(roles):
            if role in _SKIP_ROLES:
                continue
            res.extend(self.push(role, np.ascontiguousarray(x[:, i]), seq=seq, ts=ts, wall=wall,
                                 sample_rate=sample_rate, ts_clock=ts_clock, anchor_s=anchor_s, first_seq=first_seq))
        return res

    def new_segment(self, role: str, wall: float | None = None) -> PushResult:
        """``role`` continues in a new stream (own sequence numbers / timestamps): see :meth:`LegFramer.new_segment`."""
        leg = self.legs.get(role)
        return PushResult() if leg is None else leg.new_segment(wall)

    def ahead_s(self, role: str, wall: float) -> float | None:
        """Seconds of audio ``role`` has sent beyond the wall time elapsed since the call's media time 0."""
        leg = self.legs.get(role)
        if leg is None or self.t0_wall is None:
            return None
        return leg.ahead_s(wall - self.t0_wall)

    def advance(self, role: str, t: float, reason: str = "advance", wall: float | None = None) -> PushResult:
        """Silence on ``role`` up to media time ``t`` (pause, discarded audio, an idle leg)."""
        leg = self.legs.get(role)
        if leg is None:
            return PushResult()
        return leg.advance_to(int(round(t * leg.rate)), reason, wall)

    def flush(self, role: str | None = None, wall: float | None = None) -> PushResult:
        """End one leg (or every leg): waiting frames are placed, last short windows emitted."""
        res = PushResult()
        for r, leg in self.legs.items():
            if (role is None or r == role) and not leg.ended:
                res.extend(leg.flush(wall))
        return res

    def state_dict(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "params": dict(self.params), "t0_wall": self.t0_wall,
                "legs": {r: leg.state_dict() for r, leg in self.legs.items()}}

    @classmethod
    def from_state(cls, d: dict[str, Any] | None, **params: Any) -> "CallFramer":
        """Restore (``None``/empty: a new framer built with ``params``)."""
        if not d:
            return cls(**params)
        if d.get("version") != STATE_VERSION:
            raise ValueError(f"CallFramer state version {d.get('version')!r} != {STATE_VERSION}")
        f = cls(**d["params"])
        f.t0_wall = d["t0_wall"]
        f.legs = {r: LegFramer.from_state(s) for r, s in d["legs"].items()}
        return f
