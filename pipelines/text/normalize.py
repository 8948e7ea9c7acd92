"""Text normalisation for matching Chinese call-centre utterances, with an offset map back to the input.

``normalize(text)`` returns a :class:`NormalizedText` whose ``text`` is

1. cleaned: zero-width characters, BOM and control characters are dropped;
2. width-folded: full-width ASCII forms (``ＡＢＣ１２３，！``) become half-width, the ideographic space
   becomes a space;
3. ASCII-lowercased (lexicon matching of ``SB``/``TMD``/``Ok`` is case-insensitive); only ASCII is
   lowercased so that every step keeps exactly one output character per input character;
4. converted Traditional → Simplified Chinese with OpenCC ``t2s`` (``opencc-python-reimplemented``);
   OpenCC's phrase table is used (``瞭解`` → ``了解``) but its mappings are length-preserving; should a
   conversion ever change the length, the text is converted character by character instead;
5. whitespace-normalised: a run of whitespace becomes one space between two letters/digits of a
   space-separated script (``i  want`` → ``i want``) and is dropped everywhere else: between CJK
   characters (ASR output such as ``我 要 投诉``), next to punctuation or emoji, and at both ends.

``NormalizedText.index[i]`` is the position in the ORIGINAL string of normalised character ``i``, so a
span found in the normalised text maps back with :meth:`NormalizedText.to_original`.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

from opencc import OpenCC

logger = logging.getLogger("nuqi.text.normalize")

# characters dropped before matching: C0/C1 controls other than whitespace, zero-width and
# bidi/format characters, soft hyphen, BOM
_DROP = re.compile(
    "[\x00-\x08\x0b\x0e-\x1f\x7f-\x84\x86-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064"
    "\u2066-\u206f\ufeff\ufff9-\ufffb]"
)
_SPACE = re.compile(r"\s")
# full-width ASCII forms → half-width, ideographic space → space
_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
# ... and ASCII upper → lower (Ａ → a as well)
_FOLD = _WIDTH | {code: code + 32 for code in range(ord("A"), ord("Z") + 1)}
_FOLD |= {code + 0xFEE0: code + 32 for code in range(ord("A"), ord("Z") + 1)}


@dataclass(frozen=True)
class NormalizedText:
    """A normalised string plus, for each of its characters, the index of its source character."""

    original: str
    text: str
    index: tuple[int, ...]  # len(index) == len(text); index[i] = position of text[i] in original

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """Map the half-open span ``[start, end)`` of ``text`` to a half-open span of ``original``."""
        if not 0 <= start < end <= len(self.text):
            raise ValueError(f"span [{start}, {end}) is outside the normalised text of length {len(self.text)}")
        return self.index[start], self.index[end - 1] + 1


def fold_width(text: str) -> str:
    """Full-width ASCII forms → half-width, ideographic space → space (length-preserving)."""
    return text.translate(_WIDTH)


def _is_cjk(ch: str) -> bool:
    code = ord(ch)
    return (
        0x4E00 <= code <= 0x9FFF  # CJK unified ideographs
        or 0x3400 <= code <= 0x4DBF  # extension A
        or 0x20000 <= code <= 0x2FA1F  # extensions B.. and compatibility supplement
        or 0xF900 <= code <= 0xFAFF  # compatibility ideographs
        or 0x3000 <= code <= 0x303F  # CJK punctuation (、。「」…)
        or 0xFF00 <= code <= 0xFFEF  # remaining full-width forms
    )


def _is_word_char(ch: str) -> bool:
    """A letter or digit of a space-separated script (Latin, digits, Cyrillic …), not CJK."""
    return ch.isalnum() and not _is_cjk(ch)


class _T2S:
    """OpenCC ``t2s`` with a fast path.

    OpenCC applies its phrase table (TSPhrases) first and then maps the remaining characters one by
    one (TSCharacters).  When no phrase occurs in the text the result is therefore a plain
    per-character mapping, done here with ``str.translate`` from the same OpenCC tables; texts that
    contain a phrase go through ``OpenCC.convert`` itself.  Texts without any convertible character
    are returned unchanged.
    """

    def __init__(self) -> None:
        self._cc = OpenCC("t2s")
        self._cc.convert("")  # loads the tables
        folder = files("opencc") / "dictionary"

        def table(name: str) -> list[tuple[str, str]]:
            rows = []
            for line in (folder / name).read_text(encoding="utf-8").splitlines():
                key, _, value = line.partition("\t")
                if key:
                    rows.append((key, value.split(" ")[0]))
            return rows

        chars = table("TSCharacters.txt")
        phrases = table("TSPhrases.txt")
        self._char_map = {ord(k): v for k, v in chars if len(k) == 1 and len(v) == 1 and k != v}
        # characters of multi-character values would change the length: leave those to OpenCC
        self._odd_chars = frozenset(k for k, v in chars if len(k) == 1 and len(v) != 1)
        self._phrases = {k: v for k, v in phrases}
        lengths: dict[str, set[int]] = {}
        for k in self._phrases:
            lengths.setdefault(k[0], set()).add(len(k))
        self._phrase_starts = {ch: tuple(sorted(ls, reverse=True)) for ch, ls in lengths.items()}
        # A text needs converting only if it holds a character that t2s changes.  A phrase entry
        # can only apply when all its characters are present, so it adds triggers only when none
        # of its characters is already a single-character trigger.
        trigger = {k for k, v in chars if k != v}
        for key, value in phrases:
            if trigger.isdisjoint(key):
                trigger.update(ch for i, ch in enumerate(key) if i >= len(value) or value[i] != ch)
        self._trigger = frozenset(trigger)

    def _has_phrase(self, text: str) -> bool:
        starts, phrases = self._phrase_starts, self._phrases
        for i, ch in enumerate(text):
            for n in starts.get(ch, ()):
                if text[i : i + n] in phrases:
                    return True
        return False

    def convert(self, text: str) -> str:
        if self._trigger.isdisjoint(text):
            return text
        if self._odd_chars.isdisjoint(text) and not self._has_phrase(text):
            return text.translate(self._char_map)
        out = self._cc.convert(text)
        if len(out) == len(text):
            return out
        # never seen with the shipped t2s tables, but offsets must stay exact whatever OpenCC does
        logger.debug("t2s changed the length of %r; converting character by character", text)
        chars = []
        for ch in text:
            conv = self._cc.convert(ch)
            chars.append(conv if len(conv) == 1 else ch)
        return "".join(chars)


@lru_cache(maxsize=1)
def _t2s() -> _T2S:
    return _T2S()


def load() -> None:
    """Load the OpenCC tables now (otherwise they load on the first call that needs them)."""
    _t2s()


def to_simplified(text: str) -> str:
    """Traditional → Simplified Chinese (length-preserving)."""
    return _t2s().convert(text)


def normalize(text: str) -> NormalizedText:
    """Normalise ``text`` for lexicon matching; see the module docstring for the steps."""
    folded = text.translate(_FOLD)  # one character in, one out
    if _DROP.search(folded):
        keep = [i for i, ch in enumerate(folded) if not _DROP.match(ch)]
        folded = "".join(folded[i] for i in keep)
    else:
        keep = range(len(folded))
    simplified = to_simplified(folded)
    if not _SPACE.search(simplified):
        return NormalizedText(original=text, text=simplified, index=tuple(keep))

    out: list[str] = []
    out_index: list[int] = []
    pending_space: int | None = None  # original index of the first char of a pending whitespace run
    for ch, i in zip(simplified, keep):
        if ch.isspace():
            if pending_space is None:
                pending_space = i
            continue
        if pending_space is not None:
            if out and _is_word_char(out[-1]) and _is_word_char(ch):
                out.append(" ")
                out_index.append(pending_space)
            pending_space = None
        out.append(ch)
        out_index.append(i)
    return NormalizedText(original=text, text="".join(out), index=tuple(out_index))
