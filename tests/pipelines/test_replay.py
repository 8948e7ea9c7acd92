"""Text-only replay (pipelines/replay.py) of a sample call's transcript with the real models."""
from __future__ import annotations

from pipelines.replay import components_for, replay
from tests.conftest import SAMPLE_AUDIO


def test_replay_scores_later_turns_in_context_mode(models):
    assert "text_context" in components_for(None)
    lines = list(replay(SAMPLE_AUDIO / "call_escalating_8k.json", models))
    turns = [ln for ln in lines if ln["kind"] == "turn"]
    assert len(turns) >= 3 and lines[-1]["kind"] == "summary"
    assert turns[0]["text_mode"] == "utterance"
    assert {t["text_mode"] for t in turns[1:]} == {"context"}
    assert all(0.0 <= t["text_anger"] <= 1.0 for t in turns)
    assert max(t["stage"] for t in turns) >= 2  # the escalating call still escalates
