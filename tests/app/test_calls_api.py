"""Live ingest API on the real sample call with the real models."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from tests.conftest import SAMPLE_AUDIO, read_wav, wav_bytes

FEATURES = ("speech_rate", "f0_median_hz", "f0_range_st", "loudness_db", "voiced_ratio")


@pytest.fixture(scope="module")
def call8k() -> np.ndarray:
    x, sr = read_wav(SAMPLE_AUDIO / "call_escalating_8k.wav")
    assert sr == 8000 and x.shape[1] == 2
    return x


def chunks(x: np.ndarray, sr: int = 8000, seconds: float = 1.0):
    hop = int(sr * seconds)
    for i in range(0, len(x), hop):
        yield i // hop, x[i:i + hop]


def post(client, call_id, seq, body, **params):
    return client.post(f"/v1/calls/{call_id}/audio", params={"seq": seq, **params}, content=body)


def test_health_and_ready(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["ready"] is True and r.json()["store"]["ok"] is True


def test_sample_call_chunk_by_chunk(client, call8k):
    deltas, anger, fused, stages = [], [], [], []
    for seq, block in chunks(call8k):
        r = post(client, "c1", seq, wav_bytes(block, 8000, 2), agent_id="a7")
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body["roles"]) == {"agent", "customer"}
        cust = body["roles"]["customer"]
        for name in FEATURES:
            assert name in cust["features"]
        assert 0.0 <= cust["features"]["voiced_ratio"] <= 1.0
        a = cust["anger"]["acoustic"]
        assert a is None or 0.0 <= a <= 1.0
        # every role entry carries the call's current stage, also when that speaker was silent
        assert 0 <= cust["stage"]["level"] <= 6 and cust["stage"]["name"]
        assert body["stage"] == cust["stage"]  # the customer channel is analysed last (channel_map agent,customer)
        deltas.append(cust["delta"])
        anger.append((body["t_start"], a))
        if cust["anger"].get("fused") is not None:
            fused.append((body["t_start"], cust["anger"]["fused"]))
            stages.append((body["t_start"], cust["stage"]["level"]))
    # delta is null while the customer's opening baseline fills, then present
    assert deltas[0] is None
    ready = [d for d in deltas if d is not None]
    assert ready, "baseline never became ready"
    assert {"speech_rate_pct", "f0_st", "loudness_db"} <= set(ready[-1])
    # the agitated part (after ~50 s) is louder, faster and higher than the calm opening, and the fused
    # anger (which carries those baseline deltas) is higher than in the calm opening
    late = [d for (t, _), d in zip(anger, deltas) if t >= 52 and d and d.get("loudness_db") is not None]
    assert np.median([d["loudness_db"] for d in late]) > 1.5
    assert np.median([d["f0_st"] for d in late if d.get("f0_st") is not None]) > 2.0
    assert np.median([d["speech_rate_pct"] for d in late if d.get("speech_rate_pct") is not None]) > 15
    # audio alone (听语速、听语调): the calm opening stays 平静, the agitated part reaches 即将转化为抱怨
    assert max(lv for t, lv in stages if t < 30) == 0
    assert max(lv for t, lv in stages if t >= 52) >= 2
    assert np.mean([f for t, f in fused if t >= 52]) > np.mean([f for t, f in fused if t < 30])

    view = client.get("/v1/calls/c1").json()
    assert view["agent_id"] == "a7" and view["state"]["chunks"] == len(deltas)
    assert len(view["timeline"]) == len(deltas)
    end = client.post("/v1/calls/c1/end").json()
    assert end["status"] == "ended" and end["summary"]["duration_s"] == pytest.approx(74.4, abs=0.5)
    assert client.post("/v1/calls/c1/end").json() == end  # idempotent
    r = post(client, "c1", 999, wav_bytes(call8k[:8000], 8000, 2))
    assert r.status_code == 409 and "ended" in r.json()["error"]["message"]


def test_duplicate_seq_is_idempotent_and_gap_recorded(client, settings, call8k):
    settings.ingest.gap_wait_s = 0.1  # the app's own settings object: how long seq 3 waits for 1 and 2
    blocks = dict(chunks(call8k))
    first = post(client, "c2", 0, wav_bytes(blocks[0], 8000, 2)).json()
    again = post(client, "c2", 0, wav_bytes(blocks[0], 8000, 2)).json()
    assert again["duplicate"] is True and again["roles"] == first["roles"]
    r = post(client, "c2", 3, wav_bytes(blocks[3], 8000, 2))  # 1 and 2 missing: waits, then records a gap
    assert r.status_code == 200 and r.json()["gaps"] == [[1, 2]]
    late = post(client, "c2", 1, wav_bytes(blocks[1], 8000, 2))
    assert late.status_code == 409 and "gap" in late.json()["error"]["message"]
    assert client.get("/v1/calls/c2").json()["state"]["chunks"] == 2


def test_raw_pcm_and_g711_mono(client, call8k):
    cust = call8k[8000 * 50: 8000 * 51, 1]
    pcm = (cust * 32767).astype("<i2").tobytes()
    r = post(client, "c3", 0, pcm, encoding="pcm_s16le", sample_rate=8000, role="customer")
    assert r.status_code == 200 and list(r.json()["roles"]) == ["customer"]
    import audioop

    r = client.post("/v1/calls/c3/audio", content=audioop.lin2ulaw(pcm, 2),
                    headers={"X-Seq": "1", "X-Encoding": "mulaw", "X-Sample-Rate": "8000", "X-Role": "customer"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("params,body,status,word", [
    ({"encoding": "pcm_s16le", "sample_rate": 8000}, b"\x01\x02\x03", 422, "whole number"),
    ({}, b"RIFF\x10\x00\x00\x00WAVEgarbage", 422, "WAV"),
    ({"encoding": "pcm_s16le", "sample_rate": 3000}, b"\x01\x02" * 100, 422, "sample_rate"),
    ({"encoding": "speex", "sample_rate": 8000}, b"\x01\x02" * 100, 422, "encoding"),
    ({"encoding": "pcm_s16le", "sample_rate": 8000}, b"", 422, "empty"),
    ({"encoding": "pcm_s16le", "sample_rate": 8000, "role": "boss"}, b"\x01\x02" * 100, 422, "role"),
])
def test_bad_chunks_are_4xx_and_leave_state_intact(client, call8k, params, body, status, word):
    ok = post(client, "c4", 0, wav_bytes(call8k[:8000], 8000, 2))
    assert ok.status_code == 200
    before = client.get("/v1/calls/c4").json()["state"]
    r = post(client, "c4", 1, body, **params)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert word.lower() in err["message"].lower()
    after = client.get("/v1/calls/c4").json()["state"]
    assert after == before
    assert post(client, "c4", 1, wav_bytes(call8k[8000:16000], 8000, 2)).status_code == 200


def test_digital_silence_is_audio_and_advances_the_clock(client, call8k):
    """Hold / mute: an all-zero chunk is valid silence (not a 4xx) and the next chunk starts after it (issue 14)."""
    assert post(client, "hold", 0, wav_bytes(call8k[:8000], 8000, 2)).status_code == 200
    r = post(client, "hold", 1, bytes(32000), encoding="pcm_s16le", sample_rate=8000, channels=2)
    assert r.status_code == 200, r.text
    assert r.json()["t_start"] == 1.0 and r.json()["roles"]["customer"]["features"]["speech_s"] == 0
    r = post(client, "hold", 2, wav_bytes(call8k[16000:24000], 8000, 2))
    assert r.status_code == 200 and r.json()["t_start"] == 2.0
    assert isinstance(r.json()["wall_s"], float)  # media time and wall-clock time


def test_oversize_chunk_is_413(client):
    x = (0.1 * np.sin(np.arange(8000 * 31) / 5)).astype(np.float32)
    r = post(client, "c5", 0, wav_bytes(x, 8000))
    assert r.status_code == 413 and r.json()["error"]["code"] == "chunk_too_large"


def test_missing_seq_and_bad_call_id(client, call8k):
    r = client.post("/v1/calls/c6/audio", content=wav_bytes(call8k[:8000], 8000, 2))
    assert r.status_code == 422 and "seq" in r.json()["error"]["message"]
    r = client.post("/v1/calls/bad%20id!/audio?seq=0", content=wav_bytes(call8k[:8000], 8000, 2))
    assert r.status_code == 422 and "call_id" in r.json()["error"]["message"]
    assert client.get("/v1/calls/nope").status_code == 404


def test_websocket_stream(client, call8k):
    with client.websocket_connect("/v1/calls/w1/stream?agent_id=a1&sample_rate=8000") as ws:
        for seq, block in list(chunks(call8k))[:3]:
            ws.send_bytes(wav_bytes(block, 8000, 2))
            msg = ws.receive_json()
            assert msg["seq"] == seq and "customer" in msg["roles"]
        ws.send_bytes(b"\x01\x02\x03")
        err = ws.receive_json()
        assert err["status"] == 422 and err["error"]["code"] == "audio_decode_error"
        ws.send_text(json.dumps({"type": "end"}))
        assert ws.receive_json()["status"] == "ended"


def test_ended_call_keeps_summary_and_drops_timeline_after_the_ttl(settings, models, call8k):
    from fastapi.testclient import TestClient

    from app.main import create_app

    settings = settings.updated(ended_call_detail_ttl_s=0.3)
    with TestClient(create_app(settings, models=models)) as client:
        for call_id in ("done", "later"):
            for seq, block in list(chunks(call8k))[:3]:
                assert post(client, call_id, seq, wav_bytes(block, 8000, channels=2)).status_code == 200
        summary = client.post("/v1/calls/done/end").json()["summary"]
        assert len(client.get("/v1/calls/done").json()["timeline"]) == 3  # still there right after the end
        time.sleep(0.5)
        client.post("/v1/calls/later/end")  # the SQLite store purges what is due when a call ends
        view = client.get("/v1/calls/done").json()
        assert view["timeline"] == [] and view["status"] == "ended"
        assert client.post("/v1/calls/done/end").json()["summary"] == summary
        assert len(client.get("/v1/calls/later").json()["timeline"]) == 3
