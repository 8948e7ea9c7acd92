"""Genesys AudioHook v2: a client conversation with the reference implementation's message shapes."""
from __future__ import annotations

import json

import numpy as np

from app.telephony.audiohook import AudioHookSession, format_duration, parse_duration
from app.telephony.events import (
    AudioDiscarded,
    CallEnded,
    CallStarted,
    LegFrame,
    Notice,
    PlatformError,
    StreamPaused,
    StreamResumed,
    ulaw_to_pcm16,
)
from pipelines.ingest import CallFramer, PushResult
from tests.app.telephony.conftest import assert_same_as_chunks, feed, ulaw_encode, windows_by_role

SESSION = "e160e428-53e2-487c-977d-96989bf5c99d"
CONV = "090eaa2f-72fa-480a-83e0-8667ff89c0ec"
ORG = "d7934305-0972-4844-938e-9060eef73d05"


class Client:
    """Builds client messages as Genesys sends them (seq, serverseq, position, id, parameters)."""

    def __init__(self) -> None:
        self.seq = 0
        self.serverseq = 0
        self.sent_samples = 0

    def msg(self, type_: str, **params) -> str:
        self.seq += 1
        return json.dumps({"version": "2", "id": SESSION, "type": type_, "seq": self.seq,
                           "serverseq": self.serverseq, "position": format_duration(self.sent_samples / 8000),
                           "parameters": params})

    def got(self, reply: str) -> dict:
        m = json.loads(reply)
        self.serverseq = m["seq"]
        return m


