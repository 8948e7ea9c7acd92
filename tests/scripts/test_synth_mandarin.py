"""Tests for scripts/synth_mandarin.py and the committed sample_audio/ files.

Synthesis tests skip when espeak-ng is absent; the sample-file format and property tests read
only the committed WAV/JSON files and run everywhere.
"""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

import make_sample_audio as msa  # noqa: E402
import synth_mandarin as sm  # noqa: E402

SAMPLES = REPO / "sample_audio"
HAS_ESPEAK = shutil.which("espeak-ng") is not None
needs_espeak = pytest.mark.skipif(not HAS_ESPEAK,
                                  reason="espeak-ng not installed (apt-get install -y espeak-ng)")


# ------------------------------------------------------------------ text -> syllables / pinyin

@pytest.mark.parametrize("text,expected", [
    ("我都等了三天了", 7),
    ("你们这什么破服务！", 8),
    ("再不解决我就打12315！", 12),           # 7 characters + 5 digits read one by one
    ("订单A123已经发货了，OK吗？", 14),       # 2 + A + 1,2,3 + 5 + O,K + 吗
    ("请打开APP看一下", 9),                   # 3 + APP spelled (3 letters) + 3
    ("hello world", 3),                       # long Latin words: vowel groups
    ("，。！？  ", 0),
])
def test_syllable_count_mixed(text: str, expected: int) -> None:
    assert sm.syllable_count(text) == expected


def test_to_pinyin_matches_syllable_count() -> None:
    text = "订单A123已经发货了，你们这什么破服务！再不解决我就打12315。"
    py = sm.to_pinyin(text)
    assert py.startswith("ding4 dan1 ei1 yao1 er4 san1")
    assert py.endswith("da3 yao1 er4 san1 yao1 wu3.")
    assert len(py.split()) == sm.syllable_count(text)
    assert sm.to_pinyin("我不要") == "wo3 bu2 yao4"          # 不 sandhi before a 4th tone


# ------------------------------------------------------------------ synthesis (espeak-ng)

@needs_espeak
@pytest.mark.parametrize("sr", [8000, 16000])
def test_synthesize_short_sentence(sr: int) -> None:
    text = "您好，请问有什么可以帮您？"
    x = sm.synthesize(text, rate_wpm=170, pitch=50, amplitude=100, sample_rate=sr)
    assert x.dtype == np.float32 and x.ndim == 1
    speech = sm.trim_silence(x, sr)
    dur = speech.size / sr
    rate = sm.syllable_count(text) / dur
    assert 2.5 < rate < 6.0, rate                       # plausible Mandarin speaking rate
    assert msa.active_rms_db(speech, sr) > -30.0        # clearly not silent
    assert 0.05 < float(np.max(np.abs(x))) <= 1.0
    assert 70 < msa.median_f0(speech, sr) < 200         # default male voice


@needs_espeak
def test_synthesize_controls_rate_pitch_loudness() -> None:
    text = "我都等了三天了，你们这什么破服务！"
    calm = sm.trim_silence(sm.synthesize(text, rate_wpm=165, pitch=50, amplitude=100,
                                         voice="cmn+f2"), 16000)
    angry = sm.trim_silence(sm.synthesize(text, rate_wpm=240, pitch=76, amplitude=175,
                                          voice="cmn+f2"), 16000)
    assert angry.size < 0.8 * calm.size
    assert msa.median_f0(angry, 16000) > 1.15 * msa.median_f0(calm, 16000)
    assert msa.active_rms_db(angry, 16000) > msa.active_rms_db(calm, 16000) + 3.0


@needs_espeak
def test_synthesize_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        sm.synthesize("你好", rate_wpm=170, pitch=120, amplitude=100)
    with pytest.raises(ValueError):
        sm.synthesize("，。", rate_wpm=170, pitch=50, amplitude=100)


