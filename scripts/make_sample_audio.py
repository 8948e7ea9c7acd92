"""Generate the repo's synthetic sample recordings into ``sample_audio/`` (deterministic).

    .venv/bin/python scripts/make_sample_audio.py            # (re)write sample_audio/*
    .venv/bin/python scripts/make_sample_audio.py --check    # regenerate in memory, compare bytes (espeak files)
    .venv/bin/python scripts/make_sample_audio.py --no-neural  # without the neural-voice call (no `make tts-venv`)

Needs espeak-ng (Debian 1.51) for generation, and the neural voice's venv (``make tts-venv``, or
``NUQI_TTS_PYTHON``) for ``call_escalating_neural_8k.flac``; the measurement helpers (``measure_segment``,
``median_f0``, ``active_rms_db``) work on any audio and need only numpy/scipy.
Re-running with the same espeak-ng / soxr / scipy versions rewrites byte-identical WAVs
(all randomness comes from a seeded numpy Generator).
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from scipy import signal

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synth_mandarin import syllable_count, synthesize, trim_silence  # noqa: E402

log = logging.getLogger("nuqi.scripts.make_sample_audio")

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "sample_audio"
SEED = 20240618
LEVEL_GAIN = 0.5          # espeak at amplitude 100 is ~-18 dBFS active RMS; x0.5 -> ~-24 dBFS
NOISE_DBFS = -50.0        # faint line noise (RMS, per channel)


@dataclass(frozen=True)
class Style:
    """One speaking style for both voices: espeak settings, and FastSpeech2 variance ratios for the neural voice."""

    name: str
    rate_wpm: int
    pitch: int
    amplitude: int  # espeak: 100 = default level; neural voice: the same linear gain amplitude / 100
    speed: float = 1.0  # neural: phoneme-duration ratio (< 1 = faster)
    f0: float = 1.0  # neural: pitch ratio
    energy: float = 1.0  # neural: energy ratio


# customer voice: espeak female variant f2; agent: male variant m3, lower pitch, steady
CUSTOMER_VOICE = "cmn+f2"
AGENT_VOICE = "cmn+m3"
# the escalating call again, its customer spoken by the neural voice (scripts/tts_neural.py), which Whisper
# recognises: the audio-only sample for live ASR (espeak's voice comes back garbled, see sample_audio/README.md)
NEURAL_VOICE = "neural"
NEURAL_CALL_ID = "call_escalating_neural_8k"
CALM = Style("calm", 170, 50, 100)
IRRITATED = Style("irritated", 205, 64, 135, speed=0.88, f0=1.12, energy=1.25)
ANGRY = Style("angry", 240, 76, 175, speed=0.78, f0=1.25, energy=1.5)
AGENT = Style("agent", 180, 40, 100)
# the neural voice is ~7 dB quieter than espeak at amplitude 100: bring its calm turns to the same level
NEURAL_LEVEL = 1.4
TTS_PYTHON = Path(os.environ.get("NUQI_TTS_PYTHON", REPO / ".tts-venv" / "bin" / "python"))

ESCALATING_TURNS: list[tuple[str, str, Style]] = [
    ("agent", "您好，客服中心，请问有什么可以帮您？", AGENT),
    ("customer", "你好，我上周在网上买了一台洗衣机，显示已经发货了，但是到现在还没收到。", CALM),
    ("agent", "好的，请您提供一下订单号。", AGENT),
    ("customer", "订单号是20240618，收货人姓王，电话尾号3721。", CALM),
    ("agent", "好的王女士，请稍等，我帮您查询一下。", AGENT),
    ("customer", "好的，麻烦你了，我这两天一直在家里等着。", CALM),
    ("agent", "查到了，您的包裹还在配送站，预计明天送到。", AGENT),
    ("customer", "明天？你们前天也是这么说的，我都等了三天了！", IRRITATED),
    ("agent", "非常抱歉，我马上帮您催一下配送站。", AGENT),
    ("customer", "催一下催一下，说了多少遍了！你们这什么破服务！", ANGRY),
    ("agent", "您先别着急，我现在就给您加急处理。", AGENT),
    ("customer", "我不要听这些，我要投诉！再不解决我就打12315！", ANGRY),
    ("agent", "好的，我马上为您登记投诉，两小时内给您回电。", AGENT),
    ("customer", "两个小时？我已经请了三天假了，你们到底有没有人管啊！", ANGRY),
]

CALM_CUSTOMER_VOICE = "cmn+m1"
CALM_AGENT_VOICE = "cmn+f4"
CALM_AGENT = Style("agent", 180, 45, 100)
CALM_TURNS: list[tuple[str, str, Style]] = [
    ("agent", "您好，客服中心，请问有什么可以帮您？", CALM_AGENT),
    ("customer", "你好，我想开一张上个月订单的电子发票，应该怎么操作？", CALM),
    ("agent", "您在订单详情页面点击申请开票，填写抬头和税号就可以了。", CALM_AGENT),
    ("customer", "好的，那发票会发到哪里呢？", CALM),
    ("agent", "电子发票会在三个工作日内发到您的邮箱。", CALM_AGENT),
    ("customer", "明白了，另外我的会员什么时候到期？", CALM),
    ("agent", "您的会员到下个月十五号到期，到期前会有短信提醒。", CALM_AGENT),
    ("customer", "好的，谢谢你啊，没有其他问题了，再见。", CALM),
    ("agent", "感谢您的来电，祝您生活愉快，再见。", CALM_AGENT),
]

MONO_CALM_TEXT = "你好，我想查询一下订单什么时候能到，麻烦你帮我看一下，谢谢。"
MONO_ANGRY_TEXT = ("我都等了三天了！说了多少遍了，你们这什么破服务！"
                   "我要投诉！马上给我处理！再不解决我就打12315！")


# --------------------------------------------------------------------------- measurement

def active_rms_db(x: np.ndarray, sr: int, threshold_db: float = -40.0) -> float:
    """RMS level (dBFS) over 20 ms frames whose level is above ``threshold_db``."""
    frame = int(0.02 * sr)
    n = x.size // frame
    if n == 0:
        return float("-inf")
    fr = x[: n * frame].reshape(n, frame).astype(np.float64)
    rms = np.sqrt(np.mean(fr ** 2, axis=1) + 1e-20)
    act = fr[20 * np.log10(rms) > threshold_db]
    if act.size == 0:
        return float("-inf")
    return float(10 * np.log10(np.mean(act ** 2)))


def median_f0(x: np.ndarray, sr: int, fmin: float = 60.0, fmax: float = 400.0) -> float:
    """Median F0 (Hz) by normalised autocorrelation on 40 ms frames, 10 ms hop.

    A frame is voiced when its level is above -40 dBFS and its autocorrelation peak in
    [1/fmax, 1/fmin] exceeds 0.5 of the zero-lag value.  Returns 0.0 if nothing is voiced.
    """
    fl, hop = int(0.04 * sr), int(0.01 * sr)
    lo, hi = int(sr / fmax), int(sr / fmin)
    f0s = []
    for i in range(0, x.size - fl, hop):
        fr = x[i:i + fl].astype(np.float64)
        fr = fr - fr.mean()
        if np.sqrt(np.mean(fr ** 2)) < 0.01:
            continue
        ac = np.correlate(fr, fr, "full")[fl - 1:]
        if ac[0] <= 0:
            continue
        k = lo + int(np.argmax(ac[lo:hi + 1]))
        if ac[k] / ac[0] > 0.5:
            # parabolic interpolation around the peak for sub-sample lag
            if 0 < k < ac.size - 1:
                a, b, c = ac[k - 1], ac[k], ac[k + 1]
                den = a - 2 * b + c
                k = k + (0.5 * (a - c) / den if den != 0 else 0.0)
            f0s.append(sr / k)
    return float(np.median(f0s)) if f0s else 0.0


@dataclass(frozen=True)
class SegmentStats:
    syllables: int
    duration_s: float
    syllables_per_s: float
    rms_dbfs: float
    median_f0_hz: float


def measure_segment(x: np.ndarray, sr: int, text: str) -> SegmentStats:
    dur = x.size / sr
    syl = syllable_count(text)
    return SegmentStats(syl, round(dur, 3), round(syl / dur, 2) if dur else 0.0,
                        round(active_rms_db(x, sr), 1), round(median_f0(x, sr), 1))


# --------------------------------------------------------------------------- generation

def _telephone(x: np.ndarray, sr: int) -> np.ndarray:
    sos = signal.butter(4, [300.0, 3400.0], btype="bandpass", fs=sr, output="sos")
    return signal.sosfiltfilt(sos, x).astype(np.float32)


def _noise(rng: np.random.Generator, n: int, dbfs: float) -> np.ndarray:
    z = rng.standard_normal(n)
    return (z / np.sqrt(np.mean(z ** 2)) * 10 ** (dbfs / 20)).astype(np.float32)


class NeuralVoiceNotAvailableError(RuntimeError):
    """The neural voice's venv is missing (``make tts-venv``, or point NUQI_TTS_PYTHON at one)."""


