"""Framed ingest into the real analysis: the escalating sample call sent as two legs of 20 ms frames (each window
analysed as soon as it completes) gives the same features, anger and stage history as today's 1 s stereo chunks."""
from __future__ import annotations

import json
import wave

import numpy as np

from pipelines.audio.decode import ChunkFormat, decode_chunk
from pipelines.ingest import CallFramer, window_chunk
from pipelines.session import CallState, process_audio
from pipelines.settings import REPO_ROOT


def _per_role(entries: list[dict]) -> dict[tuple[float, str], dict]:
    out = {}
    for e in entries:
        for role, v in e["roles"].items():
            out[(e["t_start"], role)] = json.loads(json.dumps({k: v[k] for k in v if k != "stage"}))
    return out


def test_two_legs_in_20ms_frames_give_the_analysis_of_1s_chunks(models):
    with wave.open(str(REPO_ROOT / "sample_audio" / "call_escalating_8k.wav")) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    fmt = ChunkFormat(encoding="pcm_s16le", sample_rate=8000, channels=2, channel_map=("agent", "customer"))
    ref_state, ref = CallState(), []
    for k in range(0, len(x), 8000):
        ref.append(process_audio(ref_state, decode_chunk(x[k:k + 8000].astype("<i2").tobytes(), fmt), k // 8000,
                                 models).entry)

    framer, state, got = CallFramer(), CallState(), []
    for i in range(0, len(x), 160):
        for role, col in (("customer", 1), ("agent", 0)):  # two connections, each with its own seq
            res = framer.push(role, x[i:i + 160, col], seq=1000 * col + i // 160, wall=50.0 + (i + 160) / 8000)
            for win in res.windows:
                got.append(process_audio(state, window_chunk([win]), win.index, models, start_s=win.t_start).entry)
        if i % 8000 == 0:  # the service stores the framer with the call between windows
            framer = CallFramer.from_state(json.loads(json.dumps(framer.state_dict())))
    for win in framer.flush().windows:
        got.append(process_audio(state, window_chunk([win]), win.index, models, start_s=win.t_start).entry)

    a, b = _per_role(ref), _per_role(got)
    assert len(a) == len(b) == 150 and a == b  # features, baseline, delta, acoustic + fused anger per role/second
    assert ref_state.fusion["stage"]["history"] == state.fusion["stage"]["history"]
    assert max(h["level"] for h in state.fusion["stage"]["history"]) >= 2  # it escalates, as 1 s chunks do (issue 14)
