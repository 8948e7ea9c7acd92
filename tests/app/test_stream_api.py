"""Streamed audio (issue 14) on the real escalating sample call with the real models: 20 ms frames over the WebSocket
and over short POSTs, two legs with their own sequence numbers, reconnects (also on another worker), out-of-order and
lost frames, hold silence, the audio-time rate limit; each gives the analysis of today's 1 s chunks."""
from __future__ import annotations

import wave

import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from app.services.stream import telephony
from pipelines.settings import REPO_ROOT

RATE, FRAME = 8000, 160  # 20 ms


@pytest.fixture(scope="module")
def pcm() -> np.ndarray:
    """call_escalating_8k.wav as int16 (n, 2): ch0 agent, ch1 customer."""
    with wave.open(str(REPO_ROOT / "sample_audio" / "call_escalating_8k.wav")) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2).copy()


def fast(settings):
    """Tests send faster than real time: lift the audio-time and message limits (the override the limit allows)."""
    tel = telephony(settings)
    tel.stream_max_ahead_s = 1e9
    tel.stream_max_messages_per_s = 1e9
    return settings


@pytest.fixture()
def fclient(settings, models):
    from app.main import create_app

    with TestClient(create_app(fast(settings), models=models)) as c:
        yield c


def reference(client, pcm: np.ndarray, call_id: str = "ref") -> dict:
    """Today's behaviour: the call as 1 s stereo raw-PCM chunks over HTTP; per window and role the acoustic anger,
    and the summary after the end."""
    per = {}
    for seq, i in enumerate(range(0, len(pcm), RATE)):
        r = client.post(f"/v1/calls/{call_id}/audio", content=pcm[i:i + RATE].tobytes(),
                        params={"seq": seq, "encoding": "pcm_s16le", "sample_rate": RATE, "channels": 2})
        assert r.status_code == 200, r.text
        for role, v in r.json()["roles"].items():
            per[(r.json()["t_start"], role)] = v["anger"]
    return {"per": per, "summary": client.post(f"/v1/calls/{call_id}/end").json()["summary"]}


@pytest.fixture()
def ref(fclient, pcm):
    return reference(fclient, pcm)


def per_window(msgs: list[dict]) -> dict:
    return {(m["t_start"], role): v["anger"] for m in msgs for role, v in m["roles"].items()}


def next_analysis(ws, msgs: list[dict]) -> dict:
    """The next analysis message (alert messages before it are kept in ``msgs`` too)."""
    while True:
        m = ws.receive_json()
        msgs.append(m)
        if m.get("type") in ("analysis", "pong") or "error" in m:
            return m


def end(ws, msgs: list[dict]) -> dict:
    ws.send_json({"type": "end"})
    while (m := ws.receive_json()).get("status") not in ("ended", "active") or m.get("type") == "analysis":
        assert "error" not in m, m
        msgs.append(m)  # the last short window (and its alerts)
    return m


def summary(client, call_id: str) -> dict:
    view = client.get(f"/v1/calls/{call_id}").json()
    assert view["status"] == "ended"
    return view["summary"]


def test_stereo_20ms_frames_over_the_websocket_give_the_1s_chunk_analysis(fclient, pcm, ref):
    msgs = []
    with fclient.websocket_connect("/v1/calls/s1/stream?encoding=pcm_s16le&sample_rate=8000&channels=2") as ws:
        for i in range(0, len(pcm), FRAME):
            ws.send_bytes(pcm[i:i + FRAME].tobytes())
            if (i + FRAME) % RATE == 0:  # one analysis message per completed window, none per frame
                m = next_analysis(ws, msgs)
                assert m["type"] == "analysis" and m["t_end"] == (i + FRAME) / RATE
                assert {w["role"] for w in m["windows"]} == {"agent", "customer"} and m["wall_s"] > 1.7e9
        end(ws, msgs)
    assert any(m["type"] == "alert" for m in msgs)  # alerts as they are raised
    msgs = [m for m in msgs if m.get("type") == "analysis"]
    assert len(msgs) == 75 and msgs[-1]["windows"][0]["final"] is True
    assert per_window(msgs) == ref["per"]  # same audio, same features/anger per window and role
    got = summary(fclient, "s1")
    assert got["peak_stage"] == ref["summary"]["peak_stage"] >= 2
    assert got["duration_s"] == ref["summary"]["duration_s"]