def neural_available() -> bool:
    return TTS_PYTHON.exists()


def render_neural(utterances: list[tuple[str, Style]]) -> dict[tuple[str, Style], tuple[np.ndarray, int]]:
    """Speak every (text, style) with the neural voice in one run of ``scripts/tts_neural.py`` (its own venv)."""
    if not neural_available():
        raise NeuralVoiceNotAvailableError(f"{TTS_PYTHON} not found: run `make tts-venv` or set NUQI_TTS_PYTHON")
    unique = list(dict.fromkeys(utterances))
    with tempfile.TemporaryDirectory(prefix="nuqi-tts-") as tmp:
        jobs = [{"text": t, "speed": st.speed, "f0": st.f0, "energy": st.energy, "out": f"{tmp}/{i}.wav"}
                for i, (t, st) in enumerate(unique)]
        proc = subprocess.run([str(TTS_PYTHON), str(REPO / "scripts" / "tts_neural.py")],
                              input=json.dumps(jobs, ensure_ascii=False).encode(), capture_output=True,
                              check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"tts_neural.py failed (rc={proc.returncode}): "
                               f"{proc.stderr.decode('utf-8', 'replace')[-600:]}")
        out = {}
        for key, job in zip(unique, jobs):
            a, sr = sf.read(job["out"], dtype="float32")
            out[key] = (a, int(sr))
    return out


