"""Text normalisation: Traditional→Simplified, width folding, whitespace, offset map."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opencc import OpenCC

from pipelines.text.normalize import fold_width, normalize, to_simplified

# real Traditional sentences, several containing OpenCC phrase-table entries (瞭解, 乾隆, 一目瞭然)
TRADITIONAL = [
    ("我要投訴你們", "我要投诉你们"),
    ("你們這個服務態度太差了，叫你們經理出來！", "你们这个服务态度太差了，叫你们经理出来！"),
    ("我已經等了三個禮拜，還沒有收到退款", "我已经等了三个礼拜，还没有收到退款"),
    ("我不瞭解你們的規定", "我不了解你们的规定"),
    ("乾淨的衣服", "干净的衣服"),
    ("乾隆皇帝", "乾隆皇帝"),
    ("這個一目瞭然", "这个一目了然"),
    ("麻煩你了，謝謝", "麻烦你了，谢谢"),
]


@pytest.mark.parametrize("trad, simp", TRADITIONAL)
def test_traditional_to_simplified(trad: str, simp: str) -> None:
    assert to_simplified(trad) == simp
    n = normalize(trad)
    assert n.text == fold_width(simp)  # ，！ are folded to half-width as well
    assert n.index == tuple(range(len(trad)))


def test_fast_path_agrees_with_opencc() -> None:
    cc = OpenCC("t2s")
    samples = [t for t, _ in TRADITIONAL] + [
        "請問你們的客服電話是多少",
        "這是我第三次打電話了，每次都讓我等",
        "我瞭解了，沒問題",
        "頭髮乾了",
        "我要找消協、工信部、銀保監會",
        "已經解決了，辛苦了",
    ]
    for s in samples:
        assert to_simplified(s) == cc.convert(s), s


def test_simplified_text_is_unchanged() -> None:
    s = "你们这个破系统怎么还没好我等了三天了"
    assert to_simplified(s) == s
    assert normalize(s).text == s


def test_width_folding_and_ascii_lowercase() -> None:
    assert fold_width("ＡＢＣ１２３，！　") == "ABC123,! "
    n = normalize("ＳＢ客服，ＯＫ？")
    assert n.text == "sb客服,ok?"
    assert n.index == tuple(range(8))


def test_whitespace_between_cjk_is_dropped_and_other_runs_collapse() -> None:
    n = normalize("  我 要  投\t诉 ，  I   want a  refund \n")
    assert n.text == "我要投诉,i want a refund"
    assert normalize("sb 客服 😡 12315").text == "sb客服😡12315"
    # every kept character maps back to the same character of the original (modulo folding)
    for ch, i in zip(n.text, n.index):
        assert normalize(n.original[i]).text in (ch, "")


def test_zero_width_and_control_characters_are_removed() -> None:
    n = normalize("我\u200b要\x00投\ufeff诉")
    assert n.text == "我要投诉"
    assert n.index == (0, 2, 4, 6)
    assert n.to_original(0, 4) == (0, 7)


def test_offsets_map_back_to_original_span() -> None:
    original = "喂？ 我 要 投訴 你們！"
    n = normalize(original)
    start = n.text.index("投诉")
    s, e = n.to_original(start, start + 2)
    assert original[s:e] == "投訴"
    with pytest.raises(ValueError):
        n.to_original(3, 99)


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "\u200b"])
def test_empty_like_inputs(text: str) -> None:
    n = normalize(text)
    assert n.text == ""
    assert n.index == ()


def test_emoji_and_punctuation_survive() -> None:
    n = normalize("😡😡！！")
    assert n.text == "😡😡!!"
    assert n.index == (0, 1, 2, 3)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("我要投訴你們 　ＡＢab1２\u200b😡，,!\n乾瞭解")), max_size=40))
def test_index_map_invariants(text: str) -> None:
    n = normalize(text)
    assert len(n.index) == len(n.text)
    assert list(n.index) == sorted(set(n.index))  # strictly increasing
    for ch, i in zip(n.text, n.index):
        if ch == " ":
            assert text[i].isspace()
        else:
            assert not text[i].isspace()
