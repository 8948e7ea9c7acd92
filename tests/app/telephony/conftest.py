"""Shared by the telephony protocol tests: the real sample call per leg, a G.711 encoder, framer helpers."""
from __future__ import annotations

import wave

import numpy as np
import pytest

from app.telephony.events import ALAW_PCM16, MULAW_PCM16, LegFrame
from pipelines.ingest import CallFramer, PushResult
from pipelines.settings import REPO_ROOT

SAMPLE_WAV = REPO_ROOT / "sample_audio" / "call_escalating_8k.wav"


@pytest.fixture(scope="session")
def call() -> dict[str, np.ndarray]:
    """call_escalating_8k.wav, int16 per role (ch0 = agent, ch1 = customer)."""
    with wave.open(str(SAMPLE_WAV)) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    return {"agent": x[:, 0].copy(), "customer": x[:, 1].copy()}


def _encoder(table: np.ndarray):
    order = np.argsort(table, kind="stable")
    values = table[order].astype(np.int32)

    def encode(x: np.ndarray) -> bytes:
        """Nearest G.711 code for each int16 sample (decoding it gives the quantised signal exactly)."""
        x = np.asarray(x, np.int32)
        i = np.clip(np.searchsorted(values, x), 1, len(values) - 1)
        nearer_left = (x - values[i - 1]) <= (values[i] - x)
        return order[np.where(nearer_left, i - 1, i)].astype(np.uint8).tobytes()

    return encode


ulaw_encode = _encoder(MULAW_PCM16)
alaw_encode = _encoder(ALAW_PCM16)


def feed(framer: CallFramer, frames: list[LegFrame], wall: float | None = None) -> PushResult:
    res = PushResult()
    for fr in frames:
        res.extend(framer.push(fr.role, fr.samples, wall=wall, **fr.push_kwargs()))
    return res


def windows_by_role(res: PushResult) -> dict[str, list]:
    out: dict[str, list] = {}
    for w in res.windows:
        out.setdefault(w.role, []).append(w)
    return out


def assert_same_as_chunks(wins: list, x: np.ndarray, window: int = 8000) -> None:
    """The windows are exactly today's 1 s chunks of ``x`` (int16, bit-exact)."""
    ref = [x[i:i + window] for i in range(0, len(x), window)]
    assert [w.index for w in wins] == list(range(len(ref)))
    for w, r in zip(wins, ref):
        assert np.array_equal(w.samples, r), f"{w.role} window {w.index} differs"
