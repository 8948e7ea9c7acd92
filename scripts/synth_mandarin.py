"""Synthetic Mandarin speech with espeak-ng (dev tool: sample recordings and test corpora).

Library::

    from synth_mandarin import synthesize, syllable_count, make_corpus
    audio = synthesize("我都等了三天了", rate_wpm=170, pitch=50, amplitude=100)

CLI::

    .venv/bin/python scripts/synth_mandarin.py say "您好，请问有什么可以帮您？" -o /tmp/x.wav
    .venv/bin/python scripts/synth_mandarin.py corpus /tmp/corpus --n 40 --seed 0
    .venv/bin/python scripts/synth_mandarin.py count "订单A123已经发货了"

How Mandarin is fed to espeak-ng
--------------------------------
The Debian espeak-ng 1.51 ``cmn`` voice does *not* pronounce Chinese characters
properly: ``espeak-ng -v cmn -x "我都等了三天了"`` shows most characters read as
English letter names of their pinyin (``(en)daU44w011n`` for 都 = "d-o-u one").  So
text is converted with ``pypinyin`` to numbered pinyin (``wo3 dou1 deng3 le5 ...``,
with pypinyin's tone sandhi for 3-3, 不 and 一) and spoken by the
``cmn-latn-pinyin`` voice, which renders every syllable with the right initial,
final and tone (``w'o21 t'ou55 t'@21N l@44 s'a55n``).  Digits are read one by one
(phone/order-number style, 1 = yao1), Latin tokens of up to four letters (or all
capitals) are spelled with one Mandarin-style syllable per letter; longer Latin words
are passed through unchanged (espeak reads them as pinyin-ish; avoid them).

``syllable_count`` mirrors exactly this reading, so it is the ground truth for
speech-rate evaluation of audio made here.
"""
from __future__ import annotations

import argparse
import csv
import io
import logging
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

log = logging.getLogger("nuqi.scripts.synth_mandarin")

ESPEAK = "espeak-ng"
PINYIN_VOICE = "cmn-latn-pinyin"

_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN_RE = re.compile(rf"[{_CJK}]|[0-9]|[A-Za-z]+|[，。！？；：、,.!?;:…]+")
_DIGIT_PINYIN = {
    "0": "ling2", "1": "yao1", "2": "er4", "3": "san1", "4": "si4",
    "5": "wu3", "6": "liu4", "7": "qi1", "8": "ba1", "9": "jiu3",
}
# one Mandarin-style syllable per spelled Latin letter (how letters are commonly read aloud)
_LETTER_PINYIN = {
    "a": "ei1", "b": "bi4", "c": "xi1", "d": "di4", "e": "yi4", "f": "fu1", "g": "ji4",
    "h": "qi1", "i": "ai4", "j": "jie4", "k": "kai4", "l": "lou1", "m": "mu1", "n": "en1",
    "o": "ou1", "p": "pi4", "q": "kou4", "r": "a4", "s": "si1", "t": "ti4", "u": "you1",
    "v": "wei1", "w": "wa1", "x": "xi1", "y": "wai4", "z": "zei4",
}
_PUNCT_MAP = str.maketrans({"，": ",", "、": ",", "；": ";", "：": ",", "。": ".", "！": "!",
                            "？": "?", "…": "."})


class EspeakNotAvailableError(RuntimeError):
    """espeak-ng is not installed (``apt-get install -y espeak-ng``)."""


def espeak_available() -> bool:
    return shutil.which(ESPEAK) is not None


def _spelled(word: str) -> bool:
    return len(word) <= 4 or word.isupper()


def _english_syllables(word: str) -> int:
    w = word.lower()
    groups = re.findall(r"[aeiouy]+", w)
    n = len(groups)
    if w.endswith("e") and n > 1 and not w.endswith(("le", "ee")):
        n -= 1
    return max(1, n)


def syllable_count(text: str) -> int:
    """Spoken syllables in ``text`` as ``synthesize`` reads it.

    One per Chinese character, one per digit (read digit by digit), one per letter of
    a spelled Latin token (<= 4 letters or all capitals, e.g. ``APP``, ``A``), a vowel-group
    estimate for longer Latin words; punctuation and whitespace count zero.
    """
    n = 0
    for tok in _TOKEN_RE.findall(text):
        if re.fullmatch(rf"[{_CJK}]", tok) or tok.isdigit():
            n += 1
        elif tok.isascii() and tok.isalpha():
            n += len(tok) if _spelled(tok) else _english_syllables(tok)
    return n