def test_two_mono_legs_with_their_own_sequence_numbers(fclient, pcm, ref):
    """role=customer and role=agent on two connections, each numbering its frames from 0 (issue 14: 19 of 20 agent
    frames came back duplicate)."""
    base = "/v1/calls/legs/stream?encoding=pcm_s16le&sample_rate=8000&start=0&seq=0"
    msgs = []
    with fclient.websocket_connect(base + "&role=customer") as cust, \
            fclient.websocket_connect(base + "&role=agent") as agent:
        for i in range(0, len(pcm), FRAME):
            cust.send_bytes(pcm[i:i + FRAME, 1].tobytes())
            agent.send_bytes(pcm[i:i + FRAME, 0].tobytes())
            if (i + FRAME) % RATE == 0:
                next_analysis(cust, msgs)
                next_analysis(agent, msgs)
        for ws in (cust, agent):
            end(ws, msgs)
    msgs = [m for m in msgs if m.get("type") == "analysis"]
    assert sorted(len(m["roles"]) for m in msgs) == [1] * 150
    assert per_window(msgs) == ref["per"]  # each leg's window k is analysed as the 1 s chunk's channel
    assert not any(m["duplicate"] for m in msgs)
    assert summary(fclient, "legs")["peak_stage"] == ref["summary"]["peak_stage"]


def test_short_posts_buffer_reorder_lose_and_hold(fclient, pcm):
    def post(seq, body, **kw):
        r = fclient.post("/v1/calls/p1/audio", content=body,
                         params={"seq": seq, "encoding": "pcm_s16le", "sample_rate": RATE, "role": "customer", **kw})
        assert r.status_code == 200, r.text
        return r.json()

    x = pcm[:, 1]
    hop = 800  # 100 ms
    first = post(0, x[:hop].tobytes())
    assert first["completed"] == [] and first["buffered_s"] == {"customer": 0.1}
    for k in range(1, 9):
        assert post(k, x[k * hop:(k + 1) * hop].tobytes())["completed"] == []
    assert post(3, x[3 * hop:4 * hop].tobytes())["duplicate"] is True  # a repeated frame changes nothing
    done = post(9, x[9 * hop:10 * hop].tobytes())["completed"]
    assert [(m["t_start"], m["t_end"]) for m in done] == [(0.0, 1.0)] and done[0]["windows"][0]["lost_s"] == 0
    # out of order: 11 before 10 is put back in order; 12 is lost (13.. arrive beyond the jitter window)
    assert post(11, x[11 * hop:12 * hop].tobytes())["buffered_s"]["customer"] == pytest.approx(0.1)
    post(10, x[10 * hop:11 * hop].tobytes())
    out = [post(k, x[k * hop:(k + 1) * hop].tobytes()) for k in range(13, 21)]
    lost = [g for o in out for g in o["lost"]] + [g for o in out for m in o["completed"] for g in m["lost"]]
    assert lost == [{"role": "customer", "reason": "loss", "t_start": 1.2, "duration_s": 0.1, "seq": [12, 12]}]
    win = [m for o in out for m in o["completed"]]
    assert [(m["t_start"], m["windows"][0]["lost_s"]) for m in win] == [(1.0, 0.1)]
    # hold: 3 s of digital silence is audio (no 4xx) and moves the clock on
    for k in range(21, 51):
        assert post(k, bytes(2 * hop))["completed"] is not None
    view = fclient.get("/v1/calls/p1").json()
    assert view["state"]["clock_s"] == 5.0
    assert fclient.post("/v1/calls/p1/end").json()["summary"]["duration_s"] == 5.1  # + the buffered 0.1 s


