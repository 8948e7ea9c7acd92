"""FreeSWITCH mod_audio_fork / mod_audio_stream: metadata text frame, then binary L16 (mono or stereo)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from app.telephony.events import CallStarted, LegFrame, Notice, ProtocolError
from app.telephony.fork import ForkSession
from pipelines.errors import InputError, UnsupportedAudioError
from pipelines.ingest import CallFramer
from tests.app.telephony.conftest import assert_same_as_chunks, feed, windows_by_role


def run(session: ForkSession, texts: list[str], binaries: list[bytes]):
    events = []
    for t in texts:
        events.extend(session.feed_text(t).events)
    for b in binaries:
        events.extend(session.feed_binary(b).events)
    return events


def test_stereo_fork_split_at_odd_byte_boundaries_gives_1s_chunk_windows(call):
    n = 10 * 8000
    pcm = np.stack([call["customer"][:n], call["agent"][:n]], 1).astype("<i2").tobytes()  # caller left
    rng = np.random.default_rng(5)
    cuts = np.sort(rng.choice(np.arange(1, len(pcm)), size=300, replace=False))  # 1..n-1 bytes, odd included
    pieces = [pcm[a:b] for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(pcm)])]
    meta = {"callId": "fs-7f3c", "sampleRate": 8000, "channels": 2, "agent_id": "a-7", "queue": "vip"}
    s = ForkSession()
    events = run(s, [json.dumps(meta)], pieces)
    started = events[0]
    assert isinstance(started, CallStarted) and started.call_id == "fs-7f3c" and started.agent_id == "a-7"
    assert started.roles == ("customer", "agent") and started.metadata["queue"] == "vip"
    f = CallFramer()
    res = feed(f, [e for e in events if isinstance(e, LegFrame)])
    res.extend(f.flush())
    wins = windows_by_role(res)
    for role in ("customer", "agent"):
        assert_same_as_chunks(wins[role], call[role][:n])
    assert s.feed_text(json.dumps({"event": "late"})).events[0] == Notice("fork_text", {"event": "late"})


def test_query_string_wins_and_metadata_is_optional(call):
    s = ForkSession(call_id="q-1", sample_rate=16000, channel_map="agent")
    events = run(s, [json.dumps({"call_id": "meta-id", "sample_rate": 8000})], [call["agent"][:640].tobytes()])
    assert events[0].call_id == "q-1" and events[0].sample_rate == 16000 and events[0].roles == ("agent",)
    assert events[1].role == "agent" and events[1].sample_rate == 16000 and np.array_equal(events[1].samples,
                                                                                          call["agent"][:640])
    s = ForkSession(call_id="q-2", channels=2, channel_map="agent=1,customer=0")  # no text frame at all
    events = run(s, [], [np.stack([call["customer"][:4], call["agent"][:4]], 1).astype("<i2").tobytes()])
    assert [(e.role, e.samples.tolist()) for e in events[1:]] == [("customer", call["customer"][:4].tolist()),
                                                                  ("agent", call["agent"][:4].tolist())]


def test_fork_errors():
    with pytest.raises(InputError, match="call id"):
        ForkSession().feed_binary(b"\x00\x00")
    with pytest.raises(ProtocolError, match="JSON"):
        ForkSession().feed_text("call=1")
    with pytest.raises(UnsupportedAudioError):
        ForkSession(call_id="x", sample_rate=11025).feed_binary(b"\x00\x00")
    with pytest.raises(InputError, match="channel_map"):
        ForkSession(call_id="x", channels=1, channel_map="agent,customer").feed_binary(b"\x00\x00")
