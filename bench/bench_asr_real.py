"""Tune and measure the built-in ASR on REAL Mandarin speech: CER and RTF per decoding setting.

Data: ``<data_dir>/speech/aishell-sample-dev`` (AISHELL sample, one speaker S0150, 50 read utterances, 16 kHz,
exact transcripts; see its SOURCE.md).  The 8 kHz condition is what a telephone line delivers to the service:
16 kHz → 8 kHz (soxr), 300–3400 Hz band-pass (4th-order Butterworth, zero-phase), G.711 μ-law encode/decode,
int16.  Honest split: the utterances sorted by file name are split alternately, even positions = **tune** half
(every setting is tried there), odd positions = **test** half (only the baseline and the chosen settings are
run there, once, after choosing).

CER = character edit distance / reference characters, summed over utterances, after NFKC, lower-case and
dropping punctuation/whitespace on both sides — *without* Traditional→Simplified conversion, so that the
engine's own conversion counts.  AISHELL writes numbers in Chinese characters (设定二十九度, phone numbers
一三零六…) while Whisper often writes digits, so the headline CER reads the hypothesis's digit runs as Chinese
(runs of ≥ 5 digits or with a leading 0 digit by digit, shorter ones by value: 29 → 二十九); the raw CER
(no digit reading) is reported next to it.  RTF = decode wall time / audio time, 1 decoder thread, int8,
on the shared 2-core host (load average in the run block).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/bench_asr_real.py --split tune
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/bench_asr_real.py --split test --settings baseline,chosen
    .venv/bin/python bench/bench_asr_real.py --render bench/RESULTS_asr.md
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import time
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from scipy.signal import butter, sosfiltfilt

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipelines.asr.engine import DecodeConfig, VadConfig, WhisperEngine  # noqa: E402
from pipelines.asr.filters import DEFAULT_FILTER, FilterConfig, edit_distance  # noqa: E402
from pipelines.asr.model_assembly import default_model_dir  # noqa: E402
from pipelines.settings import Settings  # noqa: E402
from pipelines.text.lexicon import KeywordLexicon  # noqa: E402

log = logging.getLogger("nuqi.bench.asr_real")
OUT = REPO / "bench" / "out" / "asr_real.jsonl"
START, END = "<!-- real-speech table: bench/bench_asr_real.py -->", "<!-- end real-speech table -->"

# ----------------------------------------------------------------------------- audio


def mulaw_roundtrip(x: np.ndarray, mu: float = 255.0) -> np.ndarray:
    """G.711 μ-law companding with 8-bit quantisation, then expansion (float in, float out)."""
    x = np.clip(x, -1.0, 1.0)
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    q = np.round((y + 1.0) * 127.5) / 127.5 - 1.0  # 256 levels
    return (np.sign(q) * np.expm1(np.abs(q) * np.log1p(mu)) / mu).astype(np.float32)


def telephone_8k(audio16k: np.ndarray) -> np.ndarray:
    """16 kHz wideband → what a phone line delivers: 8 kHz, 300–3400 Hz, μ-law, int16."""
    x = soxr.resample(audio16k, 16000, 8000, quality="HQ")
    x = sosfiltfilt(butter(4, [300, 3400], btype="bandpass", fs=8000, output="sos"), x)
    x = mulaw_roundtrip(x.astype(np.float32))
    return np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)


# ----------------------------------------------------------------------------- scoring
_DIGITS = "零一二三四五六七八九"


def _value_reading(n: int) -> str:
    if n == 0:
        return "零"
    parts, zero = [], False
    for unit_value, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        d, n = divmod(n, unit_value)
        if d:
            if zero:
                parts.append("零")
            parts.append(_DIGITS[d] + unit)
            zero = False
        elif parts:
            zero = True
    out = "".join(parts)
    return out[1:] if out.startswith("一十") else out  # 十二, not 一十二


def read_digits(text: str) -> str:
    """Digit runs as Chinese: ≥ 5 digits or a leading 0 → digit by digit, else by value (≤ 9999)."""
    out, i = [], 0
    while i < len(text):
        if text[i].isdigit() and text[i].isascii():
            j = i
            while j < len(text) and text[j].isdigit() and text[j].isascii():
                j += 1
            run = text[i:j]
            if len(run) >= 5 or (len(run) > 1 and run[0] == "0"):
                out.append("".join(_DIGITS[int(c)] for c in run))
            else:
                out.append(_value_reading(int(run)))
            i = j
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def score_norm(text: str) -> str:
    """NFKC, lower case, letters and digits only; no Traditional→Simplified (the engine's job)."""
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in text if unicodedata.category(ch)[0] in "LN")


