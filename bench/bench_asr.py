"""Benchmark the built-in ASR: character error rate (CER) and real-time factor (RTF).

Audio: synthetic Mandarin from ``scripts/synth_mandarin.py`` (espeak-ng, pinyin voice,
four espeak variants, calm/slow/fast/angry styles), generated at 8 kHz and at 16 kHz
from the same texts/voices (same seed).  This is *not* real telephone speech: espeak
is far less natural than a person, so the CER here is a regression figure for this
engine, not a prediction of CER on real calls.

CER = Levenshtein distance between reference and hypothesis characters after both are
converted to Simplified, NFKC-normalised, lower-cased and stripped of punctuation and
whitespace (``pipelines.asr.filters.normalize_for_match``), summed over clips and
divided by the summed reference length.  RTF = decode wall time / audio duration with
``cpu_threads=1`` (model load excluded).  Also checks that silence, noise and tones
give no segments.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_asr.py --n 60 --results bench/RESULTS_asr.md
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import logging
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipelines.asr.engine import DecodeConfig, WhisperEngine  # noqa: E402
from pipelines.asr.filters import edit_distance, normalize_for_match  # noqa: E402
from pipelines.asr.model_assembly import assemble_model, default_model_dir  # noqa: E402
from training.results_file import write_below_mark  # noqa: E402

log = logging.getLogger("nuqi.bench.asr")
GENERATED_MARK = "<!-- tables below are written by bench/bench_asr.py -->"


def _load_synth():
    spec = importlib.util.spec_from_file_location("synth_mandarin", REPO / "scripts" / "synth_mandarin.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["synth_mandarin"] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class ClipResult:
    condition: str
    config: str
    file: str
    style: str
    ref: str
    hyp: str
    ref_chars: int
    edits: int
    audio_s: float
    decode_s: float


def _add_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    power = float(np.mean(audio**2)) or 1e-12
    noise = rng.standard_normal(audio.size).astype(np.float32)
    noise *= np.sqrt(power / 10 ** (snr_db / 10)).astype(np.float32)
    return (audio + noise).astype(np.float32)


def run_corpus(engine: WhisperEngine, config_name: str, corpus_dir: Path, condition: str,
               snr_db: float | None, seed: int) -> list[ClipResult]:
    rng = np.random.default_rng(seed)
    results: list[ClipResult] = []
    with open(corpus_dir / "manifest.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        audio, rate = sf.read(corpus_dir / row["file"], dtype="float32")
        if snr_db is not None:
            audio = _add_noise(audio, snr_db, rng)
        t0 = time.perf_counter()
        segments = engine.transcribe(audio, rate)
        dt = time.perf_counter() - t0
        ref = normalize_for_match(row["text"])
        hyp = normalize_for_match("".join(s.text for s in segments))
        results.append(ClipResult(condition, config_name, row["file"], row["style"], ref, hyp, len(ref),
                                  edit_distance(ref, hyp), audio.size / rate, dt))
        log.info("%s %s %s CER %.2f  %s | %s", config_name, condition, row["file"],
                 results[-1].edits / max(1, len(ref)), ref, hyp)
    return results


def run_call(engine: WhisperEngine, config_name: str, corpus_dir: Path, condition: str,
             gap_s: float) -> ClipResult:
    """All corpus clips back to back with ``gap_s`` of silence between them: one long 'call'."""
    with open(corpus_dir / "manifest.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    pieces, texts, rate = [], [], None
    for row in rows:
        audio, rate = sf.read(corpus_dir / row["file"], dtype="float32")
        pieces += [audio, np.zeros(int(gap_s * rate), np.float32)]
        texts.append(row["text"])
    call = np.concatenate(pieces)
    t0 = time.perf_counter()
    segments = engine.transcribe(call, rate)
    dt = time.perf_counter() - t0
    ref = normalize_for_match("".join(texts))
    hyp = normalize_for_match("".join(s.text for s in segments))
    log.info("%s %s: %d segments, CER %.3f, RTF %.3f", config_name, condition, len(segments),
             edit_distance(ref, hyp) / len(ref), dt / (call.size / rate))
    return ClipResult(condition, config_name, f"{len(rows)} clips + {gap_s:g} s gaps", "call", ref, hyp,
                      len(ref), edit_distance(ref, hyp), call.size / rate, dt)


def non_speech_signals(rate: int, seconds: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    t = np.arange(n) / rate
    white = rng.standard_normal(n).astype(np.float32)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[1:] /= np.sqrt(np.arange(1, spectrum.size))
    pink = np.fft.irfft(spectrum, n).astype(np.float32)
    pink /= np.max(np.abs(pink))
    cadence = ((t % 0.7) < 0.35).astype(np.float32)  # Chinese busy tone: 450 Hz, 0.35 s on/off
    return {
        "digital silence (zeros)": np.zeros(n, np.float32),
        "white noise -40 dBFS": white * np.float32(10 ** (-40 / 20)),
        "white noise -10 dBFS": white * np.float32(10 ** (-10 / 20)),
        "pink noise -15 dBFS peak-norm": pink * np.float32(10 ** (-15 / 20)),
        "450 Hz dial tone -12 dBFS": (np.sin(2 * np.pi * 450 * t) * 10 ** (-12 / 20)).astype(np.float32),
        "450 Hz busy tone -12 dBFS": (np.sin(2 * np.pi * 450 * t) * 10 ** (-12 / 20) * cadence).astype(np.float32),
        "50 Hz hum + white -30 dBFS": ((np.sin(2 * np.pi * 50 * t) * 0.1) + white * 10 ** (-30 / 20)).astype(np.float32),
    }


def _cer(rows: list[ClipResult]) -> float:
    return sum(r.edits for r in rows) / max(1, sum(r.ref_chars for r in rows))


def _rtf(rows: list[ClipResult]) -> float:
    return sum(r.decode_s for r in rows) / max(1e-9, sum(r.audio_s for r in rows))


def render(results: list[ClipResult], calls: list[ClipResult], nonspeech: list[dict], meta: dict) -> str:
    lines = ["## Speech, one clip at a time: CER and RTF (cpu_threads=1, int8)", ""]
    configs = list(dict.fromkeys(r.config for r in results))
    conditions = list(dict.fromkeys(r.condition for r in results))
    lines += ["| decode config | condition | clips | ref chars | CER | exact clips | RTF | audio s |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for cfg in configs:
        for cond in conditions:
            rows = [r for r in results if r.config == cfg and r.condition == cond]
            if not rows:
                continue
            exact = sum(r.edits == 0 for r in rows)
            lines.append(f"| {cfg} | {cond} | {len(rows)} | {sum(r.ref_chars for r in rows)} | "
                         f"{_cer(rows):.3f} | {exact} | {_rtf(rows):.3f} | {sum(r.audio_s for r in rows):.0f} |")
        rows = [r for r in results if r.config == cfg]
        lines.append(f"| {cfg} | **overall** | {len(rows)} | {sum(r.ref_chars for r in rows)} | "
                     f"**{_cer(rows):.3f}** | {sum(r.edits == 0 for r in rows)} | **{_rtf(rows):.3f}** | "
                     f"{sum(r.audio_s for r in rows):.0f} |")
    if calls:
        lines += ["", "## Speech as one long call (all clips back to back, silence between)", "",
                  "| decode config | condition | clips | ref chars | CER | RTF | audio s |",
                  "|---|---|---|---:|---:|---:|---:|"]
        for r in calls:
            lines.append(f"| {r.config} | {r.condition} | {r.file} | {r.ref_chars} | {r.edits / r.ref_chars:.3f} | "
                         f"{r.decode_s / r.audio_s:.3f} | {r.audio_s:.0f} |")
    lines += ["", "### CER by speaking style (espeak settings of the synthetic corpus)", "",
              "| decode config | condition | " + " | ".join(["calm", "slow", "fast", "angry"]) + " |",
              "|---|---|---:|---:|---:|---:|"]
    for cfg in configs:
        for cond in conditions:
            cells = []
            for style in ("calm", "slow", "fast", "angry"):
                rows = [r for r in results if r.config == cfg and r.condition == cond and r.style == style]
                cells.append(f"{_cer(rows):.3f} (n={len(rows)})" if rows else "–")
            lines.append(f"| {cfg} | {cond} | " + " | ".join(cells) + " |")
    lines += ["", "## Non-speech input (must give no segments)", "",
              "| signal | rate | seconds | segments | text |", "|---|---:|---:|---:|---|"]
    for item in nonspeech:
        lines.append(f"| {item['signal']} | {item['rate']} | {item['seconds']:.0f} | {item['segments']} | "
                     f"{item['text'] or '–'} |")
    worst = sorted((r for r in results if r.config == configs[0]), key=lambda r: -r.edits / max(1, r.ref_chars))[:8]
    lines += ["", f"### Worst clips ({configs[0]})", "", "| condition | file | reference | hypothesis | CER |",
              "|---|---|---|---|---:|"]
    for r in worst:
        lines.append(f"| {r.condition} | {r.file} | {r.ref} | {r.hyp or '(empty)'} | {r.edits / max(1, r.ref_chars):.2f} |")
    lines += ["", "## Run", "", "```", json.dumps(meta, ensure_ascii=False, indent=2), "```", ""]
    return "\n".join(lines)


PROMPT = "以下是普通话客服电话的录音。"
FALLBACK = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # Whisper's default temperature fallback (sampling)
CONFIGS = {
    "beam5-t0": replace(DecodeConfig(), beam_size=5, temperature=(0.0,)),
    "beam5-fallback": replace(DecodeConfig(), beam_size=5, temperature=FALLBACK),
    "greedy-t0": replace(DecodeConfig(), beam_size=1, temperature=(0.0,)),
    "beam5-t0+prompt": replace(DecodeConfig(), beam_size=5, temperature=(0.0,), initial_prompt=PROMPT),
    "beam5-fallback+prompt": replace(DecodeConfig(), beam_size=5, temperature=FALLBACK, initial_prompt=PROMPT),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=60, help="clips per rate (60 = every corpus sentence once)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--corpus-root", type=Path, default=REPO / "bench" / "out" / "asr_corpus")
    ap.add_argument("--configs", default="beam5-t0", help=f"comma list of {sorted(CONFIGS)}")
    ap.add_argument("--call-gap", type=float, default=0.8,
                    help="also decode each corpus as one long call with this silence between clips; <0 to skip")
    ap.add_argument("--noisy-snr", type=float, default=20.0, help="also run 8 kHz + white noise at this SNR (dB); <0 to skip")
    ap.add_argument("--results", type=Path, default=None, help="write the markdown tables here")
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "out" / "asr_clips.json")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    synth = _load_synth()
    corpora: dict[int, Path] = {}
    for rate in (16000, 8000):
        d = a.corpus_root / f"{rate // 1000}k_n{a.n}_seed{a.seed}"
        if not (d / "manifest.csv").is_file():
            synth.make_corpus(d, n=a.n, sample_rate=rate, seed=a.seed)
        corpora[rate] = d

    load_before = [round(x, 2) for x in os.getloadavg()]
    model_dir = a.model_dir or default_model_dir()
    assemble_model(model_dir)
    results: list[ClipResult] = []
    calls: list[ClipResult] = []
    nonspeech: list[dict] = []
    load_s = {}
    for name in a.configs.split(","):
        t0 = time.perf_counter()
        engine = WhisperEngine.load(model_dir, cpu_threads=1, compute_type="int8", decode=CONFIGS[name])
        load_s[name] = round(time.perf_counter() - t0, 2)
        results += run_corpus(engine, name, corpora[16000], "16 kHz clean", None, a.seed)
        results += run_corpus(engine, name, corpora[8000], "8 kHz clean", None, a.seed)
        if a.noisy_snr >= 0:
            results += run_corpus(engine, name, corpora[8000], f"8 kHz + white noise {a.noisy_snr:g} dB SNR",
                                  a.noisy_snr, a.seed)
        if a.call_gap >= 0:
            calls.append(run_call(engine, name, corpora[16000], "16 kHz call", a.call_gap))
            calls.append(run_call(engine, name, corpora[8000], "8 kHz call", a.call_gap))
        if not nonspeech:
            for rate in (8000, 16000):
                for signal, audio in non_speech_signals(rate, 10.0, a.seed).items():
                    segs = engine.transcribe(audio, rate)
                    nonspeech.append({"signal": signal, "rate": rate, "seconds": audio.size / rate,
                                      "segments": len(segs), "text": " / ".join(s.text for s in segs)})

    import ctranslate2
    import faster_whisper

    meta = {
        "command": "OMP_NUM_THREADS=1 .venv/bin/python bench/bench_asr.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "audio": "synthetic espeak-ng Mandarin (scripts/synth_mandarin.py make_corpus), NOT real telephone speech",
        "corpus": {str(k): str(v.relative_to(REPO)) if v.is_relative_to(REPO) else str(v) for k, v in corpora.items()},
        "model": "faster-whisper base (Systran CTranslate2 conversion of OpenAI Whisper base), int8, cpu_threads=1",
        "load_s": load_s,
        "faster_whisper": faster_whisper.__version__,
        "ctranslate2": ctranslate2.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "loadavg_1_5_15min_at_start": load_before,
        "loadavg_1_5_15min_at_end": [round(x, 2) for x in os.getloadavg()],
        "note": "RTF measured on a 2-core machine shared with other jobs; treat as an upper bound",
    }
    md = render(results, calls, nonspeech, meta)
    print(md)
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps([asdict(r) for r in results + calls], ensure_ascii=False, indent=1),
                      encoding="utf-8")
    if a.results:
        write_below_mark(a.results, GENERATED_MARK, md)  # the hand-written summary above the mark stays
    return 0


if __name__ == "__main__":
    sys.exit(main())