def to_pinyin(text: str) -> str:
    """Numbered-pinyin string for espeak's ``cmn-latn-pinyin`` voice (punctuation kept)."""
    from pypinyin import Style, lazy_pinyin

    out: list[str] = []
    # split into runs so pypinyin sees whole Chinese phrases (needed for tone sandhi/polyphones)
    for run in re.findall(rf"[{_CJK}]+|[0-9]|[A-Za-z]+|[^\s{_CJK}0-9A-Za-z]+", text):
        if re.fullmatch(rf"[{_CJK}]+", run):
            out.extend(lazy_pinyin(run, style=Style.TONE3, neutral_tone_with_five=True,
                                   tone_sandhi=True))
        elif run.isdigit():
            out.append(_DIGIT_PINYIN[run])
        elif run.isascii() and run.isalpha():
            if _spelled(run):
                out.extend(_LETTER_PINYIN[c] for c in run.lower())
            else:
                out.append(run.lower())
        else:
            p = run.translate(_PUNCT_MAP).strip()
            if p and out:
                out[-1] = out[-1] + p[0]
    return " ".join(out)


def _espeak_wav(args: list[str], text: str) -> tuple[np.ndarray, int]:
    if not espeak_available():
        raise EspeakNotAvailableError("espeak-ng not found on PATH; apt-get install -y espeak-ng")
    proc = subprocess.run([ESPEAK, *args, "--stdout"], input=text.encode("utf-8"),
                          capture_output=True, check=False)
    if proc.returncode != 0 or len(proc.stdout) < 64:
        raise RuntimeError(f"espeak-ng failed (rc={proc.returncode}): "
                           f"{proc.stderr.decode('utf-8', 'replace')[:300]}")
    data = bytearray(proc.stdout)
    # espeak writes to a pipe, so the RIFF/data sizes are 0x7fffffff placeholders: fix them
    if data[:4] == b"RIFF" and data[36:40] == b"data":
        data[4:8] = (len(data) - 8).to_bytes(4, "little")
        data[40:44] = (len(data) - 44).to_bytes(4, "little")
    audio, sr = sf.read(io.BytesIO(bytes(data)), dtype="float32", always_2d=False)
    return np.asarray(audio, dtype=np.float32), int(sr)


def synthesize(text: str, *, rate_wpm: int, pitch: int, amplitude: int,
               sample_rate: int = 16000, voice: str = "cmn", input_mode: str = "pinyin",
               word_gap: int = 0) -> np.ndarray:
    """Speak Mandarin ``text``; return float32 mono audio at ``sample_rate``.

    rate_wpm: espeak words per minute (each pinyin syllable is one espeak "word";
        ~165 is a normal conversational rate, about 4.5 syllables/s).
    pitch: espeak base pitch 0-99 (50 = voice default).
    amplitude: loudness 0-200, 100 = espeak's default level.  Applied as a linear gain
        ``amplitude/100`` on espeak's output at ``-a 100`` (espeak itself clips above ~120),
        so values > 100 may exceed +-1.0: scale before writing integer PCM.
    voice: ``cmn`` optionally with an espeak variant, e.g. ``cmn+f3`` or ``cmn+m3``.
    input_mode: ``pinyin`` (default, see module doc) or ``hanzi`` (characters straight to
        espeak's ``cmn`` voice; poor with Debian's espeak-ng data, kept for comparison).
    """
    if not 0 <= pitch <= 99:
        raise ValueError(f"pitch must be 0-99, got {pitch}")
    if not 0 <= amplitude <= 200:
        raise ValueError(f"amplitude must be 0-200, got {amplitude}")
    if not 80 <= rate_wpm <= 450:
        raise ValueError(f"rate_wpm must be 80-450, got {rate_wpm}")
    if syllable_count(text) == 0:
        raise ValueError(f"nothing to speak in {text!r}")
    base, _, variant = voice.partition("+")
    if input_mode == "pinyin":
        spoken = to_pinyin(text)
        if base == "cmn":
            base = PINYIN_VOICE
    elif input_mode == "hanzi":
        spoken = text
    else:
        raise ValueError(f"input_mode must be 'pinyin' or 'hanzi', got {input_mode!r}")
    espeak_voice = f"{base}+{variant}" if variant else base
    args = ["-v", espeak_voice, "-s", str(rate_wpm), "-p", str(pitch), "-a", "100",
            "-g", str(word_gap)]
    audio, sr = _espeak_wav(args, spoken)
    audio = audio * np.float32(amplitude / 100.0)
    if sr != sample_rate:
        audio = soxr.resample(audio, sr, sample_rate, quality="HQ").astype(np.float32)
    log.debug("synthesized %d samples at %d Hz for %r", audio.size, sample_rate, text)
    return audio


