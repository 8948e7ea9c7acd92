"""Dialogue-context anger (pipelines/text/context.py) with the shipped artifacts (models/text-context on top of
models/text-emotion) and held-out CPED series; the session's use of it is tested in tests/pipelines/test_session.py."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pipelines.errors import ModelNotAvailableError
from pipelines.settings import get_settings
from pipelines.text.context import LABELS, WINDOW, ContextEmotionModel, char_ngrams, with_anger
from pipelines.text.emotion import TextEmotionModel


@pytest.fixture(scope="module")
def ctx() -> ContextEmotionModel:
    return ContextEmotionModel.load(get_settings().models_dir / "text-context")


@pytest.fixture(scope="module")
def utt() -> TextEmotionModel:
    return TextEmotionModel.load(get_settings().models_dir / "text-emotion")


def _probs(utt, text):
    return utt.predict([text])[0].probs


def test_char_ngrams_are_stable_and_normalised():
    idx, val = char_ngrams("你们  太过分了！", 3, 1 << 18)
    idx2, val2 = char_ngrams("你们 太过分了！", 3, 1 << 18)  # whitespace runs are one space
    assert np.array_equal(idx, idx2) and np.allclose(val, val2)
    assert len(idx) == len(set(idx.tolist())) and abs(float(np.linalg.norm(val)) - 1) < 1e-6
    assert char_ngrams("", 3, 1 << 18)[0].size == 0


def test_with_anger_keeps_a_distribution():
    p = {"angry": 0.1, "happy": 0.5, "neutral": 0.2, "sad": 0.1, "fear": 0.05, "surprise": 0.05}
    q = with_anger(p, 0.6)
    assert q["angry"] == 0.6 and math.isclose(sum(q.values()), 1.0)
    assert math.isclose(q["happy"] / q["neutral"], 2.5)


def test_memory_holds_no_text(ctx, utt):
    text = "我的手机号是13812345678，你们到底管不管"
    mem = ctx.memory("customer", text, _probs(utt, text))
    keys = {"role", "logp", "ngram_as_prev1", "ngram_as_prev2"}
    assert set(mem) == (keys | {"member_logp"} if ctx.member is not None else keys)
    assert len(mem["logp"]) == len(LABELS)
    assert ctx.member is None or len(mem["member_logp"]) == len(LABELS)
    assert "138" not in json.dumps(mem, ensure_ascii=False)


def test_member_features_of_the_previous_turn_count(ctx, utt):
    """The n-gram member's log-probabilities of the previous turn enter the score; a memory stored without them
    (a call state from a model without the member) still scores."""
    if ctx.member is None:
        pytest.skip("the shipped text-context model has no n-gram member")
    prev = "你们这是什么破服务，气死我了"
    mem = ctx.memory("customer", prev, _probs(utt, prev))
    old = {k: v for k, v in mem.items() if k != "member_logp"}
    a = ctx.score("customer", "算了吧", _probs(utt, "算了吧"), [mem])
    b = ctx.score("customer", "算了吧", _probs(utt, "算了吧"), [old])
    assert a.anger != b.anger and 0 < b.anger < 1


def test_missing_member_files_are_reported(ctx, tmp_path):
    if ctx.member is None:
        pytest.skip("the shipped text-context model has no n-gram member")
    src = get_settings().models_dir / "text-context"
    for f in ("config.json", "weights.npz"):
        (tmp_path / f).write_bytes((src / f).read_bytes())
    with pytest.raises(ModelNotAvailableError, match="ngram_vocab.json"):
        ContextEmotionModel.load(tmp_path)


def test_context_moves_the_same_turn(ctx, utt):
    """The same reply reads angrier after an angry exchange than after a calm one."""
    reply = "你说什么？"
    calm = ["你好，请问有什么可以帮您？", "我想查一下我的订单"]
    angry = ["你们这是什么破服务！我等了三天了！", "您先别着急，我帮您查一下"]
    scores = {}
    for name, turns in (("calm", calm), ("angry", angry)):
        history = []
        for role, t in zip(("agent", "customer") if name == "calm" else ("customer", "agent"), turns):
            history.append(ctx.memory(role, t, _probs(utt, t)))
        scores[name] = ctx.score("customer", reply, _probs(utt, reply), history)
    assert scores["angry"].anger > scores["calm"].anger
    assert scores["angry"].turns == 2 and 0 < scores["calm"].anger < 1


def test_score_uses_at_most_the_window(ctx, utt):
    mems = [ctx.memory("agent", t, _probs(utt, t)) for t in ["好的", "请稍等", "还有别的问题吗"]]
    long_history = [ctx.memory("customer", "滚！", _probs(utt, "滚！"))] * 20 + mems
    a = ctx.score("customer", "嗯", _probs(utt, "嗯"), long_history)
    b = ctx.score("customer", "嗯", _probs(utt, "嗯"), long_history[-WINDOW:])
    assert a.anger == b.anger and a.turns <= WINDOW


def test_missing_artifact_is_reported(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="text-context"):
        ContextEmotionModel.load(tmp_path)


def test_held_out_series_context_beats_single_utterance(ctx, utt):
    """CPED series 45 (never trained on): the context mode separates anger utterances better than the shipped
    utterance model alone, scored turn by turn as served (memories, one utterance-model call per turn)."""
    from training.fusion.cped import load_dialogues
    from training.text.train_context import auc, best_f1

    dialogues = [d for d in load_dialogues().values() if d[0].tv == "45"]
    y, p_utt, p_ctx = [], [], []
    for utts in dialogues:
        history: list[dict] = []
        for u in utts:
            probs = _probs(utt, u.text)
            res = ctx.score(u.speaker, u.text, probs, history)
            history.append(res.memory)
            if len(history) > 1:  # context mode: an earlier turn exists
                y.append(u.anger)
                p_utt.append(probs["angry"])
                p_ctx.append(res.anger)
    y, p_utt, p_ctx = np.array(y), np.array(p_utt), np.array(p_ctx)
    assert y.sum() > 100
    assert auc(y, p_ctx) > auc(y, p_utt) + 0.02
    assert best_f1(y, p_ctx)[0] > best_f1(y, p_utt)[0]
