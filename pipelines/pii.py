"""Redaction of personal data in Mandarin call transcripts and log lines.

Found and masked (each kept out of stores and logs; keyword matching still runs on the original
text in memory, before redaction):

* mainland mobile numbers ``1[3-9]\\d{9}``, also with separators (``138 1234 5678``, ``138-1234-5678``)
  and a ``+86`` / ``0086`` / ``86`` prefix                                  → ``[手机号]``
* landlines ``0\\d{2,3}-?\\d{7,8}`` (also ``(010) 1234 5678``)              → ``[座机]``
* 18-character resident ID numbers whose ISO 7064 check character (0-9/X) is right → ``[身份证]``
* bank card numbers of 16-19 digits (optionally in groups) that pass the Luhn check → ``[银行卡]``
* e-mail addresses                                                          → ``[邮箱]``

Digits are matched in a normalised view of the text where full-width digits (``１３８``) and spoken
Chinese digits (``幺三八``, ``一三八``, ``零``/``〇``, ``两``) count as ASCII digits, one character for one
character, so ``一三八一二三四五六七八`` is masked too.  The functions are pure and cheap (a few regex
passes), so they run on every transcript snippet and every log line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

TAGS = {"mobile": "[手机号]", "landline": "[座机]", "id_card": "[身份证]", "bank_card": "[银行卡]",
        "email": "[邮箱]"}

_DIGIT_MAP = {**{chr(0xFF10 + i): str(i) for i in range(10)},
              **dict(zip("零〇一二三四五六七八九幺两", "0012345678912"))}
_TRANS = str.maketrans(_DIGIT_MAP)
_SEP = r"[ \-\u00a0\u3000\uff0d]"  # space, hyphen, nbsp, ideographic space, full-width hyphen

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
_ID18 = re.compile(r"(?<![0-9])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[0-9Xx](?![0-9])")
_CARD = re.compile(rf"(?<![0-9])\d(?:{_SEP}?\d){{15,18}}(?![0-9])")
_MOBILE = re.compile(rf"(?<![0-9])(?:(?:\+|00)?86{_SEP}?)?1[3-9]\d(?:{_SEP}?\d){{8}}(?![0-9])")
_LANDLINE = re.compile(rf"(?<![0-9])(?:\(0\d{{2,3}}\)|0\d{{2,3}}){_SEP}?\d{{3,4}}{_SEP}?\d{{4}}(?![0-9])")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int
    end: int


def id_card_valid(s: str) -> bool:
    """ISO 7064 MOD 11-2 check character of an 18-character resident ID number."""
    if len(s) != 18 or not s[:17].isdigit():
        return False
    total = sum(int(c) * w for c, w in zip(s[:17], _ID_WEIGHTS))
    return _ID_CHECK[total % 11] == s[17].upper()


def luhn_valid(digits: str) -> bool:
    if not digits.isdigit():
        return False
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _digits(s: str) -> str:
    return "".join(c for c in s if c.isdigit() or c in "Xx")


def find_pii(text: str) -> list[Finding]:
    """Non-overlapping personal-data spans of ``text`` (character offsets into the original)."""
    if not text:
        return []
    norm = text.translate(_TRANS)  # same length: one character for one character
    found: list[Finding] = []
    taken = [False] * len(text)

    def claim(kind: str, m: re.Match[str]) -> None:
        a, b = m.span()
        if any(taken[a:b]):
            return
        for i in range(a, b):
            taken[i] = True
        found.append(Finding(kind, a, b))

    for m in _EMAIL.finditer(text):
        claim("email", m)
    for m in _ID18.finditer(norm):
        if id_card_valid(m.group(0)):
            claim("id_card", m)
    for m in _CARD.finditer(norm):
        d = _digits(m.group(0))
        if 16 <= len(d) <= 19 and luhn_valid(d):
            claim("bank_card", m)
    for m in _MOBILE.finditer(norm):
        claim("mobile", m)
    for m in _LANDLINE.finditer(norm):
        d = _digits(m.group(0))
        if 10 <= len(d) <= 12:
            claim("landline", m)
    return sorted(found, key=lambda f: f.start)


def redact(text: str) -> str:
    """``text`` with every personal-data span replaced by its tag (e.g. ``[手机号]``)."""
    if not text:
        return text
    out, last = [], 0
    for f in find_pii(text):
        out.append(text[last:f.start])
        out.append(TAGS[f.kind])
        last = f.end
    if last == 0:
        return text
    out.append(text[last:])
    return "".join(out)


def redact_obj(obj: Any) -> Any:
    """Redact every string inside a JSON-like structure (dict keys are kept)."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_obj(v) for v in obj]
    return obj


def redact_call_state(state: dict[str, Any]) -> dict[str, Any]:
    """Redact the text the escalation tracker keeps between turns (normalised utterances used to spot
    repetition) so a stored call state holds no personal data.  Mutates and returns ``state``."""
    try:
        turns = state["fusion"]["analyzer"]["tracker"]["turns"]
    except (KeyError, TypeError):
        return state
    for turn in turns:
        if isinstance(turn, dict) and isinstance(turn.get("norm"), str):
            turn["norm"] = redact(turn["norm"])
    return state
