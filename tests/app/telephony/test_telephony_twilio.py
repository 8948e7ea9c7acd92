"""Twilio Media Streams messages (the shapes of Twilio's docs) -> events -> framer windows."""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from app.telephony.events import CallEnded, CallStarted, Dtmf, LegFrame, Mark, ProtocolError, ulaw_to_pcm16
from app.telephony.twilio import TwilioSession
from pipelines.errors import UnsupportedAudioError
from pipelines.ingest import CallFramer, PushResult
from tests.app.telephony.conftest import assert_same_as_chunks, feed, ulaw_encode, windows_by_role

CALL_SID = "CA5f1c0c2b9e6d4a3b8c7d6e5f4a3b2c1d"
STREAM_SID = "MZ18ad3ab5a668481ce02b83e7395059f0"


def twilio_messages(call: dict, seconds: float, drop: set[tuple[str, int]] = frozenset(), hold=None):
    """connected, start, media (20 ms, both tracks, interleaved as Twilio sends them), a mark and a dtmf, stop.
    ``drop``: (track, chunk) never sent; ``hold``: (first_ms, last_ms) during which the outbound track sends
    nothing (chunk numbers continue, the timestamp jumps)."""
    n = int(seconds * 8000)
    seq = 0

    def msg(event, **body):
        nonlocal seq
        seq += 1
        return json.dumps({"event": event, "sequenceNumber": str(seq), **body, "streamSid": STREAM_SID})

    out = [json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})]
    out.append(msg("start", start={
        "accountSid": "AC00000000000000000000000000000000", "streamSid": STREAM_SID, "callSid": CALL_SID,
        "tracks": ["inbound", "outbound"],
        "customParameters": {"agent_id": "agent-042", "queue": "billing", "api_key": "nuqi_k"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}))
    payload = {track: ulaw_encode(call[role][:n]) for track, role in (("inbound", "customer"), ("outbound", "agent"))}
    chunk = {"inbound": 0, "outbound": 0}
    for k in range(n // 160):
        for track in ("inbound", "outbound"):
            if hold and track == "outbound" and hold[0] <= k * 20 < hold[1]:
                continue
            chunk[track] += 1
            if (track, chunk[track]) in drop:
                continue
            b64 = base64.b64encode(payload[track][k * 160:(k + 1) * 160]).decode()
            out.append(msg("media", media={"track": track, "chunk": str(chunk[track]), "timestamp": str(k * 20),
                                           "payload": b64}))
        if k == 100:
            out.append(msg("mark", mark={"name": "greeting-done"}))
            out.append(msg("dtmf", dtmf={"track": "inbound_track", "digit": "5"}))
    out.append(msg("stop", stop={"accountSid": "AC00000000000000000000000000000000", "callSid": CALL_SID}))
    return out, payload


def run_session(messages):
    s = TwilioSession()
    events = []
    for m in messages:
        out = s.feed(m)
        assert out.replies == []  # nuqi only listens
        events.extend(out.events)
    return s, events


def test_twilio_stream_gives_the_windows_of_1s_chunks(call):
    messages, payload = twilio_messages(call, 12.0)
    s, events = run_session(messages)
    started = [e for e in events if isinstance(e, CallStarted)]
    assert started[0].call_id == CALL_SID and started[0].agent_id == "agent-042"
    assert started[0].roles == ("customer", "agent") and started[0].sample_rate == 8000
    assert started[0].metadata["custom_parameters"] == {"agent_id": "agent-042", "queue": "billing"}
    assert s.api_key == "nuqi_k"  # for the route's key check, kept out of the metadata
    assert any(isinstance(e, Mark) and e.name == "greeting-done" for e in events)
    assert any(isinstance(e, Dtmf) and e.digit == "5" and e.role == "customer" for e in events)
    assert isinstance(events[-1], CallEnded) and events[-1].reason == "stop"
    frames = [e for e in events if isinstance(e, LegFrame)]
    assert {f.seq for f in frames if f.role == "agent"} == set(range(1, 601))
    f = CallFramer()
    res = feed(f, frames)
    res.extend(f.flush())
    wins = windows_by_role(res)
    for track, role in (("inbound", "customer"), ("outbound", "agent")):
        assert_same_as_chunks(wins[role], ulaw_to_pcm16(payload[track]))
    assert res.gaps == []
    # mu-law round trip of the real call stays close to the source (sanity of the decode direction)
    x, y = call["customer"][:96000].astype(float), wins["customer"][3].samples
    err = x[24000:32000] - y
    assert 10 * np.log10(np.sum(x[24000:32000] ** 2) / np.sum(err ** 2)) > 30


def test_lost_media_and_outbound_hold_become_silence_on_the_call_clock(call):
    drop = {("inbound", 50), ("inbound", 51), ("outbound", 300)}
    messages, payload = twilio_messages(call, 10.0, drop=drop, hold=(4000, 6000))
    _, events = run_session(messages)
    f = CallFramer()
    res = feed(f, [e for e in events if isinstance(e, LegFrame)])
    res.extend(f.flush())
    wins = windows_by_role(res)
    cust = ulaw_to_pcm16(payload["inbound"]).copy()
    cust[49 * 160:51 * 160] = 0
    assert_same_as_chunks(wins["customer"], cust)
    agent = ulaw_to_pcm16(payload["outbound"]).copy()
    agent[4 * 8000:6 * 8000] = 0  # hold: no frames sent
    agent[(299 + 100) * 160:(300 + 100) * 160] = 0  # chunk 300 after the 100-frame hold = 20 ms at 7.98 s
    assert_same_as_chunks(wins["agent"], agent)
    gaps = {(g.role, g.reason, round(g.t_start, 3), round(g.duration_s, 3)) for g in res.gaps}
    assert gaps == {("customer", "loss", 0.98, 0.04), ("agent", "timestamp", 4.0, 2.0), ("agent", "loss", 7.98, 0.02)}


def test_twilio_protocol_errors_are_precise():
    s = TwilioSession()
    with pytest.raises(ProtocolError, match="before 'start'"):
        s.feed(json.dumps({"event": "media", "media": {"track": "inbound", "payload": "AAAA"}}))
    with pytest.raises(ProtocolError, match="JSON"):
        s.feed("{not json")
    with pytest.raises(UnsupportedAudioError, match="mulaw"):
        s.feed(json.dumps({"event": "start", "start": {"callSid": "CA1", "mediaFormat": {
            "encoding": "audio/l16", "sampleRate": 16000, "channels": 1}}}))
    s.feed(json.dumps({"event": "start", "start": {"callSid": "CA1"}}))
    with pytest.raises(ProtocolError, match="base64"):
        s.feed(json.dumps({"event": "media", "media": {"track": "inbound", "chunk": "1", "payload": "@@@"}}))
    s.feed(json.dumps({"event": "stop", "stop": {}}))
    with pytest.raises(ProtocolError, match="after 'stop'"):
        s.feed(json.dumps({"event": "media", "media": {"track": "inbound", "payload": "AAAA"}}))


def test_track_mapping_is_configurable(call):
    messages, _ = twilio_messages(call, 0.2)
    s = TwilioSession({"inbound": "agent", "outbound": "customer"})
    frames = [e for m in messages for e in s.feed(m).events if isinstance(e, LegFrame)]
    assert {f.role for f in frames} == {"agent", "customer"}
    f = CallFramer()
    res: PushResult = feed(f, frames)
    res.extend(f.flush())
    agent = [w for w in res.windows if w.role == "agent"][0]
    assert np.array_equal(agent.samples, ulaw_to_pcm16(ulaw_encode(call["customer"][:1600])))
