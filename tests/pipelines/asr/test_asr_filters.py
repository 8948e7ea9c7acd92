"""Hallucination filters on strings Whisper really produces for Chinese silence/noise."""
from __future__ import annotations

import pytest

from pipelines.asr.filters import (
    collapse_repeated_segments,
    collapse_repetitions,
    decode_stats_reason,
    filter_segment,
    is_repetition_loop,
    known_hallucination,
    normalize_for_match,
    prompt_echo,
    to_simplified,
)

# Whisper outputs on silence / music / noise (subtitle and channel credits from its training data)
KNOWN_HALLUCINATIONS = [
    "请不吝点赞 订阅 转发 打赏支持明镜与点点栏目",
    "請不吝點贊 訂閱 轉發 打賞支持明鏡與點點欄目",
    "字幕由Amara.org社区提供",
    "由 Amara.org 社区提供的字幕",
    "優優獨播劇場——YoYo Television Series Exclusive",
    "中文字幕志愿者 杨茜茜",
    "明镜需要您的支持 欢迎订阅明镜",
    "谢谢观看",
    "謝謝觀看！",
    "感谢收看。",
    "我们下期再见",
]

REAL_CALL_SENTENCES = [
    "谢谢您的耐心等待",
    "好的，谢谢。",
    "对对对对，就是这个订单。",
    "喂喂喂，听得到吗？",
    "我要投诉，马上给我处理！",
    "请问您要订阅我们的短信提醒吗？",  # 订阅 alone is normal vocabulary
    "再不解决我就打12315！",
]


@pytest.mark.parametrize("text", KNOWN_HALLUCINATIONS)
def test_known_hallucinations_are_dropped(text: str) -> None:
    assert known_hallucination(text) is not None
    assert filter_segment(text) is None


@pytest.mark.parametrize("text", REAL_CALL_SENTENCES)
def test_real_sentences_are_kept_unchanged(text: str) -> None:
    assert known_hallucination(text) is None
    assert not is_repetition_loop(text)
    assert filter_segment(text, avg_logprob=-0.4, no_speech_prob=0.05, compression_ratio=1.1) == text


@pytest.mark.parametrize("text", ["谢谢谢谢谢谢谢谢谢谢谢谢", "谢谢，谢谢，谢谢，谢谢，谢谢，", "啊啊啊啊啊啊啊啊啊啊", "嗯嗯嗯嗯嗯嗯嗯"])
def test_pure_loops_are_dropped(text: str) -> None:
    assert is_repetition_loop(text)
    assert filter_segment(text) is None


def test_loop_inside_speech_is_collapsed_not_dropped() -> None:
    # real decode of a synthetic clip: '我帮您喝一小汤汤汤汤汤汤汤汤汤。'
    assert filter_segment("我帮您喝一小汤汤汤汤汤汤汤汤汤。") == "我帮您喝一小汤汤。"
    assert collapse_repetitions("我要投诉投诉投诉投诉投诉投诉") == "我要投诉投诉"
    assert collapse_repetitions("对对对对") == "对对对对"  # natural backchannel untouched


def test_decoder_statistics() -> None:
    assert decode_stats_reason(-0.3, 0.1, 2.9) is not None  # repetitive (gzip ratio > 2.4)
    assert decode_stats_reason(-2.1, 0.1, 1.2) is not None  # decoder guessing
    assert decode_stats_reason(-0.9, 0.97, 1.2) is not None  # no-speech token won
    assert decode_stats_reason(-0.3, 0.97, 1.2) is None  # confident text despite no_speech_prob
    assert decode_stats_reason(-0.6, 0.2, 1.3) is None
    assert filter_segment("我都等了三天了", avg_logprob=-2.1) is None


def test_prompt_echo_is_dropped() -> None:
    prompt = "以下是普通话客服电话的录音。"
    assert prompt_echo(" 以下是普通话客服电话的录音。", prompt)
    assert filter_segment("以下是普通话客服电话的录音", prompt=prompt) is None
    assert filter_segment("我要投诉", prompt=prompt) == "我要投诉"


def test_traditional_to_simplified() -> None:
    assert to_simplified("我要投訴你們的服務，這個問題還沒有解決") == "我要投诉你们的服务，这个问题还没有解决"
    assert filter_segment("非常抱歉,我們可以為您辦理換貨") == "非常抱歉,我们可以为您办理换货"


def test_normalize_for_match() -> None:
    assert normalize_for_match("您好，請問 有什麼可以幫您？") == "您好请问有什么可以帮您"
    assert normalize_for_match("ＡＢＣ １２３！") == "abc123"
    assert filter_segment("，。！？  ") is None


def test_partial_prompt_echo_is_caught() -> None:
    # real output of Whisper base with this prompt on an 8 kHz synthetic clip
    prompt = "以下是普通话客服电话的录音。"
    assert prompt_echo("您们争认为普通话客服电话的录音", prompt)
    assert not prompt_echo("我要投诉你们的客服", prompt)


def test_latin_only_segment_in_mandarin_is_dropped() -> None:
    # real outputs of Whisper base (language='zh') on noisy 8 kHz synthetic Mandarin
    assert filter_segment("Made the order here, here in the IPN") is None
    assert filter_segment(" Baby Youver") is None
    assert filter_segment("OK") == "OK"
    assert filter_segment("我的订单号是A123") == "我的订单号是A123"
    assert filter_segment("Made the order here", language="en") == "Made the order here"
    assert filter_segment("我想 to you need your one-time, one-time, one-time, one-time") is None
    assert filter_segment("我的iPhone 12 Pro Max屏幕坏了") == "我的iPhone 12 Pro Max屏幕坏了"


def test_loop_with_trailing_separator_is_collapsed() -> None:
    assert collapse_repetitions("我想 one-time, one-time, one-time, one-time") == "我想 one-time, one-time"
    assert collapse_repetitions("谢谢，谢谢，谢谢，谢谢，谢谢") == "谢谢，谢谢"


def test_bell_hallucination_is_dropped() -> None:
    assert filter_segment("請按旁邊的小鈴鐺,我馬上幫您處理") is None


def test_repeated_segments_are_capped() -> None:
    texts = ["我全力探天调太阳灯快逼", "喂!", "喂!", "喂!", "喂!", "喂!", "好的"]
    assert collapse_repeated_segments(texts) == [True, True, True, False, False, False, True]