Rendered = dict[tuple[str, Style], tuple[np.ndarray, int]]  # render_neural's output: (text, style) -> audio, rate


def _speak(text: str, style: Style, voice: str, sr: int, neural: Rendered | None = None) -> np.ndarray:
    if voice == NEURAL_VOICE:
        if neural is None or (text, style) not in neural:
            raise ValueError(f"the neural voice's audio for {text!r} ({style.name}) was not rendered")
        a, native = neural[(text, style)]
        a = soxr.resample(a, native, sr, quality="HQ").astype(np.float32) if native != sr else a
        a = a * np.float32(NEURAL_LEVEL * style.amplitude / 100.0)
    else:
        a = synthesize(text, rate_wpm=style.rate_wpm, pitch=style.pitch,
                       amplitude=style.amplitude, sample_rate=sr, voice=voice)
    return trim_silence(a, sr) * np.float32(LEVEL_GAIN)


def build_call(turns, customer_voice: str, agent_voice: str, rng: np.random.Generator,
               sr: int = 8000, neural: Rendered | None = None) -> tuple[np.ndarray, list[dict]]:
    """Stereo (n, 2) float32 call, agent left / customer right, and its turn list."""
    segs, meta, t = [], [], 0.6
    for role, text, style in turns:
        voice = agent_voice if role == "agent" else customer_voice
        a = _speak(text, style, voice, sr, neural)
        # angry customers answer faster; calm turn-taking gap 0.45-0.8 s
        gap = rng.uniform(0.2, 0.4) if style.name in ("irritated", "angry") else rng.uniform(0.45, 0.8)
        start = round(t, 3)
        start_i = int(round(start * sr))
        segs.append((role, start_i, a))
        end = round((start_i + a.size) / sr, 3)
        meta.append({"role": role, "text": text, "start": start, "end": end})
        t = end + gap
    total = int(round((t + 0.6) * sr))
    chans = np.zeros((2, total), dtype=np.float32)
    for role, s, a in segs:
        chans[0 if role == "agent" else 1, s:s + a.size] += a
    out = np.stack([_telephone(chans[c] + _noise(rng, total, NOISE_DBFS), sr) for c in (0, 1)],
                   axis=1)
    peak = float(np.max(np.abs(out)))
    if peak > 0.97:
        raise RuntimeError(f"call would clip (peak {peak:.2f}); lower LEVEL_GAIN")
    return out, meta


def build_mono(text: str, style: Style, voice: str, rng: np.random.Generator,
               sr: int = 16000) -> tuple[np.ndarray, dict]:
    a = _speak(text, style, voice, sr)
    lead, tail = int(0.3 * sr), int(0.3 * sr)
    x = np.concatenate([np.zeros(lead, np.float32), a, np.zeros(tail, np.float32)])
    x = x + _noise(rng, x.size, -60.0)
    return x.astype(np.float32), {"start": 0.3, "end": round((lead + a.size) / sr, 3)}


def _wav_bytes(x: np.ndarray, sr: int, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, subtype="PCM_16", format=fmt)
    return buf.getvalue()


