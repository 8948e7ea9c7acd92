"""Which calls get live ASR: the ``auto | on | off`` rule and capacity admission from the measured RTF.

A recogniser process keeps up with ``1 / rtf`` seconds of speech per second.  A call's customer leg is speech
for about ``speech_fraction`` of the time, so ``workers`` processes carry

    capacity = floor(workers * headroom / (rtf * speech_fraction * legs_per_call))

calls at once; ``headroom`` < 1 keeps spare time for bursts (both sides of many calls talking at once).  A call
beyond capacity is not queued to lag further and further behind: it is refused and its state says
``asr: "skipped: capacity"``.  ``observe(audio_s, decode_s)`` updates the RTF from the workers' real decodes
(exponential average), so admission follows the host's actual load; new calls are also refused while the
pool's backlog exceeds ``max_backlog_s``.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Literal

LiveAsrMode = Literal["auto", "on", "off"]
LIVE_ASR_MODES: tuple[str, ...] = ("auto", "on", "off")
ADMITTED = "on"
SKIPPED_CAPACITY = "skipped: capacity"
SKIPPED_PLATFORM = "off: platform transcripts"
OFF = "off"


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