# ----------------------------------------------------------------------------- settings
SIMPLIFIED_PROMPT = "以下是普通话的句子。"
DOMAIN_PROMPT = "以下是普通话客服电话的录音。"
FALLBACK = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
CHOSEN = "pad400+beam2+no-repeat-3"  # the engine's defaults since this benchmark (pipelines/asr/engine.py)


@dataclass(frozen=True)
class Setting:
    decode: DecodeConfig
    vad: VadConfig
    filters: FilterConfig
    note: str


def settings_table(hotwords: str) -> dict[str, Setting]:
    base_d, base_v, base_f = DecodeConfig(beam_size=5, temperature=(0.0,), initial_prompt=None, hotwords=None,
                                          no_repeat_ngram_size=0), \
        VadConfig(speech_pad_ms=200), DEFAULT_FILTER
    s = {
        "baseline": Setting(base_d, base_v, base_f, "engine defaults before this tuning: beam 5, T=0, no prompt, pad 200 ms"),
        "greedy": Setting(replace(base_d, beam_size=1), base_v, base_f, "beam 1"),
        "beam2": Setting(replace(base_d, beam_size=2), base_v, base_f, "beam 2"),
        "beam10": Setting(replace(base_d, beam_size=10), base_v, base_f, "beam 10"),
        "fallback": Setting(replace(base_d, temperature=FALLBACK), base_v, base_f,
                            "temperature fallback 0,0.2,…,1.0 (sampling when the beam fails its checks)"),
        "prompt-simplified": Setting(replace(base_d, initial_prompt=SIMPLIFIED_PROMPT), base_v, base_f,
                                     f"initial prompt {SIMPLIFIED_PROMPT}"),
        "prompt-domain": Setting(replace(base_d, initial_prompt=DOMAIN_PROMPT), base_v, base_f,
                                 f"initial prompt {DOMAIN_PROMPT}"),
        "hotwords": Setting(replace(base_d, hotwords=hotwords), base_v, base_f,
                            "faster-whisper hotwords = KeywordLexicon.hotwords() (20 terms)"),
        "pad100": Setting(base_d, VadConfig(speech_pad_ms=100), base_f, "VAD speech_pad_ms 100"),
        "pad400": Setting(base_d, VadConfig(speech_pad_ms=400), base_f, "VAD speech_pad_ms 400"),
        "vad-thr0.35": Setting(base_d, VadConfig(threshold=0.35, speech_pad_ms=200), base_f, "VAD threshold 0.35"),
        "no-t2s": Setting(base_d, base_v, replace(base_f, simplify=False), "without OpenCC Traditional→Simplified"),
        "no-timestamps": Setting(replace(base_d, without_timestamps=True), base_v, base_f,
                                 "without_timestamps (one text per VAD chunk)"),
        "no-repeat-3": Setting(replace(base_d, no_repeat_ngram_size=3), base_v, base_f,
                               "no_repeat_ngram_size 3 (deterministic loop breaker)"),
        "rep-penalty-1.3": Setting(replace(base_d, repetition_penalty=1.3), base_v, base_f, "repetition_penalty 1.3"),
        "float32": Setting(base_d, base_v, base_f, "float32 weights instead of int8 (compute_type)"),
        "no-filters": Setting(base_d, base_v, replace(base_f, drop_hallucinations=False),
                              "without the hallucination filters"),
    }
    return s


def combined(table: dict[str, Setting], names: list[str]) -> Setting:
    """Apply the differences of several settings from the baseline together."""
    base = table["baseline"]
    d, v, f = base.decode, base.vad, base.filters
    for n in names:
        s = table[n]
        d = replace(d, **{k: getattr(s.decode, k) for k in d.__dataclass_fields__
                          if getattr(s.decode, k) != getattr(base.decode, k)})
        v = replace(v, **{k: getattr(s.vad, k) for k in v.__dataclass_fields__
                          if getattr(s.vad, k) != getattr(base.vad, k)})
        f = replace(f, **{k: getattr(s.filters, k) for k in f.__dataclass_fields__
                          if getattr(s.filters, k) != getattr(base.filters, k)})
    return Setting(d, v, f, " + ".join(names))


# ----------------------------------------------------------------------------- run
def load_split(data: Path, split: str) -> list[dict]:
    with open(data / "manifest.csv", encoding="utf-8") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: r["path"])
    return [r for i, r in enumerate(rows) if (i % 2 == 0) == (split == "tune")]


def done_keys(path: Path) -> set[tuple]:
    if not path.is_file():
        return set()
    out = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        out.add((r["setting"], r["split"], r["rate"], r["path"]))
    return out