def trim_silence(audio: np.ndarray, sample_rate: int, threshold_db: float = -45.0,
                 pad_s: float = 0.02) -> np.ndarray:
    """Cut leading/trailing silence (20 ms frames below ``threshold_db`` dBFS RMS)."""
    frame = max(1, int(0.02 * sample_rate))
    n = audio.size // frame
    if n == 0:
        return audio
    rms = np.sqrt(np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    active = np.flatnonzero(20 * np.log10(rms) > threshold_db)
    if active.size == 0:
        return audio[:0]
    pad = int(pad_s * sample_rate)
    return audio[max(0, active[0] * frame - pad): min(audio.size, (active[-1] + 1) * frame + pad)]


# --------------------------------------------------------------------------- corpus

CALM_SENTENCES = [
    "您好，请问有什么可以帮您？",
    "我想查询一下我的订单什么时候能到。",
    "请您提供一下订单号，我帮您查一下。",
    "好的，请稍等，我这边正在为您查询。",
    "您的包裹已经到了本地配送站，今天下午会送到。",
    "我想修改一下收货地址，可以吗？",
    "可以的，请问新的地址是哪里？",
    "我上个月的话费好像多扣了二十块钱。",
    "我帮您核对一下账单明细，请稍等。",
    "这笔费用是流量包的月费，您是在三号开通的。",
    "那我想把这个流量包取消掉。",
    "好的，已经为您办理取消，下个月开始生效。",
    "请问还有其他可以帮您的吗？",
    "没有了，谢谢你，再见。",
    "感谢您的来电，祝您生活愉快。",
    "我买的耳机左边没有声音，想换一个。",
    "非常抱歉，我们可以为您办理换货。",
    "快递员会在明天上门取件，请您保持电话畅通。",
    "新的耳机大概三到五天能送到。",
    "我想开一张电子发票，应该怎么操作？",
    "您在订单详情里点申请开票就可以了。",
    "发票抬头写公司名称，税号填一下就行。",
    "请问你们周末上班吗？",
    "我们的客服是全天在线的，周末也可以联系。",
    "我的会员还有多久到期？",
    "您的会员到下个月十五号到期。",
    "好的，我知道了，谢谢。",
    "请问您还需要其他帮助吗？",
    "我想咨询一下宽带安装的事情。",
    "师傅明天上午九点到十一点之间上门。",
]

ANGRY_SENTENCES = [
    "我都等了三天了，到底什么时候能到？",
    "说了多少遍了，你们能不能听懂？",
    "你们这什么破服务！",
    "我要投诉，马上给我处理！",
    "再不解决我就打12315！",
    "每次打电话都是让我等，等到什么时候？",
    "你们到底有没有人管啊？",
    "别跟我说抱歉，我要的是解决问题！",
    "我已经打了五次电话了，一点用都没有！",
    "把你们领导叫来，我不想跟你说了！",
    "钱扣了东西没到，你们这是骗人！",
    "我请了三天假在家等快递，谁赔我？",
    "你们的系统怎么老是出问题？",
    "我不要听这些套话！",
    "今天必须给我一个说法！",
    "你们再这样我就去网上曝光！",
    "上次说好的退款到现在都没到账！",
    "耳机才用了两天就坏了，这是什么质量？",
    "我不想再等了，马上给我退钱！",
    "你们就是在浪费我的时间！",
]

AGENT_SENTENCES = [
    "非常抱歉给您带来不便，我马上帮您处理。",
    "先生您先别着急，我理解您的心情。",
    "我现在就给您加急处理，请您放心。",
    "好的，我马上为您登记投诉。",
    "我们会安排专人在两小时内给您回电。",
    "这个问题我已经记录下来了，会尽快给您答复。",
    "请您再给我一点时间，我帮您联系配送站。",
    "退款会在三到五个工作日内原路返回。",
    "给您造成的损失，我们会按规定给予补偿。",
    "您的意见我们一定会反馈给相关部门。",
]

# (label, rate_wpm, pitch, amplitude): espeak settings per speaking style
CORPUS_STYLES = [
    ("calm", 165, 50, 100),
    ("slow", 130, 45, 90),
    ("fast", 220, 62, 130),
    ("angry", 240, 75, 170),
]


@dataclass(frozen=True)
class CorpusItem:
    file: str
    text: str
    syllables: int
    style: str
    rate_wpm: int
    pitch: int
    amplitude: int
    voice: str
    duration_s: float
    speech_s: float
    syllables_per_s: float


def make_corpus(out_dir: str | Path, n: int = 40, sample_rate: int = 16000,
                seed: int = 0) -> list[CorpusItem]:
    """Write ``n`` labelled utterances (WAV, 16-bit mono) + ``manifest.csv`` to ``out_dir``.

    Manifest columns: file,text,syllables,style,rate_wpm,pitch,amplitude,voice,duration_s,
    speech_s (duration after trimming leading/trailing silence),syllables_per_s
    (syllables / speech_s: the ground-truth speech rate).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pool = ([(s, "calm") for s in CALM_SENTENCES] + [(s, "angry") for s in ANGRY_SENTENCES]
            + [(s, "calm") for s in AGENT_SENTENCES])
    voices = ["cmn", "cmn+f3", "cmn+m3", "cmn+f2"]
    items: list[CorpusItem] = []
    order = rng.permutation(len(pool))
    for i in range(n):
        text, mood = pool[int(order[i % len(pool)])]
        # calm texts: calm/slow/fast delivery; angry texts: fast/angry delivery
        allowed = ("fast", "angry") if mood == "angry" else ("calm", "slow", "fast")
        styles = [s for s in CORPUS_STYLES if s[0] in allowed]
        style, wpm, pitch, amp = styles[int(rng.integers(len(styles)))]
        wpm = int(wpm + rng.integers(-10, 11))
        voice = voices[int(rng.integers(len(voices)))]
        audio = synthesize(text, rate_wpm=wpm, pitch=pitch, amplitude=amp,
                           sample_rate=sample_rate, voice=voice)
        speech = trim_silence(audio, sample_rate)
        name = f"utt_{i:04d}.wav"
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        if peak > 0.99:
            audio = audio * (0.99 / peak)
        sf.write(out / name, audio, sample_rate, subtype="PCM_16")
        syl = syllable_count(text)
        speech_s = speech.size / sample_rate
        items.append(CorpusItem(name, text, syl, style, wpm, pitch, amp, voice,
                                round(audio.size / sample_rate, 3), round(speech_s, 3),
                                round(syl / speech_s, 3) if speech_s > 0 else 0.0))
    with open(out / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(list(CorpusItem.__dataclass_fields__))
        for it in items:
            w.writerow([getattr(it, f) for f in CorpusItem.__dataclass_fields__])
    log.info("wrote %d utterances + manifest.csv to %s", len(items), out)
    return items


# --------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    say = sub.add_parser("say", help="synthesize one text to a WAV file")
    say.add_argument("text")
    say.add_argument("-o", "--out", required=True)
    say.add_argument("--rate-wpm", type=int, default=165)
    say.add_argument("--pitch", type=int, default=50)
    say.add_argument("--amplitude", type=int, default=100)
    say.add_argument("--sample-rate", type=int, default=16000)
    say.add_argument("--voice", default="cmn")
    say.add_argument("--input-mode", choices=["pinyin", "hanzi"], default="pinyin")
    cor = sub.add_parser("corpus", help="write a labelled corpus + manifest.csv")
    cor.add_argument("out_dir")
    cor.add_argument("--n", type=int, default=40)
    cor.add_argument("--sample-rate", type=int, default=16000)
    cor.add_argument("--seed", type=int, default=0)
    cnt = sub.add_parser("count", help="print syllable count and the pinyin espeak will speak")
    cnt.add_argument("text")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if a.cmd == "say":
        audio = synthesize(a.text, rate_wpm=a.rate_wpm, pitch=a.pitch, amplitude=a.amplitude,
                           sample_rate=a.sample_rate, voice=a.voice, input_mode=a.input_mode)
        sf.write(a.out, audio, a.sample_rate, subtype="PCM_16")
        print(f"{a.out}: {audio.size / a.sample_rate:.2f} s, {syllable_count(a.text)} syllables")
    elif a.cmd == "corpus":
        items = make_corpus(a.out_dir, a.n, a.sample_rate, a.seed)
        print(f"{len(items)} utterances in {a.out_dir}")
    else:
        print(syllable_count(a.text), to_pinyin(a.text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
