"""The native telephony endpoints, driven with each platform's real message shapes (and ffmpeg as the RTP sender),
on the real escalating sample call with the real models: every transport reaches the same peak stage as the same
audio in today's 1 s HTTP chunks (issue 14).  Sending runs faster than real time (the test override of the
audio-time limit)."""
from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import uuid
import wave

import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from app.telephony.audiosocket import HANGUP, UUID, build_packet
from app.telephony.events import MULAW_PCM16
from tests.app.telephony.conftest import ulaw_encode

RATE, FRAME = 8000, 160
FFMPEG = shutil.which("ffmpeg")


def tel_settings(settings, **over):
    tel = settings.telephony
    tel.stream_max_ahead_s = 1e9  # tests send faster than real time
    tel.stream_max_messages_per_s = 1e9
    tel.audiosocket_port = 0  # any free port
    tel.rtp_ports = "23000-23099"
    tel.rtp_host = "127.0.0.1"
    tel.rtp_idle_timeout_s = 0.7
    for k, v in over.items():
        setattr(tel, k, v)
    return settings


@pytest.fixture(scope="module")
def tclient(tmp_path_factory, models):
    from app.main import create_app
    from app.settings import ServiceSettings

    settings = tel_settings(ServiceSettings(state_dir=tmp_path_factory.mktemp("tel") / "state", store="sqlite"))
    with TestClient(create_app(settings, models=models)) as c:
        yield c


@pytest.fixture(scope="module")
def ulaw(call) -> dict[str, np.ndarray]:
    """Each leg as the µ-law a G.711 platform carries, decoded back to int16."""
    return {r: MULAW_PCM16[np.frombuffer(ulaw_encode(x), np.uint8)] for r, x in call.items()}


def http_peak(client, legs: dict[str, np.ndarray], call_id: str) -> int:
    """Today's behaviour: the call as 1 s stereo raw-PCM chunks over HTTP -> its peak stage."""
    x = np.stack([legs["agent"], legs["customer"]], axis=1).astype("<i2")
    for seq, i in enumerate(range(0, len(x), RATE)):
        r = client.post(f"/v1/calls/{call_id}/audio", content=x[i:i + RATE].tobytes(),
                        params={"seq": seq, "encoding": "pcm_s16le", "sample_rate": RATE, "channels": 2})
        assert r.status_code == 200, r.text
    return client.post(f"/v1/calls/{call_id}/end").json()["summary"]["peak_stage"]


@pytest.fixture(scope="module")
def peaks(tclient, call, ulaw) -> dict[str, int]:
    p = {"pcm": http_peak(tclient, call, "ref-pcm"), "ulaw": http_peak(tclient, ulaw, "ref-ulaw")}
    assert p["pcm"] >= 2 and p["ulaw"] >= 2  # the call escalates (issue 14: streamed frames stayed at 0)
    return p


def wait_ended(client, call_id: str, timeout: float = 60.0) -> dict:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        view = client.get(f"/v1/calls/{call_id}").json()
        if view.get("status") == "ended":
            return view
        time.sleep(0.1)
    raise AssertionError(f"call {call_id} did not end: {view}")


def wait_chunks(client, call_id: str, n: int, timeout: float = 60.0) -> None:
    t0 = time.monotonic()
    while client.get(f"/v1/calls/{call_id}").json().get("state", {}).get("chunks", 0) < n:
        assert time.monotonic() - t0 < timeout, f"call {call_id} has not analysed {n} windows"
        time.sleep(0.05)


def n_frames(call) -> int:
    return len(call["customer"]) // FRAME