def run(engine: WhisperEngine, table: dict[str, Setting], names: list[str], split: str, rows: list[dict],
        data: Path, out: Path) -> None:
    done = done_keys(out)
    audio16 = {r["path"]: sf.read(data / r["path"], dtype="float32")[0] for r in rows}
    audio8 = {p: telephone_8k(a) for p, a in audio16.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in names:
        s = table[name] if name in table else combined(table, name.split("+"))
        base = engine
        if "float32" in name.split("+"):
            base = WhisperEngine.load(engine.model_dir, cpu_threads=1, compute_type="float32")
        eng = replace(base, decode=s.decode, vad=s.vad, filters=s.filters)
        for rate, audio in ((8000, audio8), (16000, audio16)):
            for r in rows:
                if (name, split, rate, r["path"]) in done:
                    continue
                x = audio[r["path"]]
                t0 = time.perf_counter()
                segs = eng.transcribe(x, rate)
                dt = time.perf_counter() - t0
                hyp = "".join(seg.text for seg in segs)
                ref = score_norm(r["text"])
                rec = {"setting": name, "split": split, "rate": rate, "path": r["path"], "ref": r["text"],
                       "hyp": hyp, "ref_chars": len(ref),
                       "edits": edit_distance(ref, read_digits(score_norm(hyp))),
                       "edits_raw": edit_distance(ref, score_norm(hyp)),
                       "audio_s": x.size / rate, "decode_s": round(dt, 3), "load1": os.getloadavg()[0]}
                with open(out, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
                log.info("%s %s %d %s CER %.2f | %s | %s", name, split, rate, r["path"],
                         rec["edits"] / max(1, rec["ref_chars"]), r["text"], hyp)


def render(out: Path, table: dict[str, Setting]) -> str:
    recs = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    keys = list(dict.fromkeys((r["setting"], r["split"]) for r in recs))
    both = {n for n, sp in keys if sp == "test" and (n, "tune") in keys}
    keys += [(n, "all 50") for n in sorted(both)]
    lines = ["| setting | what | split | utts | CER 8 kHz tel. | CER 16 kHz | raw CER 8 / 16 | RTF 8 / 16 | load1 |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    order = {"tune": 0, "test": 1, "all 50": 2}
    for name, split in sorted(keys, key=lambda k: (order[k[1]], k[0] != "baseline", k[0])):
        cells = {}
        for rate in (8000, 16000):
            rs = [r for r in recs if r["setting"] == name and r["split"] in ((split,) if split != "all 50"
                                                                             else ("tune", "test"))
                  and r["rate"] == rate]
            if not rs:
                cells[rate] = None
                continue
            n = sum(r["ref_chars"] for r in rs)
            cells[rate] = (len(rs), sum(r["edits"] for r in rs) / n, sum(r["edits_raw"] for r in rs) / n,
                           sum(r["decode_s"] for r in rs) / sum(r["audio_s"] for r in rs),
                           float(np.mean([r["load1"] for r in rs])))
        c8, c16 = cells[8000], cells[16000]

        def f(c, i, fmt="{:.3f}"):
            return fmt.format(c[i]) if c else "–"

        what = table[name].note if name in table else combined(table, name.split("+")).note
        if name == CHOSEN:
            what += " — **chosen: the engine's defaults now**"
        utts = (c8 or c16)[0]
        lines.append(f"| {name} | {what} | {split} | {utts} | {f(c8, 1)} | {f(c16, 1)} | {f(c8, 2)} / {f(c16, 2)} | "
                     f"{f(c8, 3, '{:.2f}')} / {f(c16, 3, '{:.2f}')} | {f(c8, 4, '{:.1f}')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", choices=("tune", "test"), default="tune")
    ap.add_argument("--settings", default="all", help="comma list (a+b combines settings), 'all' = every setting")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--render", type=Path, default=None, help="write the table into this markdown file")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    table = settings_table(" ".join(KeywordLexicon.load().hotwords()))
    if a.render:
        md = render(a.out, table)
        print(md)
        text = a.render.read_text(encoding="utf-8")
        if START in text:
            head, rest = text.split(START, 1)
            tail = rest.split(END, 1)[1] if END in rest else ""
            a.render.write_text(head + START + "\n" + md + "\n" + END + tail, encoding="utf-8")
        return 0
    data = settings.data_dir / "speech" / "aishell-sample-dev"
    names = list(table) if a.settings == "all" else a.settings.split(",")
    engine = WhisperEngine.load(settings.models.asr_model_dir or default_model_dir(settings), cpu_threads=1)
    run(engine, table, names, a.split, load_split(data, a.split), data, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
