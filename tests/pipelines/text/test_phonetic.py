"""Sound-alike keyword matching for ASR text (pipelines/text/phonetic.py, KeywordLexicon.match(asr=True))."""
from __future__ import annotations

import pytest

from pipelines.text.lexicon import KeywordLexicon
from pipelines.text.phonetic import PhoneticIndex, spoken_digits_to_ascii, syllable_key


@pytest.fixture(scope="module")
def lex() -> KeywordLexicon:
    return KeywordLexicon.load()


@pytest.mark.parametrize(("text", "expected"), [
    ("再不解决我就打一二三一五", "再不解决我就打12315"),
    ("幺二三幺五", "12315"),
    ("电话一三零六四三六五八四五", "电话13064365845"),
    ("一二", "一二"),  # too short to be a number string
    ("三三两两", "三三两两"),
    ("一五一十", "151十"),
])
def test_spoken_digits(text: str, expected: str) -> None:
    out = spoken_digits_to_ascii(text)
    assert out == expected and len(out) == len(text)


def test_syllable_key_fuzzy() -> None:
    assert syllable_key("zhang") == "zhang"
    assert syllable_key("zhang", fuzzy=True) == syllable_key("zan", fuzzy=True) == "zan"
    assert syllable_key("nv", fuzzy=True) == syllable_key("lü", fuzzy=True)


def test_index_matches_terms_by_reading() -> None:
    idx = PhoneticIndex(["投诉", "领导", "银行", "好"])
    assert len(idx) == 3  # one-character terms are not indexed
    assert (1, 3, "投诉") in idx.find("我头诉")
    assert (0, 2, "银行") in idx.find("银航")  # 行 is hang here, not xing
    assert idx.find("今天天气好") == []


@pytest.mark.parametrize(("asr_text", "term", "negated"), [
    ("我要头诉你们", "我要投诉你们", False),  # 头诉 = tou su
    ("叫你们领到来", "叫你们领导来", False),
    ("我不是要头诉", "要投诉", True),  # negation is still honoured on a sound-alike hit
    ("我不想头诉", "投诉", True),
])
def test_asr_text_matches_by_sound(lex: KeywordLexicon, asr_text: str, term: str, negated: bool) -> None:
    assert lex.match(asr_text).hits == []  # spelled wrong: no hit as plain text
    res = lex.match(asr_text, asr=True)
    hit = next(h for h in res.hits if h.term == term)
    assert hit.phonetic and hit.negated is negated
    assert asr_text[hit.start:hit.end] == hit.text
    assert (res.stage_hint > 0) is (not negated)


def test_spoken_12315_is_the_hotline_and_still_conditional(lex: KeywordLexicon) -> None:
    res = lex.match("再不解决我就打一二三一五", asr=True)
    hit = next(h for h in res.hits if h.term == "12315")
    assert hit.text == "一二三一五" and hit.hypothetical and res.stage_hint == 5


def test_written_terms_win_over_sound_alikes_and_clean_text_is_unchanged(lex: KeywordLexicon) -> None:
    for text in ("我要投诉你们", "再不解决我就打12315", "好的谢谢，辛苦了", "你们这什么破服务"):
        plain, asr = lex.match(text), lex.match(text, asr=True)
        assert [(h.term, h.start, h.end, h.negated) for h in plain.hits] == \
            [(h.term, h.start, h.end, h.negated) for h in asr.hits]
        assert not any(h.phonetic for h in asr.hits)


def test_neutral_speech_stays_quiet(lex: KeywordLexicon) -> None:
    for text in ("你好我想查询一下订单什么时候能到", "结合这个指标看中国目前的情况", "购买汽车并不一定是更好的解决问题的办法",
                 "设定二十九度", "想听歌曲海阔天空"):
        res = lex.match(text, asr=True)
        assert res.stage_hint <= 1, [(h.term, h.text) for h in res.hits]


def test_rare_readings_and_insults_do_not_match_by_sound(lex: KeywordLexicon) -> None:
    # 前儿 can be read jian ren (贱人) and 你每 sounds like 你妹: neutral ASR text must not become an insult
    for text in ("就三天前儿子小勇化名挥刀", "你每次都这样说", "稍新饭店"):
        assert not any(h.phonetic for h in lex.match(text, asr=True).hits), text
