"""Hallucination filters for Whisper output on Mandarin call audio.

Whisper invents text on silence, music and noise, and sometimes loops.  The strings
below are the ones it is known to produce for Chinese (they come from subtitle
credits in its training data).  Independent checks, each a pure function:

* :func:`known_hallucination` – the segment is (or is dominated by) a known phrase;
* :func:`collapse_repetitions` / :func:`is_repetition_loop` – 谢谢谢谢谢谢…, 投诉投诉投诉投诉…;
* :func:`decode_stats_reason` – decoder statistics: very low ``avg_logprob``, high
  ``no_speech_prob``, ``compression_ratio`` > 2.4 (gzip-compressible = repetitive);
* :func:`prompt_echo` – the segment parrots the decoder's initial prompt;
* :func:`wrong_script` – a Mandarin segment without a single Han character ('Made the order here');
* :func:`collapse_repeated_segments` – the same text emitted as many consecutive segments.

:func:`filter_segment` combines them and returns the cleaned text or ``None`` (drop).
"""
from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from opencc import OpenCC

logger = logging.getLogger("nuqi.asr.filters")


@lru_cache(maxsize=1)
def _t2s() -> OpenCC:
    return OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Traditional → Simplified Chinese (OpenCC ``t2s``); other characters unchanged."""
    return _t2s().convert(text) if text else text


def normalize_for_match(text: str) -> str:
    """Simplified, NFKC, lower-case, without punctuation, symbols or whitespace.

    Used for phrase matching here and for character error rate in the benchmark.
    """
    text = unicodedata.normalize("NFKC", to_simplified(text)).lower()
    return "".join(ch for ch in text if unicodedata.category(ch)[0] in "LN")


def edit_distance(ref: str, hyp: str) -> int:
    """Levenshtein distance between two strings (characters)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def character_error_rate(ref: str, hyp: str) -> float:
    """CER of ``hyp`` against ``ref`` after :func:`normalize_for_match` of both."""
    ref, hyp = normalize_for_match(ref), normalize_for_match(hyp)
    return edit_distance(ref, hyp) / max(len(ref), 1)


# --------------------------------------------------------------------------- known phrases
# Matched anywhere in a segment: subtitle/channel credits that never occur in a call.
SIGNATURE_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p)
    for p in (
        r"请不吝点赞",
        r"订阅转发",
        r"打赏支持",
        r"明镜与点点",
        r"点点栏目",
        r"明镜需要您的支持",
        r"字幕由.{0,30}提供",
        r"由.{0,20}社区提供的字幕",
        r"amara",
        r"字幕志愿者",
        r"中文字幕.{0,10}(?:志愿者|提供|校对|翻译)",
        r"字幕组",
        r"优优独播剧场",
        r"yoyotelevision",
        r"欢迎订阅",
        r"订阅我的频道",
        r"订阅频道",
        r"点赞订阅",
        r"关注我的频道",
        r"小铃铛",  # "请按旁边的小铃铛" (YouTube subscribe bell), seen on 8 kHz synthetic speech
        r"ming ?pao",
    )
)

# Dropped only when they make up (almost) the whole segment: these words can be real
# speech inside a longer sentence, but alone they are Whisper's favourite silence fillers.
WHOLE_SEGMENT_PHRASES: tuple[str, ...] = (
    "谢谢观看",
    "感谢观看",
    "谢谢收看",
    "感谢收看",
    "谢谢大家观看",
    "谢谢大家收看",
    "感谢您的观看",
    "多谢您的观看",
    "谢谢您的观看",
    "下期再见",
    "我们下期再见",
    "下次再见",
    "本期视频就到这里",
    "请订阅",
    "字幕",
    "中文字幕",
    "词曲",
    "作词",
    "作曲",
    "编曲",
)
_WHOLE_SEGMENT_SLACK = 2  # characters of other text tolerated around a whole-segment phrase