def test_reconnect_continues_the_leg_on_another_worker(settings, models, pcm, fclient):
    """The first connection drops mid-window; a second app on the same store (another worker) continues the leg
    with the same sequence numbers: the windows are exactly those of one unbroken stream."""
    from app.main import create_app

    url = "/v1/calls/rc/stream?encoding=pcm_s16le&sample_rate=8000&channels=2"
    cut = 5 * RATE + 40 * FRAME // 2  # 5.4 s: inside window 5
    msgs = []
    with fclient.websocket_connect(url) as ws:
        for i in range(0, cut, FRAME):
            ws.send_bytes(pcm[i:i + FRAME].tobytes())
            if (i + FRAME) % RATE == 0:
                next_analysis(ws, msgs)
        ws.send_json({"type": "ping"})  # every frame taken: 0.4 s buffered per leg
        assert next_analysis(ws, msgs)["type"] == "pong" and msgs.pop()["buffered_s"] == {"agent": 0.4,
                                                                                           "customer": 0.4}
    # no waiting here: the reconnect may arrive before the dropped connection's close has saved its legs (under load
    # it does); the leg's lease makes the reconnect wait for that save, so it continues from the last frame
    with TestClient(create_app(settings, models=models)) as other:
        with other.websocket_connect(url) as ws:
            for i in range(cut, 10 * RATE, FRAME):
                ws.send_bytes(pcm[i:i + FRAME].tobytes())
                if (i + FRAME) % RATE == 0:
                    next_analysis(ws, msgs)
    msgs = [m for m in msgs if m.get("type") == "analysis"]
    assert [m["t_start"] for m in msgs] == [float(k) for k in range(10)]
    assert all(w["lost_s"] == 0 and w["pad_s"] == 0 for m in msgs for w in m["windows"])
    with TestClient(create_app(settings, models=models)) as one:  # the same windows from one unbroken stream
        with one.websocket_connect(url.replace("/rc/", "/rc1/")) as ws:
            ref = []
            for i in range(0, 10 * RATE, FRAME):
                ws.send_bytes(pcm[i:i + FRAME].tobytes())
                if (i + FRAME) % RATE == 0:
                    next_analysis(ws, ref)
    assert per_window(msgs) == per_window([m for m in ref if m.get("type") == "analysis"])


def test_a_leg_may_not_run_ahead_of_real_time(client, pcm):
    """Default limits: a leg sending much faster than real time is refused and closed (stream_max_ahead_s)."""
    with client.websocket_connect("/v1/calls/rl/stream?encoding=pcm_s16le&sample_rate=8000&channels=2") as ws:
        with pytest.raises(WebSocketDisconnect):
            for i in range(0, 10 * RATE, FRAME):
                ws.send_bytes(pcm[i:i + FRAME].tobytes())
            while True:
                m = ws.receive_json()
                if "error" in m:
                    assert m["status"] == 429 and "ahead of real time" in m["error"]["message"]
    state = client.get("/v1/calls/rl").json()["state"]
    assert 1 <= state["chunks"] <= 3  # what it sent within the limit was analysed


def test_two_legs_over_short_posts_do_not_collide(fclient, pcm):
    """role=customer and role=agent POSTs with the same seq numbers are two legs, not duplicates."""
    hop, done = 800, []
    for k in range(20):  # 2 s of 100 ms frames per leg
        for role, col in (("customer", 1), ("agent", 0)):
            r = fclient.post("/v1/calls/p2/audio", content=pcm[k * hop:(k + 1) * hop, col].tobytes(),
                             params={"seq": k, "encoding": "pcm_s16le", "sample_rate": RATE, "role": role,
                                     "start": 0})
            assert r.status_code == 200 and r.json()["duplicate"] is False, r.text
            done += r.json()["completed"]
    assert sorted((m["t_start"], *m["roles"]) for m in done) == [(0.0, "agent"), (0.0, "customer"), (1.0, "agent"),
                                                                 (1.0, "customer")]