def generate(neural: bool = True) -> dict[str, bytes]:
    """All sample files as {name: bytes}, plus the measured stats (README).

    ``neural=False`` leaves out the neural-voice call (the voice needs its own venv: ``make tts-venv``)."""
    rng = np.random.default_rng(SEED)
    files: dict[str, bytes] = {}
    stats: dict = {}
    calls = [("call_escalating_8k", ESCALATING_TURNS, CUSTOMER_VOICE, AGENT_VOICE, rng),
             ("call_calm_8k", CALM_TURNS, CALM_CUSTOMER_VOICE, CALM_AGENT_VOICE, rng)]
    rendered = None
    if neural:
        rendered = render_neural([(t, st) for role, t, st in ESCALATING_TURNS if role == "customer"])
        # its own seeded generator, so the espeak files are the same bytes with or without it
        calls.append((NEURAL_CALL_ID, ESCALATING_TURNS, NEURAL_VOICE, AGENT_VOICE,
                      np.random.default_rng(SEED + 1)))

    for call_id, turns, cv, av, call_rng in calls:
        x, meta = build_call(turns, cv, av, call_rng, neural=rendered)
        # the neural call is FLAC (the same PCM16 samples, half the bytes) to keep sample_audio/ small
        audio_name = f"{call_id}.flac" if cv == NEURAL_VOICE else f"{call_id}.wav"
        files[audio_name] = _wav_bytes(x, 8000, "FLAC" if cv == NEURAL_VOICE else "WAV")
        doc = {"call_id": call_id, "sample_rate": 8000, "channels": {"agent": 0, "customer": 1},
               "voices": {"agent": av, "customer": cv}, "turns": meta}
        files[f"{call_id}.json"] = (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode()
        # measure from the int16 file actually written
        y, _ = sf.read(io.BytesIO(files[audio_name]), dtype="float32")
        rows = []
        for (role, text, style), m in zip(turns, meta):
            ch = 0 if role == "agent" else 1
            seg = y[int(round(m["start"] * 8000)):int(round(m["end"] * 8000)), ch]
            voice = av if role == "agent" else cv
            settings = ({"speed": style.speed, "f0": style.f0, "energy": style.energy} if voice == NEURAL_VOICE
                        else {"rate_wpm": style.rate_wpm, "pitch": style.pitch})
            rows.append({**m, "style": style.name, **settings, "amplitude": style.amplitude,
                         **asdict(measure_segment(seg, 8000, text))})
        stats[call_id] = {"file_duration_s": round(y.shape[0] / 8000, 2), "turns": rows}
        if call_id == "call_escalating_8k":
            files["call_escalating.jsonl"] = "".join(
                json.dumps(m, ensure_ascii=False) + "\n" for m in meta).encode()

    for name, text, style in [("customer_calm_16k", MONO_CALM_TEXT, CALM),
                              ("customer_angry_16k", MONO_ANGRY_TEXT, ANGRY)]:
        x, span = build_mono(text, style, CUSTOMER_VOICE, rng)
        files[f"{name}.wav"] = _wav_bytes(x, 16000)
        y, _ = sf.read(io.BytesIO(files[f"{name}.wav"]), dtype="float32")
        seg = y[int(span["start"] * 16000):int(round(span["end"] * 16000))]
        stats[name] = {"file_duration_s": round(y.size / 16000, 2), "text": text, **span,
                       "style": style.name, "rate_wpm": style.rate_wpm, "pitch": style.pitch,
                       "amplitude": style.amplitude, **asdict(measure_segment(seg, 16000, text))}
    files["_stats"] = json.dumps(stats, ensure_ascii=False).encode()
    return files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    ap.add_argument("--check", action="store_true",
                    help="regenerate in memory and verify the files in --out are identical (the espeak files: "
                         "the neural voice is not bit-reproducible)")
    ap.add_argument("--stats", type=Path, help="also write the measured stats JSON here")
    ap.add_argument("--no-neural", action="store_true",
                    help=f"leave out {NEURAL_CALL_ID} (it needs the neural voice's venv, `make tts-venv`)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    files = generate(neural=not (a.no_neural or a.check))
    stats = files.pop("_stats")
    if a.stats:
        a.stats.write_bytes(stats)
    if a.check:
        bad = [n for n, b in files.items()
               if not (a.out / n).exists() or (a.out / n).read_bytes() != b]
        print("identical" if not bad else f"DIFFERENT: {bad}")
        return 1 if bad else 0
    a.out.mkdir(parents=True, exist_ok=True)
    for n, b in files.items():
        (a.out / n).write_bytes(b)
        log.info("wrote %s (%d bytes)", a.out / n, len(b))
    print(json.dumps(json.loads(stats), ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