# --------------------------------------------------------------------------- Twilio
def twilio_start(call_sid: str, stream_sid: str, seq: int, **params) -> str:
    return json.dumps({"event": "start", "sequenceNumber": str(seq), "streamSid": stream_sid, "start": {
        "accountSid": "AC" + "0" * 32, "streamSid": stream_sid, "callSid": call_sid,
        "tracks": ["inbound", "outbound"], "customParameters": {"agent_id": "agent-042", **params},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})


def twilio_media(stream_sid: str, seq: int, track: str, chunk: int, ts_ms: int, x: np.ndarray) -> str:
    return json.dumps({"event": "media", "sequenceNumber": str(seq), "streamSid": stream_sid, "media": {
        "track": track, "chunk": str(chunk), "timestamp": str(ts_ms),
        "payload": base64.b64encode(ulaw_encode(x)).decode()}})


def twilio_stream(ws, call, call_sid: str, stream_sid: str, frames: range, *, swap=(), drop=()) -> None:
    """One Media Streams connection: connected, start, then both tracks' 20 ms media for ``frames`` (numbered from 1
    and timed from 0 in this stream, as a new Twilio stream is)."""
    ws.send_text(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
    ws.send_text(twilio_start(call_sid, stream_sid, 1))
    msgs = []
    for k, i in enumerate(frames):
        for track, role in (("inbound", "customer"), ("outbound", "agent")):
            x = call[role][i * FRAME:(i + 1) * FRAME]
            msgs.append((track, k, twilio_media(stream_sid, 0, track, k + 1, k * 20, x)))
    order = list(range(len(msgs)))
    for a in swap:  # an inbound frame arrives after the next one
        order[2 * a], order[2 * a + 2] = order[2 * a + 2], order[2 * a]
    for j in order:
        track, k, m = msgs[j]
        if (track, k) not in drop:
            ws.send_text(m)


def test_twilio_media_streams_with_reconnect_reorder_and_loss(tclient, call, peaks):
    n, cut = n_frames(call), 1800  # the first stream drops at 36 s; Twilio starts a new stream for the call
    with tclient.websocket_connect("/v1/telephony/twilio") as ws:
        twilio_stream(ws, call, "CA-tw1", "MZ-1", range(0, cut), swap=(100, 700), drop={("inbound", 1200)})
        wait_chunks(tclient, "CA-tw1", 2 * cut // 50)  # Twilio sends nothing back: wait until all was taken
    view = tclient.get("/v1/calls/CA-tw1").json()
    assert view["status"] == "active" and view["agent_id"] == "agent-042"
    with tclient.websocket_connect("/v1/telephony/twilio") as ws:
        twilio_stream(ws, call, "CA-tw1", "MZ-2", range(cut, n))
        ws.send_text(json.dumps({"event": "stop", "sequenceNumber": "9", "streamSid": "MZ-2",
                                 "stop": {"accountSid": "AC" + "0" * 32, "callSid": "CA-tw1"}}))
        with pytest.raises(WebSocketDisconnect):
            ws.receive_text()  # the stream ended: the server closes
    view = wait_ended(tclient, "CA-tw1")
    timeline = view["timeline"]
    assert {r for e in timeline for r in e["roles"]} == {"customer", "agent"}
    lost = [w for e in timeline for w in e["windows"] if w["lost_s"] > 0]
    assert [(w["role"], w["index"], w["lost_s"]) for w in lost] == [("customer", 24, 0.02)]  # the dropped frame
    assert view["summary"]["duration_s"] == pytest.approx(n * FRAME / RATE, abs=0.03)
    assert view["summary"]["peak_stage"] == peaks["ulaw"]


def test_twilio_key_rides_in_the_custom_parameters(settings, models, call):
    from app.main import create_app

    settings.security.auth_enabled, settings.security.bootstrap_admin_key = True, "nuqi_root_key_for_tests_0123456789"
    with TestClient(create_app(tel_settings(settings), models=models)) as c:
        with c.websocket_connect("/v1/telephony/twilio") as ws:  # no key: closed before any audio is analysed
            ws.send_text(twilio_start("CA-nokey", "MZ-x", 1))
            with pytest.raises(WebSocketDisconnect) as exc:
                ws.receive_text()
            assert exc.value.code == 1008
        assert c.get("/v1/calls/CA-nokey", headers={"X-API-Key": settings.security.bootstrap_admin_key}).status_code \
            == 404
        with c.websocket_connect("/v1/telephony/twilio") as ws:
            ws.send_text(twilio_start("CA-key", "MZ-y", 1, api_key=settings.security.bootstrap_admin_key))
            for k in range(60):
                ws.send_text(twilio_media("MZ-y", k + 2, "inbound", k + 1, 20 * k, call["customer"][k * 160:(k + 1) * 160]))
            ws.send_text(json.dumps({"event": "stop", "sequenceNumber": "99", "streamSid": "MZ-y", "stop": {}}))
            with pytest.raises(WebSocketDisconnect):
                ws.receive_text()
        view = c.get("/v1/calls/CA-key", headers={"X-API-Key": settings.security.bootstrap_admin_key}).json()
        assert view["status"] == "ended" and "api_key" not in json.dumps(view)
        with pytest.raises(WebSocketDisconnect):  # AudioHook's X-API-KEY header is checked at the handshake
            with c.websocket_connect("/v1/telephony/audiohook", headers={"X-API-KEY": "wrong"}) as ws:
                ws.receive_text()


# --------------------------------------------------------------------------- Genesys AudioHook
def ah(msg_type: str, seq: int, serverseq: int, position: float, **params) -> str:
    return json.dumps({"version": "2", "type": msg_type, "seq": seq, "serverseq": serverseq,
                       "id": "e160e428-53e2-487c-977d-96989bf5c99d", "position": f"PT{position:g}S",
                       "parameters": params})


def ah_open(conversation: str) -> str:
    return ah("open", 1, 0, 0, organizationId="d7934305-0972-4844-938e-9060eef73d05", conversationId=conversation,
              participant={"id": "883efee8-3d6c-4537-b500-6d7ca4b92fa0", "ani": "+1-555-555-1234", "aniName": "John Doe",
                           "dnis": "+1-800-555-6789"},
              media=[{"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000},
                     {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000},
                     {"type": "audio", "format": "PCMU", "channels": ["internal"], "rate": 8000}],
              language="zh-CN")


def test_genesys_audiohook_v2(tclient, call, peaks):
    conv = "090eaa2f-72fa-480a-83e0-8667ff89c0ec"
    n = len(call["customer"])
    hop = 800  # 100 ms frames, external (customer) then internal (agent) interleaved
    with tclient.websocket_connect("/v1/telephony/audiohook", headers={"X-API-KEY": "unused-auth-off"}) as ws:
        ws.send_text(ah_open(conv))
        opened = json.loads(ws.receive_text())
        assert opened["type"] == "opened" and opened["clientseq"] == 1 and opened["seq"] == 1
        assert opened["parameters"]["media"] == [{"type": "audio", "format": "PCMU", "channels": ["external", "internal"],
                                                  "rate": 8000}]
        for i in range(0, n, hop):
            inter = np.stack([call["customer"][i:i + hop], call["agent"][i:i + hop]], axis=1).reshape(-1)
            ws.send_bytes(ulaw_encode(inter))
            if i == 30 * RATE:
                ws.send_text(ah("ping", 2, 1, i / RATE))
                pong = json.loads(ws.receive_text())
                assert pong["type"] == "pong" and pong["clientseq"] == 2 and pong["seq"] == 2
        ws.send_text(ah("close", 3, 2, n / RATE, reason="end"))
        closed = json.loads(ws.receive_text())
        assert closed["type"] == "closed" and closed["clientseq"] == 3
    view = wait_ended(tclient, conv)
    assert view["summary"]["peak_stage"] == peaks["ulaw"]


def test_audiohook_pause_and_discarded_audio_keep_the_clock(tclient, call):
    conv = "11111111-72fa-480a-83e0-8667ff89c0ec"
    x = np.stack([call["customer"][:8000], call["agent"][:8000]], axis=1).reshape(-1)
    with tclient.websocket_connect("/v1/telephony/audiohook") as ws:
        ws.send_text(ah_open(conv))
        ws.receive_text()
        ws.send_bytes(ulaw_encode(x))  # 1 s
        ws.send_text(ah("paused", 2, 1, 1))
        ws.send_text(ah("resumed", 3, 1, 1, start="PT1S", discarded="PT2S"))  # 2 s on hold, not sent
        ws.send_bytes(ulaw_encode(x))  # 1 s more
        ws.send_text(ah("close", 4, 1, 4, reason="end"))
        ws.receive_text()
    view = wait_ended(tclient, conv)
    assert view["summary"]["duration_s"] == 4.0  # the discarded 2 s are silence on the call's clock
    gaps = [w for e in view["timeline"] for w in e["windows"] if w["lost_s"]]
    assert sorted({w["index"] for w in gaps}) == [1, 2]


# --------------------------------------------------------------------------- FreeSWITCH fork
def test_freeswitch_audio_fork_stereo(tclient, call, peaks):
    x = np.stack([call["agent"], call["customer"]], axis=1).astype("<i2").tobytes()
    url = "/v1/telephony/fork?call_id=fs-1&sample_rate=8k&channels=2&channel_map=agent,customer"
    msgs = []
    with tclient.websocket_connect(url) as ws:  # (the test client cancels the server when the block exits)
        ws.send_text(json.dumps({"agent_id": "1001", "callId": "ignored-query-wins"}))
        step = 4 * FRAME
        for i in range(0, len(x), step):
            if i == 40 * step:  # a frame split inside a sample: the remainder waits for the next one
                ws.send_bytes(x[i:i + 101])
                ws.send_bytes(x[i + 101:i + step])
            else:
                ws.send_bytes(x[i:i + step])
            if (i + step) % (4 * RATE) == 0:
                msgs.append(ws.receive_json())
        ws.close(1000)  # FreeSWITCH closes the socket when the call ends
        view = wait_ended(tclient, "fs-1")
    assert [m["t_start"] for m in msgs if m["type"] == "analysis"][:3] == [0.0, 1.0, 2.0]
    assert view["agent_id"] == "1001"
    assert view["summary"]["peak_stage"] == peaks["pcm"]


# --------------------------------------------------------------------------- Asterisk AudioSocket
def test_asterisk_audiosocket_two_legs(tclient, call, peaks):
    legs = {}
    for role in ("customer", "agent"):
        r = tclient.post("/v1/calls/ast-1/audiosocket", json={"role": role, "agent_id": "7001"})
        assert r.status_code == 200, r.text
        legs[role] = r.json()
    socks = {r: socket.create_connection(("127.0.0.1", a["port"]), timeout=10) for r, a in legs.items()}
    try:
        for r, s in socks.items():
            s.sendall(build_packet(UUID, uuid.UUID(legs[r]["uuid"]).bytes))
        for i in range(0, len(call["customer"]), FRAME):
            for r, s in socks.items():
                s.sendall(build_packet(0x10, call[r][i:i + FRAME].astype("<i2").tobytes()))
        for s in socks.values():
            s.sendall(build_packet(HANGUP))
    finally:
        for s in socks.values():
            s.close()
    view = wait_ended(tclient, "ast-1")  # both legs hung up: the call ends
    assert view["agent_id"] == "7001"
    assert view["summary"]["peak_stage"] == peaks["pcm"]
    # an unknown UUID is refused
    with socket.create_connection(("127.0.0.1", legs["customer"]["port"]), timeout=5) as s:
        s.sendall(build_packet(UUID, uuid.uuid4().bytes) + build_packet(0x10, bytes(320)))
        s.settimeout(5)
        assert s.recv(100) == b""  # closed


# --------------------------------------------------------------------------- RTP (ffmpeg)
def leg_wav(path, x: np.ndarray) -> str:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(x.astype("<i2").tobytes())
    return str(path)


@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed (apt-get install ffmpeg)")
def test_rtp_legs_from_ffmpeg(tclient, call, peaks, tmp_path):
    ports = {}
    for role in ("customer", "agent"):
        r = tclient.post("/v1/calls/rtp-1/rtp", json={"role": role, "codec": "pcmu"})
        assert r.status_code == 200, r.text
        a = r.json()
        assert a["transport"] == "rtp" and a["payload_type"] == 0 and 23000 <= a["port"] <= 23099
        ports[role] = a["port"]
    procs = [subprocess.Popen([FFMPEG, "-hide_banner", "-loglevel", "error", "-readrate", "8",
                               "-i", leg_wav(tmp_path / f"{role}.wav", call[role]), "-ar", "8000", "-ac", "1",
                               "-c:a", "pcm_mulaw", "-seq", "65000", "-f", "rtp",
                               f"rtp://127.0.0.1:{port}?pkt_size=172"]) for role, port in ports.items()]
    for p in procs:
        assert p.wait(timeout=60) == 0
    view = wait_ended(tclient, "rtp-1")  # both legs idle: the call ends
    assert view["summary"]["duration_s"] == pytest.approx(len(call["customer"]) / RATE, abs=0.2)
    assert view["summary"]["peak_stage"] == peaks["ulaw"]
    t0 = time.monotonic()
    while tclient.app.state.telephony.rtp and time.monotonic() - t0 < 5:
        time.sleep(0.05)
    assert tclient.app.state.telephony.rtp == {}  # the ports were released
