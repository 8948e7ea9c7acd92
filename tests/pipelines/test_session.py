"""The per-call verbs of pipelines.session on their own (no service): a real recorded call, chunk by chunk, with
its transcript turns, through the real models; typed results, state round trip through JSON, summary."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines.audio.decode import DecodedChunk
from pipelines.fusion import CallAlert
from pipelines.session import (
    CallState,
    ChunkResult,
    UtteranceResult,
    process_audio,
    process_transcript,
    public_view,
    summarize,
)
from pipelines.text.context import WINDOW
from pipelines.transcripts import load_turns
from tests.conftest import SAMPLE_AUDIO, read_wav

ROLE_KEYS = {"features", "delta", "baseline", "anger", "stage"}


def chunk_of(x: np.ndarray, sr: int) -> DecodedChunk:
    return DecodedChunk(sample_rate=sr, input_rate=sr, duration_s=x.shape[0] / sr, encoding="pcm_s16le",
                        audio={"agent": np.ascontiguousarray(x[:, 0]), "customer": np.ascontiguousarray(x[:, 1])})


def run_call(name: str, models, *, via_json: bool):
    """Feed a sample call as 1 s chunks, each transcript turn once it is over; ``via_json``: the state goes
    through JSON between steps, as the service stores it."""
    x, sr = read_wav(SAMPLE_AUDIO / f"{name}.wav")
    turns = load_turns(SAMPLE_AUDIO / f"{name}.json")
    state = CallState()
    chunks: list[ChunkResult] = []
    utts: list[UtteranceResult] = []
    for seq, start in enumerate(range(0, x.shape[0], sr)):
        while turns and turns[0].end <= start / sr:
            t = turns.pop(0)
            utts.append(process_transcript(state, t.role, t.text, t.start, t.end, True, models))
        chunks.append(process_audio(state, chunk_of(x[start:start + sr], sr), seq, models))
        if via_json:
            state = CallState.from_state(json.loads(json.dumps(state.state_dict(), ensure_ascii=False)))
    return state, chunks, utts


@pytest.fixture(scope="module")
def escalating(models):
    return run_call("call_escalating_8k", models, via_json=True)


def test_chunks_return_typed_results(escalating):
    state, chunks, _ = escalating
    assert all(isinstance(c, ChunkResult) for c in chunks)
    first = chunks[0].entry
    assert first["seq"] == 0 and first["t_start"] == 0.0 and first["sample_rate"] == 8000
    for c in chunks:
        assert "alerts" not in c.entry and "_alerts" not in c.entry  # alerts travel beside the entry
        assert all(isinstance(a, CallAlert) for a in c.alerts)
        for role, e in c.entry["roles"].items():
            assert set(e) >= ROLE_KEYS, role
        json.dumps(c.entry)
    spoke = [c.entry["roles"]["customer"] for c in chunks if "fusion" in c.entry["roles"]["customer"]]
    assert spoke and all(e["anger"]["fused"] == e["fusion"]["fused"] for e in spoke)
    assert chunks[-1].entry["stage"] == state.fusion["stage"]
    d = chunks[-1].to_dict()
    assert d["alerts"] == [a.to_dict() for a in chunks[-1].alerts] and d["roles"] == chunks[-1].entry["roles"]


def test_turns_escalate_and_alert_once_each(escalating):
    state, chunks, utts = escalating
    assert all(isinstance(u, UtteranceResult) for u in utts) and state.utterances == len(utts) == 14
    for u in utts:
        assert {"anger_fused", "fusion", "stage", "explanation", "guidance"} <= set(u.entry)
        assert "_alerts" not in u.entry
    alerts = [a for r in [*chunks, *utts] for a in r.alerts]
    assert alerts, "the escalating sample call raised no alert"
    assert len({a.dedup_key for a in alerts}) == len(alerts)
    rises = [a.level for a in alerts if a.kind == "stage_rise"]
    assert len(set(rises)) == len(rises)  # each stage alerted once
    customer_turns = [u for u in utts if u.entry["role"] == "customer"]
    assert max(u.entry["stage"]["level"] for u in customer_turns[-3:]) >= 4  # 我要投诉 / 12315
    assert customer_turns[-1].entry["anger_fused"] > customer_turns[0].entry["anger_fused"]
    # the text turn fused the customer's own audio over its span
    assert "acoustic" in customer_turns[-1].entry["fusion"]["available"]


def test_summary_and_view(escalating, models):
    state, chunks, utts = escalating
    s = summarize(state, [c.entry for c in chunks], models.fusion)
    assert s["chunks"] == len(chunks) and s["utterances"] == 14 and s["peak_stage"] >= 4
    assert s["alert_count"] == sum(len(r.alerts) for r in [*chunks, *utts])
    assert s["roles"]["customer"]["acoustic_anger"]["max"] is not None
    view = public_view(state, models.fusion)
    assert view["stage"] == s["stage"] and view["trend"] and view["anger"]["fused"] is not None
    assert view["roles"]["customer"]["baseline"]["ready"] is True


def test_state_through_json_changes_nothing(escalating, models):
    state, chunks, utts = escalating
    mem_state, mem_chunks, mem_utts = run_call("call_escalating_8k", models, via_json=False)
    assert [c.to_dict() for c in mem_chunks] == [c.to_dict() for c in chunks]
    assert [u.to_dict() for u in mem_utts] == [u.to_dict() for u in utts]
    assert json.loads(json.dumps(mem_state.state_dict())) == json.loads(json.dumps(state.state_dict()))


def test_interim_snippet_does_not_advance_the_call(models):
    state = CallState()
    r = process_transcript(state, "customer", "我要投诉你们", 1.0, 2.0, False, models)
    assert isinstance(r, UtteranceResult) and r.alerts == []
    assert r.entry["final"] is False and "stage" not in r.entry and r.entry["keywords"]
    assert state.utterances == 0 and state.fusion == {}


def test_calm_call_raises_nothing(models):
    state, chunks, utts = run_call("call_calm_8k", models, via_json=False)
    assert not [a for r in [*chunks, *utts] for a in r.alerts]
    assert summarize(state, [c.entry for c in chunks], models.fusion)["peak_stage"] <= 1


def test_transcript_turns_use_dialogue_context(models):
    """The first turn is scored alone; later turns with the call's earlier turns (models/text-context), one
    utterance-model call each; the state keeps no text of them; interim snippets are scored but not remembered."""
    state = CallState()
    first = process_transcript(state, "agent", "您好，请问有什么可以帮您？", 0.0, 2.0, True, models).entry
    assert first["text_mode"] == "utterance" and "context" not in first
    assert len(state.text_context) == 1
    interim = process_transcript(state, "customer", "你们这", 2.5, 3.0, False, models).entry
    assert interim["text_mode"] == "context" and len(state.text_context) == 1
    text = "你们这是什么破服务！我都等了三天了！"
    turn = process_transcript(state, "customer", text, 2.5, 6.0, True, models).entry
    alone = models.text.predict([text])[0]
    assert turn["text_mode"] == "context" and turn["context"]["turns"] == 1
    assert turn["context"]["anger_utterance"] == pytest.approx(alone.anger, abs=1e-4)
    assert turn["anger"] == pytest.approx(turn["context"]["anger"], abs=1e-4)
    assert turn["probs"]["angry"] == turn["anger"] and abs(sum(turn["probs"].values()) - 1) < 1e-3
    assert turn["label"] == max(turn["probs"], key=turn["probs"].get)
    for i in range(12):
        process_transcript(state, "agent" if i % 2 else "customer", "好的", 7.0 + i, 7.5 + i, True, models)
    assert len(state.text_context) == WINDOW
    assert "破服务" not in json.dumps(state.text_context, ensure_ascii=False)
    # the context survives the JSON round trip a stored call makes between workers
    again = CallState.from_state(json.loads(json.dumps(state.state_dict())))
    a = process_transcript(state, "customer", "你们到底管不管", 20.0, 22.0, True, models).entry
    b = process_transcript(again, "customer", "你们到底管不管", 20.0, 22.0, True, models).entry
    assert a["context"] == b["context"]