OPEN_MEDIA = [
    {"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000},
    {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000},
    {"type": "audio", "format": "PCMU", "channels": ["internal"], "rate": 8000},
]


def open_params(media=OPEN_MEDIA):
    return {"organizationId": ORG, "conversationId": CONV, "language": "zh-CN", "media": media,
            "participant": {"id": "883efee8-3d6c-4537-b500-6d7ca4b92fa0", "ani": "+8613800000000",
                            "aniName": "", "dnis": "+864000000000"}}


def test_audiohook_session_handshake_audio_pause_discard_and_close(call):
    c, s = Client(), AudioHookSession()
    events: list = []

    def send(text: str) -> list[dict]:
        out = s.feed_text(text)
        events.extend(out.events)
        return [c.got(r) for r in out.replies]

    (opened,) = send(c.msg("open", **open_params()))
    assert opened == {"version": "2", "type": "opened", "seq": 1, "clientseq": 1, "id": SESSION, "parameters": {
        "media": [OPEN_MEDIA[0]], "startPaused": False}}
    started = events[0]
    assert isinstance(started, CallStarted) and started.call_id == CONV and started.roles == ("customer", "agent")
    assert started.metadata["participant"]["ani"] == "+8613800000000"

    stereo = {ch: ulaw_encode(call[role][:8 * 8000]) for ch, role in (("external", "customer"), ("internal", "agent"))}
    inter = np.stack([np.frombuffer(stereo["external"], np.uint8), np.frombuffer(stereo["internal"], np.uint8)], 1)

    def audio(a: int, b: int) -> None:  # interleaved PCMU, external first (the order in 'opened'), 20 ms frames
        for i in range(a, b, 160):
            out = s.feed_binary(inter[i:i + 160].tobytes())
            assert out.replies == [] and not out.close
            events.extend(out.events)
            c.sent_samples += min(160, b - i)

    audio(0, 3 * 8000)
    (pong,) = send(c.msg("ping", rtt="PT0.02S"))
    assert (pong["type"], pong["seq"], pong["clientseq"], pong["parameters"]) == ("pong", 2, 2, {})
    assert send(c.msg("paused")) == []
    assert send(c.msg("resumed", start=format_duration(3.0), discarded="PT1.5S")) == []  # 1.5 s on hold, not sent
    audio(3 * 8000, 5 * 8000)
    assert send(c.msg("discarded", start="PT5S", discarded="PT0.5S")) == []  # 0.5 s dropped by the client
    audio(5 * 8000, 8 * 8000)
    assert send(c.msg("update", language="en-US")) == []
    assert send(c.msg("error", code=429, message="Too many requests", retryAfter="PT1S")) == []
    (closed,) = send(c.msg("close", reason="end"))
    assert (closed["type"], closed["seq"], closed["clientseq"], closed["id"]) == ("closed", 3, 8, SESSION)

    kinds = [type(e) for e in events if not isinstance(e, LegFrame)]
    assert kinds == [CallStarted, StreamPaused, StreamResumed, AudioDiscarded, Notice, PlatformError, CallEnded]
    assert [e.discarded_s for e in events if isinstance(e, StreamResumed)] == [1.5]
    f = CallFramer()
    res = feed(f, [e for e in events if isinstance(e, LegFrame)])
    res.extend(f.flush())
    wins = windows_by_role(res)
    for ch, role in (("external", "customer"), ("internal", "agent")):
        x = ulaw_to_pcm16(stereo[ch])
        expect = np.concatenate([x[:24000], np.zeros(12000, np.int16), x[24000:40000], np.zeros(4000, np.int16),
                                 x[40000:]])  # media clock: hold and discarded audio are silence of their length
        assert_same_as_chunks(wins[role], expect)
        assert sorted((g.t_start, g.duration_s) for g in res.gaps if g.role == role) == [(3.0, 1.5), (6.5, 0.5)]


def test_audiohook_picks_pcmu_then_l16_and_reads_l16_little_endian(call):
    c, s = Client(), AudioHookSession()
    offer = [{"type": "audio", "format": "L16", "channels": ["internal", "external"], "rate": 8000},
             {"type": "audio", "format": "opus", "channels": ["external"], "rate": 48000}]
    out = s.feed_text(c.msg("open", **open_params(offer)))
    assert json.loads(out.replies[0])["parameters"]["media"] == [offer[0]]
    pcm = np.stack([call["agent"][:1600], call["customer"][:1600]], 1).astype("<i2")  # internal first, as declared
    frames = s.feed_binary(pcm.tobytes()).events
    f = CallFramer()
    res: PushResult = feed(f, frames)
    res.extend(f.flush())
    wins = windows_by_role(res)
    assert np.array_equal(wins["agent"][0].samples, call["agent"][:1600])
    assert np.array_equal(wins["customer"][0].samples, call["customer"][:1600])
    c2, s2 = Client(), AudioHookSession()
    out = s2.feed_text(c2.msg("open", **open_params([offer[1]])))
    reply = json.loads(out.replies[0])
    assert out.close and reply["type"] == "disconnect" and reply["parameters"]["reason"] == "error"
    assert "no offered media" in reply["parameters"]["info"]


def test_audiohook_protocol_violations_disconnect_with_error():
    c, s = Client(), AudioHookSession()
    out = s.feed_binary(b"\xff" * 320)
    assert out.close and json.loads(out.replies[0])["parameters"]["info"] == "Received audio in state PREPARING"
    c, s = Client(), AudioHookSession()
    s.feed_text(c.msg("open", **open_params()))
    c.seq += 1  # skips a seq
    out = s.feed_text(c.msg("ping"))
    reply = json.loads(out.replies[0])
    assert out.close and reply["type"] == "disconnect" and "Invalid seq" in reply["parameters"]["info"]
    assert reply["seq"] == 2 and isinstance(out.events[-1], CallEnded)
    c, s = Client(), AudioHookSession()
    s.feed_text(c.msg("open", **open_params()))
    out = s.feed_binary(b"\xff" * 321)  # not whole stereo samples
    assert out.close and "whole number" in json.loads(out.replies[0])["parameters"]["info"]


def test_durations():
    assert parse_duration("PT0S") == 0.0 and parse_duration("PT12.345S") == 12.345 and parse_duration("PT.5S") == 0.5
    assert format_duration(1.5) == "PT1.500S" and format_duration(2) == "PT2S"