@needs_espeak
def test_make_corpus_writes_manifest(tmp_path: Path) -> None:
    items = sm.make_corpus(tmp_path, n=4, sample_rate=16000, seed=1)
    rows = list(csv.DictReader(open(tmp_path / "manifest.csv", encoding="utf-8")))
    assert len(rows) == len(items) == 4
    for row in rows:
        x, sr = sf.read(tmp_path / row["file"])
        assert sr == 16000 and x.ndim == 1
        assert int(row["syllables"]) == sm.syllable_count(row["text"]) > 0
        assert 2.0 < float(row["syllables_per_s"]) < 8.0
        assert float(row["speech_s"]) <= float(row["duration_s"])


@needs_espeak
@pytest.mark.skipif(HAS_ESPEAK and "1.51" not in subprocess.run(
    ["espeak-ng", "--version"], capture_output=True, text=True).stdout,
    reason="byte-identical regeneration is only promised with espeak-ng 1.51 (Debian)")
def test_sample_audio_regenerates_identically() -> None:
    # the espeak files only: the neural call needs the voice's own venv and its model samples (not bit-exact)
    files = msa.generate(neural=False)
    files.pop("_stats")
    for name, data in files.items():
        assert (SAMPLES / name).read_bytes() == data, f"{name} differs from regenerated"


# ------------------------------------------------------------------ committed sample files

CALLS = {"call_escalating_8k": (60.0, 90.0), "call_calm_8k": (40.0, 90.0)}


@pytest.mark.parametrize("call_id", list(CALLS))
def test_call_files_format(call_id: str) -> None:
    info = sf.info(SAMPLES / f"{call_id}.wav")
    assert (info.samplerate, info.channels, info.subtype) == (8000, 2, "PCM_16")
    lo, hi = CALLS[call_id]
    assert lo <= info.duration <= hi
    meta = json.loads((SAMPLES / f"{call_id}.json").read_text(encoding="utf-8"))
    assert meta["call_id"] == call_id
    assert meta["sample_rate"] == 8000
    assert meta["channels"] == {"agent": 0, "customer": 1}
    turns = meta["turns"]
    assert len(turns) >= 8
    prev_end = 0.0
    for i, t in enumerate(turns):
        assert t["role"] == ("agent" if i % 2 == 0 else "customer")  # alternating
        assert prev_end < t["start"] < t["end"] <= info.duration     # no overlap
        assert sm.syllable_count(t["text"]) > 0
        prev_end = t["end"]


@pytest.mark.parametrize("call_id", list(CALLS))
def test_only_one_channel_speaks_at_a_time(call_id: str) -> None:
    x, sr = sf.read(SAMPLES / f"{call_id}.wav", dtype="float32")
    meta = json.loads((SAMPLES / f"{call_id}.json").read_text(encoding="utf-8"))
    for t in meta["turns"]:
        own = 0 if t["role"] == "agent" else 1
        seg = x[int(t["start"] * sr):int(t["end"] * sr)]
        assert msa.active_rms_db(seg[:, own], sr) > -30.0                  # speaker is talking
        other_db = 10 * np.log10(np.mean(seg[:, 1 - own].astype(np.float64) ** 2))
        assert other_db < -45.0                                            # other: faint noise


