"""Sound-alike matching for recognised (ASR) text: toneless pinyin and spoken digit strings.

A recogniser that mishears a keyword usually writes a homophone: 投诉 → 头诉 (tóu sù / tóu sù), 领导 → 领到,
12315 → 一二三一五 / 幺二三幺五.  Two length-preserving helpers let :class:`pipelines.text.lexicon.KeywordLexicon`
find those (every offset still maps back to the input):

* :func:`spoken_digits_to_ascii` — runs of at least three Chinese digit characters (零〇一二三四五六七八九幺)
  become ASCII digits, one for one (一二三一五 → 12315); shorter runs (一二, 三三两两) are words, not numbers;
* :class:`PhoneticIndex` — lexicon terms by their toneless pinyin (the term's own reading, from pypinyin's
  phrase dictionary); a span of the text matches when each of its characters reads as the term's syllable
  there — in the text's own context reading (pypinyin's phrase-aware ``lazy_pinyin``) or the character's most
  common reading (rare readings such as 前 jian / 儿 ren matched insults in neutral news text, so they are not
  used).  ``fuzzy=True`` also merges the initials and finals that Mandarin speakers and recognisers confuse
  most (zh/z, ch/c, sh/s, n/l, -ng/-n).

Only Han terms of at least two characters are indexed: one syllable alone matches far too much.
"""
from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

SPOKEN_DIGITS = {"零": "0", "〇": "0", "一": "1", "幺": "1", "二": "2", "三": "3", "四": "4", "五": "5",
                 "六": "6", "七": "7", "八": "8", "九": "9"}
MIN_DIGIT_RUN = 3


def spoken_digits_to_ascii(text: str, min_run: int = MIN_DIGIT_RUN) -> str:
    """Runs of >= ``min_run`` Chinese digit characters → ASCII digits (same length, so offsets are kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        j = i
        while j < n and text[j] in SPOKEN_DIGITS:
            j += 1
        if j - i >= min_run:
            out.append("".join(SPOKEN_DIGITS[c] for c in text[i:j]))
        else:
            out.append(text[i:j])
        if j < n:
            out.append(text[j])
        i = j + 1
    return "".join(out)


def _is_han(ch: str) -> bool:
    return "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff"


def syllable_key(syllable: str, fuzzy: bool = False) -> str:
    """A toneless syllable, optionally with the commonly confused sounds merged (zh→z, ch→c, sh→s, n→l, ng→n)."""
    s = syllable.replace("ü", "v")
    if not fuzzy:
        return s
    for hard, soft in (("zh", "z"), ("ch", "c"), ("sh", "s")):
        if s.startswith(hard):
            s = soft + s[len(hard):]
            break
    if s.startswith("n"):
        s = "l" + s[1:]
    if s.endswith("ng"):
        s = s[:-1]
    return s


@lru_cache(maxsize=8192)
def char_readings(ch: str) -> tuple[str, ...]:
    """Every toneless reading pypinyin knows for a Han character, most common first (empty for anything else)."""
    if not _is_han(ch):
        return ()
    from pypinyin import Style, pinyin

    return tuple(dict.fromkeys(r for r in pinyin(ch, style=Style.NORMAL, heteronym=True)[0] if r.isalpha()))


def text_readings(text: str) -> list[tuple[str, ...]]:
    """Per character: its reading in context and its most common reading (empty for non-Han characters)."""
    from pypinyin import Style, lazy_pinyin

    context = lazy_pinyin(text, style=Style.NORMAL, errors=lambda s: [""] * len(s))
    if len(context) != len(text):  # never expected; fall back to the common readings alone
        context = [""] * len(text)
    out = []
    for ch, ctx in zip(text, context, strict=True):
        common = char_readings(ch)[:1]
        out.append(tuple(dict.fromkeys(r for r in (ctx, *common) if r and r.isalpha())) if common else ())
    return out


def term_syllables(term: str) -> tuple[str, ...] | None:
    """The term's own toneless reading (phrase-aware: 银行 → yin hang), or None if it is not all Han."""
    if not term or not all(_is_han(c) for c in term):
        return None
    from pypinyin import Style, lazy_pinyin

    syl = lazy_pinyin(term, style=Style.NORMAL)
    return tuple(syl) if len(syl) == len(term) and all(s.isalpha() for s in syl) else None


class PhoneticIndex:
    """Lexicon terms by pinyin; :meth:`find` returns the spans of a text that sound like a term."""

    def __init__(self, terms: Iterable[str], fuzzy: bool = False, min_chars: int = 2) -> None:
        self.fuzzy = fuzzy
        self._by_first: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        for term in terms:
            if len(term) < min_chars:
                continue
            syl = term_syllables(term)
            if syl is None:
                continue
            key = tuple(syllable_key(s, fuzzy) for s in syl)
            self._by_first.setdefault(key[0], []).append((key, term))
        for entries in self._by_first.values():
            entries.sort(key=lambda e: -len(e[0]))

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_first.values())

    def find(self, text: str) -> list[tuple[int, int, str]]:
        """``(start, end, term)`` for every span of ``text`` whose characters read as a term."""
        if not self._by_first:
            return []
        keys = [frozenset(syllable_key(r, self.fuzzy) for r in rs) for rs in text_readings(text)]
        out: list[tuple[int, int, str]] = []
        n = len(text)
        for i in range(n):
            for first in keys[i]:
                for key, term in self._by_first.get(first, ()):
                    j = i + len(key)
                    if j <= n and all(key[k] in keys[i + k] for k in range(1, len(key))):
                        out.append((i, j, term))
        return out
