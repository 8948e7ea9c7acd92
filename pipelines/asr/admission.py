"""Which calls get live ASR: the ``auto | on | off`` rule and capacity admission from the measured RTF.

A recogniser process keeps up with ``1 / rtf`` seconds of speech per second.  A call's customer leg is speech
for about ``speech_fraction`` of the time, so ``workers`` processes carry

    capacity = floor(workers * headroom / (rtf * speech_fraction * legs_per_call))

calls at once; ``headroom`` < 1 keeps spare time for bursts (both sides of many calls talking at once).  A call
beyond capacity is not queued to lag further and further behind: it is refused and its state says
``asr: "skipped: capacity"``.  ``observe(audio_s, decode_s)`` updates the RTF from the workers' real decodes
(exponential average), so admission follows the host's actual load; new calls are also refused while the
pool's backlog exceeds ``max_backlog_s``.

A call's live-ASR state (``CallState.asr``, stored with the call like the rest of its state, so every worker sees
it) is a small dict advanced by the pure functions below: :func:`note_request` (an ``asr=on|off`` override sent
before the call's first audio), :func:`decide` (the call's first analysed audio: ``status`` becomes ``"on"``,
``"off"``, ``"skipped: capacity"``, ``"off: platform transcripts"`` or ``"unavailable"``),
:func:`note_platform` (a platform transcript: in ``auto`` mode ASR stops for the call; its span is remembered)
and :func:`accepts` (may a recognised utterance be applied: ASR still on for the call, and no platform
transcript of the same leg covers its span; platform transcripts win).
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

LiveAsrMode = Literal["auto", "on", "off"]
LIVE_ASR_MODES: tuple[str, ...] = ("auto", "on", "off")
ADMITTED = "on"
SKIPPED_CAPACITY = "skipped: capacity"
SKIPPED_PLATFORM = "off: platform transcripts"
OFF = "off"
UNAVAILABLE = "unavailable"  # live ASR wanted, but the service runs none (NUQI_LIVE_ASR=off, model missing)
MAX_PLATFORM_SPANS = 64  # platform transcript spans a call remembers per leg (only recent ones can overlap)


def wants_asr(setting: LiveAsrMode, override: str | None = None, has_platform_transcripts: bool = False) -> bool:
    """Whether a call should get live ASR: the per-call override (``asr=on|off``) wins over the setting;
    ``auto`` means only calls that have sent no transcript of their own."""
    mode = override if override is not None else setting
    if mode not in LIVE_ASR_MODES:
        raise ValueError(f"live ASR mode must be one of {', '.join(LIVE_ASR_MODES)}, got {mode!r}")
    if mode == "off":
        return False
    return mode == "on" or not has_platform_transcripts


@dataclass
class AsrAdmission:
    """Capacity admission of calls to the live recogniser (thread-safe)."""

    workers: int
    rtf: float  # decode seconds per audio second of one worker, measured (bench/RESULTS_asr.md)
    speech_fraction: float = 0.5  # share of a leg's time that is speech
    legs_per_call: int = 1  # 1 = the customer leg only, 2 = the agent's too
    headroom: float = 0.8  # share of the workers' time admission may plan for
    max_backlog_s: float = 30.0  # audio seconds waiting in the pool above which new calls are refused
    ewma: float = 0.1  # weight of one new observation in the RTF average
    _calls: dict[str, str] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.workers < 1 or self.rtf <= 0 or not 0 < self.speech_fraction <= 1 or not 0 < self.headroom <= 1:
            raise ValueError(f"bad admission parameters: {self!r}")

    @property
    def capacity(self) -> int:
        """How many calls the workers carry at once at the current RTF."""
        load_per_call = self.rtf * self.speech_fraction * self.legs_per_call
        return max(0, math.floor(self.workers * self.headroom / load_per_call + 1e-9))

    @property
    def active(self) -> int:
        return sum(1 for s in self._calls.values() if s == ADMITTED)

    def admit(self, call_id: str, backlog_s: float = 0.0) -> str:
        """``"on"`` if the call gets live ASR, else ``"skipped: capacity"``; the first answer sticks for the call."""
        with self._lock:
            if call_id in self._calls:
                return self._calls[call_id]
            ok = self.active < self.capacity and backlog_s <= self.max_backlog_s
            self._calls[call_id] = ADMITTED if ok else SKIPPED_CAPACITY
            return self._calls[call_id]

    def status(self, call_id: str) -> str | None:
        return self._calls.get(call_id)

    def release(self, call_id: str) -> None:
        """The call ended: its slot is free again."""
        with self._lock:
            self._calls.pop(call_id, None)

    def observe(self, audio_s: float, decode_s: float) -> None:
        """One finished decode: move the RTF towards ``decode_s / audio_s``."""
        if audio_s <= 0:
            return
        with self._lock:
            self.rtf = (1 - self.ewma) * self.rtf + self.ewma * (decode_s / audio_s)


# --------------------------------------------------------------------------- a call's live-ASR state
def note_request(asr: dict[str, Any], requested: str | None) -> dict[str, Any]:
    """A per-call override (``asr=on|off``) sent before the call's first analysed audio is kept for
    :func:`decide`; once the call has a status the override is ignored (the first chunk decides)."""
    if requested is None or asr.get("status") is not None:
        return asr
    if requested not in ("on", "off"):
        raise ValueError(f"asr override must be on or off, got {requested!r}")
    return {**asr, "requested": requested}


def decide(asr: dict[str, Any], setting: LiveAsrMode, override: str | None, available: bool,
           admit: Callable[[], str]) -> dict[str, Any]:
    """The call's first analysed audio: its live-ASR status (see the module docstring).  ``admit`` asks the
    capacity admission (called only when ASR is wanted and available).  A call with a status keeps it."""
    if asr.get("status") is not None:
        return asr
    asr = note_request(asr, override)
    mode = asr.get("requested") or setting
    if not wants_asr(setting, asr.get("requested"), bool(asr.get("platform"))):
        status = SKIPPED_PLATFORM if mode == "auto" else OFF
    elif not available:
        status = UNAVAILABLE
    else:
        status = admit()
    return {**asr, "mode": mode, "status": status}


def note_platform(asr: dict[str, Any], role: str, start: float | None, end: float | None) -> tuple[dict[str, Any], bool]:
    """A final platform transcript: remember its span; in ``auto`` mode (or before the decision) ASR is off for
    the call from now on.  Returns the new state and whether ASR was on and has just stopped."""
    spans = list(asr.get("spans") or [])
    if start is not None or end is not None:
        a = start if start is not None else end
        b = end if end is not None else start
        mine = [s for s in spans if s[0] == role][-(MAX_PLATFORM_SPANS - 1):]
        spans = [s for s in spans if s[0] != role] + mine + [[role, a, b]]
    out = {**asr, "platform": True, "spans": spans}
    stopped = False
    if asr.get("mode", "auto") == "auto" and asr.get("status") in (None, ADMITTED, SKIPPED_CAPACITY):
        stopped = asr.get("status") == ADMITTED
        if asr.get("status") is not None:
            out["status"] = SKIPPED_PLATFORM
    return out, stopped


def accepts(asr: dict[str, Any], role: str, start: float | None, end: float | None) -> str | None:
    """``None`` when a recognised utterance may be applied to the call, else why not."""
    if asr.get("status") != ADMITTED:
        return f"live ASR is {asr.get('status') or 'not decided'} for this call"
    if start is None or end is None:
        return None
    for r, a, b in asr.get("spans") or ():
        if r == role and min(b, end) - max(a, start) > 0:
            return "a platform transcript covers this span"
    return None