def test_escalating_jsonl_matches_sidecar() -> None:
    meta = json.loads((SAMPLES / "call_escalating_8k.json").read_text(encoding="utf-8"))
    lines = (SAMPLES / "call_escalating.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    assert rows == [{k: t[k] for k in ("role", "text", "start", "end")} for t in meta["turns"]]


@pytest.mark.parametrize("name", ["customer_calm_16k", "customer_angry_16k"])
def test_mono_files_format(name: str) -> None:
    info = sf.info(SAMPLES / f"{name}.wav")
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert 6.0 <= info.duration <= 10.0


def test_sample_folder_small() -> None:
    total = sum(p.stat().st_size for p in SAMPLES.iterdir() if p.is_file())
    assert total < 6 * 1024 * 1024
    assert (SAMPLES / "README.md").is_file()


def _customer_pool(turns, x, sr):
    seg = np.concatenate([x[int(round(t["start"] * sr)):int(round(t["end"] * sr)), 1]
                          for t in turns])
    syl = sum(sm.syllable_count(t["text"]) for t in turns)
    return syl / (seg.size / sr), msa.active_rms_db(seg, sr), msa.median_f0(seg, sr), seg.size / sr


def test_escalating_customer_gets_faster_higher_louder() -> None:
    x, sr = sf.read(SAMPLES / "call_escalating_8k.wav", dtype="float32")
    meta = json.loads((SAMPLES / "call_escalating_8k.json").read_text(encoding="utf-8"))
    cust = [t for t in meta["turns"] if t["role"] == "customer"]
    rate0, db0, f00, dur0 = _customer_pool(cust[:3], x, sr)
    rate1, db1, f01, _ = _customer_pool(cust[-3:], x, sr)
    assert dur0 > 17.0                       # calm opening is ~20 s of customer speech
    assert rate1 > 1.3 * rate0               # documented: 3.58 -> 5.44 syllables/s
    assert f01 > 1.2 * f00                   # documented: 170 -> 227 Hz
    assert db1 > db0 + 3.0                   # documented: -22.3 -> -18.0 dBFS


def test_neural_call_is_the_escalating_call_in_another_voice() -> None:
    info = sf.info(SAMPLES / "call_escalating_neural_8k.flac")
    assert (info.samplerate, info.channels, info.format, info.subtype) == (8000, 2, "FLAC", "PCM_16")
    assert 60.0 <= info.duration <= 90.0
    meta = json.loads((SAMPLES / "call_escalating_neural_8k.json").read_text(encoding="utf-8"))
    espeak = json.loads((SAMPLES / "call_escalating_8k.json").read_text(encoding="utf-8"))
    assert [(t["role"], t["text"]) for t in meta["turns"]] == [(t["role"], t["text"]) for t in espeak["turns"]]
    assert meta["voices"] == {"agent": msa.AGENT_VOICE, "customer": msa.NEURAL_VOICE}
    x, sr = sf.read(SAMPLES / "call_escalating_neural_8k.flac", dtype="float32")
    cust = [t for t in meta["turns"] if t["role"] == "customer"]
    rate0, db0, _, _ = _customer_pool(cust[:3], x, sr)
    rate1, db1, _, _ = _customer_pool(cust[-3:], x, sr)
    assert rate1 > 1.15 * rate0 and db1 > db0 + 3.0  # documented: 4.45 -> 5.68 syllables/s, +5.7 dB
    for t in meta["turns"]:  # only the speaking role's channel carries speech in each turn
        seg = x[int(round(t["start"] * sr)):int(round(t["end"] * sr))]
        own, other = (0, 1) if t["role"] == "agent" else (1, 0)
        assert msa.active_rms_db(seg[:, own], sr) > msa.active_rms_db(seg[:, other], sr) + 20


def test_calm_call_stays_calm() -> None:
    x, sr = sf.read(SAMPLES / "call_calm_8k.wav", dtype="float32")
    meta = json.loads((SAMPLES / "call_calm_8k.json").read_text(encoding="utf-8"))
    cust = [t for t in meta["turns"] if t["role"] == "customer"]
    rate0, db0, f00, _ = _customer_pool(cust[:2], x, sr)
    rate1, db1, f01, _ = _customer_pool(cust[-2:], x, sr)
    assert abs(rate1 / rate0 - 1) < 0.15
    assert abs(f01 / f00 - 1) < 0.1
    assert abs(db1 - db0) < 2.5


def test_mono_angry_vs_calm() -> None:
    calm, sr = sf.read(SAMPLES / "customer_calm_16k.wav", dtype="float32")
    angry, _ = sf.read(SAMPLES / "customer_angry_16k.wav", dtype="float32")
    calm_s, angry_s = sm.trim_silence(calm, sr), sm.trim_silence(angry, sr)
    assert msa.median_f0(angry_s, sr) > 1.2 * msa.median_f0(calm_s, sr)
    assert msa.active_rms_db(angry_s, sr) > msa.active_rms_db(calm_s, sr) + 3.0
