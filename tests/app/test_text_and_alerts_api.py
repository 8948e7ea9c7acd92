"""Text endpoints, transcript snippets, and alert delivery (long-poll, SSE, ack) with the real models."""
from __future__ import annotations

import json
import threading

import pytest

from tests.conftest import SAMPLE_AUDIO, read_wav, wav_bytes

ANGRY = ["你们这什么破服务！我都等了三天了，说了多少遍了，再不解决我就打12315投诉你们！"]


def test_text_emotion_batch(client):
    texts = ["谢谢你，问题解决了，辛苦了", ANGRY[0], "", "😀😀", "！！！", "hello world", "我要投訴你們",
             "我不是要投诉只是问一下"]
    r = client.post("/v1/text/emotion", json={"texts": texts})
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert len(res) == len(texts)
    for item in res:
        assert set(item) >= {"label", "probs", "anger", "keywords"}
        assert abs(sum(item["probs"].values()) - 1) < 1e-3
    assert res[1]["anger"] > res[0]["anger"]
    assert {k["category"] for k in res[1]["keywords"]} >= {"external_escalation"}
    assert any(k["term"] in ("投诉", "投訴") or "投" in k["text"] for k in res[6]["keywords"])
    assert all(k["negated"] for k in res[7]["keywords"] if k["category"] == "complaint_intent")


@pytest.mark.parametrize("payload,word", [
    ({"texts": []}, "texts"),
    ({"texts": ["好"] * 257}, "256"),
    ({"texts": ["长" * 513]}, "512"),
    ({"texts": "不是列表"}, "texts"),
])
def test_text_emotion_limits(client, payload, word):
    r = client.post("/v1/text/emotion", json=payload)
    assert 400 <= r.status_code < 500 and word in r.json()["error"]["message"]


def test_transcript_interim_superseded_and_state(client):
    r = client.post("/v1/calls/t1/transcript",
                    json={"role": "customer", "text": "我要", "start": 1.0, "end": 1.5, "final": False, "id": "u1"})
    assert r.status_code == 200 and r.json()["state"]["utterances"] == 0
    r = client.post("/v1/calls/t1/transcript",
                    json={"role": "customer", "text": ANGRY[0], "start": 1.0, "end": 6.0, "final": True, "id": "u1"})
    body = r.json()
    assert body["utterance"]["anger"] > 0.5 and body["state"]["utterances"] == 1
    assert body["state"]["stage"]["level"] >= 3
    transcripts = client.get("/v1/calls/t1").json()["transcripts"]
    assert len(transcripts) == 1 and transcripts[0]["final"] is True
    bad = client.post("/v1/calls/t1/transcript", json={"role": "boss", "text": "x"})
    assert bad.status_code == 422 and "role" in bad.json()["error"]["message"]


def test_transcript_retry_by_id_is_idempotent(client):
    """Issue 17 item 11: the same final transcript id posted twice counted two utterances, raised the stage
    and sent a stage_rise alert."""
    calm = {"role": "customer", "text": "你好，我想查一下订单", "start": 0.0, "end": 2.0, "id": "u0"}
    assert client.post("/v1/calls/idem/transcript", json=calm).status_code == 200
    turn = {"role": "customer", "text": ANGRY[0], "start": 3.0, "end": 8.0, "final": True, "id": "u1"}
    first = client.post("/v1/calls/idem/transcript", json=turn).json()
    assert first["duplicate"] is False and first["state"]["utterances"] == 2
    retry = client.post("/v1/calls/idem/transcript", json=turn).json()
    assert retry["duplicate"] is True
    assert retry["state"]["utterances"] == 2 and retry["stage"] == first["stage"]
    assert retry["utterance"]["text"] == first["utterance"]["text"] and retry["utterance"]["id"] == "u1"
    assert [a["id"] for a in retry["alerts"]] == []  # stored once, not raised again
    late_interim = dict(turn, final=False, text="我要")
    assert client.post("/v1/calls/idem/transcript", json=late_interim).json()["duplicate"] is True
    view = client.get("/v1/calls/idem").json()
    assert view["state"]["utterances"] == 2 and len(view["transcripts"]) == 2
    assert view["transcripts"][1]["final"] is True and view["transcripts"][1]["text"] == first["utterance"]["text"]
    alerts = client.get("/v1/alerts", params={"call_id": "idem"}).json()["alerts"]
    assert len([a for a in alerts if a["kind"] == "stage_rise"]) == len(
        [a for a in first["alerts"] if a["kind"] == "stage_rise"])
    assert not any("_alerts" in t for t in view["transcripts"])
    # the same id on another call is another utterance
    other = client.post("/v1/calls/idem2/transcript", json=turn).json()
    assert other["duplicate"] is False and other["state"]["utterances"] == 1


def test_transcript_and_chunk_responses_share_the_top_level_shape(client):
    """Issue 17 item 15: stage, anger.fused and alerts at the top level of both (utterance details kept)."""
    x, sr = read_wav(SAMPLE_AUDIO / "call_escalating_8k.wav")
    for seq in range(3):
        chunk = client.post("/v1/calls/shape/audio", params={"seq": seq},
                            content=wav_bytes(x[seq * sr:(seq + 1) * sr], sr, 2)).json()
    tr = client.post("/v1/calls/shape/transcript",
                     json={"role": "customer", "text": ANGRY[0], "start": 1.0, "end": 6.0, "id": "s1"}).json()
    for body in (chunk, tr):
        assert {"call_id", "stage", "anger", "alerts", "duplicate"} <= set(body), sorted(body)
        assert isinstance(body["stage"]["level"], int) and body["stage"]["name"]
        assert "fused" in body["anger"] and isinstance(body["alerts"], list)
    assert tr["stage"] == tr["state"]["stage"] and tr["anger"]["fused"] == tr["state"]["anger"]["fused"]
    assert tr["anger"]["fused"] == tr["utterance"]["anger_fused"]
    assert tr["utterance"]["keywords"] and tr["utterance"]["role"] == "customer"  # the details stay
    interim = client.post("/v1/calls/shape/transcript",
                          json={"role": "customer", "text": "我", "final": False, "id": "s2"}).json()
    assert interim["stage"] == tr["stage"] and interim["anger"] == tr["anger"]