def known_hallucination(text: str) -> str | None:
    """Name of the matched known hallucination, or ``None`` if the text is clean."""
    norm = normalize_for_match(text)
    if not norm:
        return None
    for pattern in SIGNATURE_PATTERNS:
        if pattern.search(norm):
            return f"signature:{pattern.pattern}"
    for phrase in WHOLE_SEGMENT_PHRASES:
        if phrase in norm and len(norm) - len(phrase) <= _WHOLE_SEGMENT_SLACK:
            return f"phrase:{phrase}"
    return None


# --------------------------------------------------------------------------- repetition loops
MAX_UNIT = 12  # longest repeated unit (characters) searched for


@dataclass(frozen=True)
class Repetition:
    start: int  # index of the run in the string
    unit: str
    count: int  # consecutive repeats of unit (the last one may lack the unit's trailing separator)
    span: int  # characters covered by the run
    tail: str = ""  # the last repeat when it is the unit without its trailing separator


_SEPARATORS = " ,，.。、;；!！?？-"


def _runs(text: str, max_unit: int = MAX_UNIT) -> list[Repetition]:
    """Maximal consecutive repeats (count >= 2) of units up to ``max_unit`` chars, greedy left to right.

    'one-time, one-time, one-time, one-time' counts 4: the last repeat may drop the unit's
    trailing separator.
    """
    runs: list[Repetition] = []
    i, n = 0, len(text)
    while i < n:
        best: Repetition | None = None
        for size in range(1, min(max_unit, (n - i) // 2) + 1):
            unit = text[i : i + size]
            count = 1
            while text.startswith(unit, i + count * size):
                count += 1
            span, tail = count * size, ""
            stripped = unit.rstrip(_SEPARATORS)
            if stripped and stripped != unit and text.startswith(stripped, i + span):
                count, span, tail = count + 1, span + len(stripped), stripped
            if count >= 2 and (best is None or span > best.span):
                best = Repetition(i, unit, count, span, tail)
        if best is None:
            i += 1
        else:
            runs.append(best)
            i += best.span
    return runs


def _is_loop(rep: Repetition) -> bool:
    """A run too long to be natural speech (对对对对 and 喂喂喂 are natural; 谢谢谢谢谢谢 is not)."""
    if len(rep.unit) == 1:
        return rep.count >= 6
    return rep.count >= 4


def collapse_repetitions(text: str, keep: int = 2) -> str:
    """Shorten every looping run to ``keep`` repeats of its unit; natural repeats are kept."""
    runs = [r for r in _runs(text) if _is_loop(r)]
    if not runs:
        return text
    out, pos = [], 0
    for r in runs:
        out.append(text[pos : r.start])
        out.append(r.unit * (keep - 1) + (r.tail or r.unit))
        pos = r.start + r.span
    out.append(text[pos:])
    return "".join(out)


def is_repetition_loop(text: str, min_coverage: float = 0.8) -> bool:
    """True when looping runs cover at least ``min_coverage`` of the (normalised) text."""
    norm = normalize_for_match(text)
    if not norm:
        return False
    looped = sum(r.span for r in _runs(norm) if _is_loop(r))
    return looped / len(norm) >= min_coverage


# --------------------------------------------------------------------------- decoder stats
@dataclass(frozen=True)
class FilterConfig:
    min_avg_logprob: float = -1.5  # below: the decoder was guessing
    max_no_speech_prob: float = 0.9  # above (with avg_logprob < no_speech_logprob): not speech
    no_speech_logprob: float = -0.7
    max_compression_ratio: float = 2.4  # Whisper's own threshold for repetitive output
    loop_coverage: float = 0.8  # drop a segment that is (almost) all loop; shorter loops are collapsed
    simplify: bool = True  # OpenCC Traditional -> Simplified (Whisper base often writes Traditional)
    drop_hallucinations: bool = True  # the checks above; False keeps every decoded segment (benchmark only)


DEFAULT_FILTER = FilterConfig()


def decode_stats_reason(avg_logprob: float, no_speech_prob: float, compression_ratio: float,
                        config: FilterConfig = DEFAULT_FILTER) -> str | None:
    """Why the decoder statistics reject a segment, or ``None`` if they look like speech."""
    if compression_ratio > config.max_compression_ratio:
        return f"compression_ratio {compression_ratio:.2f} > {config.max_compression_ratio}"
    if avg_logprob < config.min_avg_logprob:
        return f"avg_logprob {avg_logprob:.2f} < {config.min_avg_logprob}"
    if no_speech_prob > config.max_no_speech_prob and avg_logprob < config.no_speech_logprob:
        return f"no_speech_prob {no_speech_prob:.2f} > {config.max_no_speech_prob}"
    return None


def prompt_echo(text: str, prompt: str | None, min_overlap: int = 6) -> bool:
    """True when the segment repeats (part of) the decoder's initial prompt, a known Whisper failure.

    The segment is an echo when it lies inside the prompt, or shares a run of at least
    ``min_overlap`` characters with it (Whisper often splices a prompt fragment into junk).
    """
    if not prompt:
        return False
    norm, norm_prompt = normalize_for_match(text), normalize_for_match(prompt)
    if not norm or not norm_prompt:
        return False
    if norm in norm_prompt:
        return True
    k = min(min_overlap, len(norm_prompt))
    return any(norm_prompt[i : i + k] in norm for i in range(len(norm_prompt) - k + 1))


_HAN_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_RE = re.compile(r"[A-Za-z]")


def wrong_script(text: str, language: str | None, min_latin: int = 4, max_latin_per_han: float = 3.0) -> bool:
    """For Mandarin: Latin letters where Han characters should be.

    True when a ``zh`` segment has no Han character but at least ``min_latin`` Latin letters
    ('Made the order here'), or is mostly English ('我想 to you need your one-time, …': more than
    ``max_latin_per_han`` letters per Han character and at least 2 * ``min_latin`` letters).
    Short Latin tokens (OK, VIP, A123, 'iPhone 12 Pro Max' in a Chinese sentence) are kept.
    """
    if language != "zh":
        return False
    han, latin = len(_HAN_RE.findall(text)), len(_LATIN_RE.findall(text))
    if han == 0:
        return latin >= min_latin
    return latin >= 2 * min_latin and latin > max_latin_per_han * han


def filter_segment(text: str, avg_logprob: float = 0.0, no_speech_prob: float = 0.0,
                   compression_ratio: float = 1.0, config: FilterConfig = DEFAULT_FILTER,
                   prompt: str | None = None, language: str | None = "zh") -> str | None:
    """Cleaned Simplified text of one decoded segment, or ``None`` when it should be dropped.

    ``prompt``: the ``initial_prompt`` given to the decoder; a segment echoing it is dropped.
    ``language``: the decoding language; for ``zh`` a segment without Han characters is dropped.
    """
    text = (to_simplified(text) if config.simplify else text).strip()
    if not normalize_for_match(text):
        return None
    if not config.drop_hallucinations:
        return text
    reason = (decode_stats_reason(avg_logprob, no_speech_prob, compression_ratio, config)
              or known_hallucination(text))
    if reason is None and prompt_echo(text, prompt):
        reason = "echo of the initial prompt"
    if reason is None and wrong_script(text, language):
        reason = f"no Han characters in a {language} segment"
    if reason is None and is_repetition_loop(text, config.loop_coverage):
        reason = "repetition loop"
    if reason is not None:
        logger.debug("dropped ASR segment %r: %s", text, reason)
        return None
    return collapse_repetitions(text)


def collapse_repeated_segments(texts: list[str], keep: int = 2) -> list[bool]:
    """Keep-mask over consecutive segment texts: at most ``keep`` identical ones in a row.

    Whisper sometimes emits the same short segment many times ('喂!' ×5 on one window).
    """
    mask, run, prev = [], 0, None
    for text in texts:
        norm = normalize_for_match(text)
        run = run + 1 if norm == prev else 1
        prev = norm
        mask.append(run <= keep)
    return mask
