"""Redaction of personal data in Mandarin call transcripts, call metadata and log lines.

Found and masked (each kept out of stores and logs; keyword matching still runs on the original
text in memory, before redaction):

* mainland mobile numbers ``1[3-9]\\d{9}``, with any separators between the digits (``138 1234 5678``,
  ``138-1234-5678``, ``137.1234.5678``, ``1 3 6 1 2 3 4 5 6 7 8``) and a ``+86`` / ``0086`` / ``86``
  prefix                                                                    → ``[手机号]``
* landlines ``0\\d{2,3}-?\\d{7,8}`` (also ``(010) 1234 5678``)              → ``[座机]``
* resident ID numbers: 18 characters whose ISO 7064 check character (0-9/X) is right, and the
  15-digit first-generation numbers (area code + a valid YYMMDD birth date + 3 digits), also written
  in groups (``110105 19491231 002X``)                                        → ``[身份证]``
* bank card numbers of 16-19 digits that pass the Luhn check, and any 16-19 digits written in groups
  of four (``6222 0212 3456 7890``: read out or typed by a person, where a misheard digit breaks Luhn)
                                                                            → ``[银行卡]``
* e-mail addresses                                                          → ``[邮箱]``

Digits are matched in a normalised view of the text where full-width digits (``１３８``) and spoken
Chinese digits (``幺三八``, ``一三八``, ``零``/``〇``, ``两``) count as ASCII digits, one character for one
character, so ``一三八一二三四五六七八`` is masked too.  The functions are pure and cheap (a few regex
passes), so they run on every transcript snippet and every log line.

Identifiers a client chooses (call ids, utterance ids) may be personal too (a phone number used as a call
id): :func:`id_digest` gives the short keyed digest that logs show instead.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

TAGS = {"mobile": "[手机号]", "landline": "[座机]", "id_card": "[身份证]", "bank_card": "[银行卡]",
        "email": "[邮箱]"}

_DIGIT_MAP = {**{chr(0xFF10 + i): str(i) for i in range(10)},
              **dict(zip("零〇一二三四五六七八九幺两", "0012345678912"))}
_TRANS = str.maketrans(_DIGIT_MAP)
_SEP = r"[ \-.\u00a0\u3000\uff0d\uff0e_/]"  # space, hyphen, dot, nbsp, ideographic space, full-width -/., _ /
_GAP = rf"{_SEP}{{0,3}}"  # between two digits of one number: nothing, or up to three separators (" - ")


def _run(n: int, last: str = r"\d") -> str:
    """``n`` digits (the last one ``last``) with optional separators between them."""
    return rf"\d(?:{_GAP}\d){{{n - 2}}}{_GAP}{last}"


_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
_ID18 = re.compile(rf"(?<![0-9]){_run(18, '[0-9Xx]')}(?![0-9])")
_ID18_SHAPE = re.compile(r"[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[0-9Xx]")
_ID15 = re.compile(rf"(?<![0-9]){_run(15)}(?![0-9Xx])")
_ID15_SHAPE = re.compile(r"[1-9]\d{5}\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}")
_CARD = re.compile(rf"(?<![0-9])\d(?:{_GAP}\d){{15,18}}(?![0-9])")
_CARD_GROUPED = re.compile(rf"(?<![0-9])\d{{4}}(?:{_SEP}{{1,2}}\d{{4}}){{3}}(?:{_SEP}{{1,2}}\d{{1,3}})?(?![0-9])")
_MOBILE = re.compile(rf"(?<![0-9])(?:(?:\+|00)?86{_GAP})?1{_GAP}[3-9](?:{_GAP}\d){{9}}(?![0-9])")
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
        d = _digits(m.group(0))
        if _ID18_SHAPE.fullmatch(d) and id_card_valid(d):
            claim("id_card", m)
    for m in _ID15.finditer(norm):
        if _ID15_SHAPE.fullmatch(_digits(m.group(0))):
            claim("id_card", m)
    for m in _CARD_GROUPED.finditer(norm):
        claim("bank_card", m)
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


def id_digest(value: str, key: str = "") -> str:
    """A short stable digest of a client-chosen identifier (``blake2b``, 16 hex digits), for logs and store
    keys.  ``key`` (a secret of the deployment) keeps a phone number used as an id from being found again
    by hashing every phone number."""
    h = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8, key=key.encode("utf-8")[:64])
    return h.hexdigest()


def redact_meta(meta: dict[str, Any], keep: frozenset[str] | set[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Call metadata with every value masked (see :func:`mask_value`), except the fields named in ``keep``
    (e.g. ``queue``, ``skill``: settings ``pii_keep_meta_fields``), whose values are only redacted."""
    return {k: redact_obj(v) if k in keep else mask_value(v) for k, v in meta.items()}


def mask_value(v: Any) -> Any:
    """A metadata value with its content hidden: strings become ``***`` plus their last two characters when
    longer than 6 (``***78``: enough to tell two callers apart), numbers become ``***`` too, nested lists and
    objects are masked value by value (keys kept); booleans and null stay (they name no one)."""
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, dict):
        return {k: mask_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [mask_value(x) for x in v]
    text = str(v)
    return "***" + text[-2:] if len(text) > 6 else "***"


def redact_utterances(utterances: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Analysed utterances (``text`` plus keyword ``keywords`` with character offsets) with personal data
    redacted; where a text changed, its hits lose their offsets (they no longer point into it) and keep the
    matched words, which a reader finds again by search."""
    out = []
    for u in utterances:
        r = redact_obj(u)
        if isinstance(u.get("text"), str) and r.get("text") != u["text"]:
            r["keywords"] = [{k: v for k, v in h.items() if k not in ("start", "end")} if isinstance(h, dict) else h
                             for h in r.get("keywords") or []]
        out.append(r)
    return out


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