def _post_call(client, call_id: str, agent_id: str) -> None:
    x, sr = read_wav(SAMPLE_AUDIO / "call_escalating_8k.wav")
    turns = json.loads((SAMPLE_AUDIO / "call_escalating_8k.json").read_text())["turns"]
    pending = sorted(turns, key=lambda t: t["end"])
    for seq, i in enumerate(range(0, len(x), sr)):
        r = client.post(f"/v1/calls/{call_id}/audio", params={"seq": seq, "agent_id": agent_id},
                        content=wav_bytes(x[i:i + sr], sr, 2))
        assert r.status_code == 200, r.text
        t = (i + sr) / sr
        while pending and pending[0]["end"] <= t:
            turn = pending.pop(0)
            r = client.post(f"/v1/calls/{call_id}/transcript", json={**{k: turn[k] for k in
                            ("role", "text", "start", "end")}, "final": True})
            assert r.status_code == 200, r.text


def test_escalating_call_end_to_end_alerts(client):
    got: dict = {}

    def long_poll():  # waits while the call is being posted
        got["poll"] = client.get("/v1/alerts", params={"agent_id": "a9", "after": 0, "wait": 30}).json()

    th = threading.Thread(target=long_poll)
    th.start()
    _post_call(client, "e2e", "a9")
    th.join(35)
    assert got["poll"]["alerts"], "long-poll returned no alert"
    state = client.get("/v1/calls/e2e", params={"timeline": False}).json()["state"]
    assert state["stage"]["level"] >= 3
    alerts = client.get("/v1/alerts", params={"agent_id": "a9"}).json()["alerts"]
    top = max(alerts, key=lambda a: a["level"])
    assert top["explanation"] and top["guidance"] and top["call_id"] == "e2e"
    # no alert for another agent
    assert client.get("/v1/alerts", params={"agent_id": "other"}).json()["alerts"] == []
    # SSE delivers the same alerts with ids
    with client.stream("GET", "/v1/alerts/stream", params={"agent_id": "a9", "max_seconds": 2}) as s:
        body = "".join(s.iter_text())
    ids = [int(line[4:]) for line in body.splitlines() if line.startswith("id: ")]
    assert ids == [a["id"] for a in alerts]
    # ack is recorded and idempotent
    acked = client.post(f"/v1/alerts/{top['id']}/ack", json={"by": "a9"}).json()
    assert acked["acked"] is True and acked["acked_by"] == "a9"
    again = client.post(f"/v1/alerts/{top['id']}/ack", json={"by": "someone"}).json()
    assert again["acked_at"] == acked["acked_at"] and again["acked_by"] == "a9"
    unacked = client.get("/v1/alerts", params={"agent_id": "a9", "include_acked": False}).json()["alerts"]
    assert top["id"] not in [a["id"] for a in unacked]
    summary = client.post("/v1/calls/e2e/end").json()["summary"]
    assert summary["peak_stage"] >= 3 and summary["complaint"]["type"] != "无投诉"
    board = client.get("/v1/board", params={"include_ended": True}).json()
    assert board["calls"][0]["call_id"] == "e2e"


def test_calm_call_raises_no_alert(client):
    x, sr = read_wav(SAMPLE_AUDIO / "call_calm_8k.wav")
    turns = json.loads((SAMPLE_AUDIO / "call_calm_8k.json").read_text())["turns"]
    for seq, i in enumerate(range(0, len(x), sr)):
        assert client.post("/v1/calls/calm/audio", params={"seq": seq, "agent_id": "a2"},
                           content=wav_bytes(x[i:i + sr], sr, 2)).status_code == 200
    for turn in turns:
        client.post("/v1/calls/calm/transcript", json={k: turn[k] for k in ("role", "text", "start", "end")})
    state = client.get("/v1/calls/calm", params={"timeline": False}).json()["state"]
    assert state["stage"]["level"] <= 1
    assert client.get("/v1/alerts", params={"agent_id": "a2"}).json()["alerts"] == []


def test_transcript_says_which_text_mode_scored_it(client):
    """The first turn of a call is scored alone; later turns with the call's earlier turns (dialogue context)."""
    agent = {"role": "agent", "text": "您好，请问有什么可以帮您？", "start": 0.0, "end": 2.0, "final": True, "id": "a1"}
    first = client.post("/v1/calls/ctx/transcript", json=agent).json()["utterance"]
    assert first["text_mode"] == "utterance" and first.get("context") is None
    turn = {"role": "customer", "text": ANGRY[0], "start": 2.5, "end": 8.0, "final": True, "id": "c1"}
    second = client.post("/v1/calls/ctx/transcript", json=turn).json()["utterance"]
    assert second["text_mode"] == "context" and second["context"]["turns"] == 1
    assert second["anger"] == second["context"]["anger"] and 0.0 < second["anger"] < 1.0
    assert second["context"]["anger_utterance"] > 0.5
    stored = client.get("/v1/calls/ctx").json()["transcripts"]
    assert [t["text_mode"] for t in stored] == ["utterance", "context"]
