"""AcousticAngerModel: sanity on real speakers and on the shipped sample audio, format checks.

No score is pinned: the tests check orderings (angry above calm) that any usable model must get right.
"""
from __future__ import annotations

import csv
import json
import math
from collections import defaultdict

import numpy as np
import pytest
import soundfile as sf
from helpers_audio import stream

from pipelines.audio.anger_model import CNN_FEATURE, AcousticAngerModel
from pipelines.audio.baseline import SpeakerBaseline
from pipelines.errors import ModelNotAvailableError
from pipelines.settings import REPO_ROOT, Settings

SAMPLES = REPO_ROOT / "sample_audio"
# corpora whose speaker ids are persons (URDU ids are not; the Taiwan set has none)
SPEAKER_CORPORA = ("emodb", "nemo-polish", "ased-amharic", "ravdess-speech", "savee", "korean-emotiontts")
PER_CLASS = 4  # angry and neutral clips scored per speaker (seeded choice), to keep the test short
OPENING_CLIPS = 8  # the speaker's neutral clips that may form the opening (never the scored one)


@pytest.fixture(scope="module")
def model():
    return AcousticAngerModel.load(Settings().models_dir / "acoustic-anger" / "model.json")


def _read(path):
    x, sr = sf.read(str(path), dtype="float64", always_2d=True)
    return x.mean(axis=1), sr


def _speakers(data_dir):
    out = defaultdict(lambda: {"angry": [], "neutral": []})
    for c in SPEAKER_CORPORA:
        with open(data_dir / "speech" / c / "manifest.csv", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                e = {"anger": "angry", "calm": "neutral"}.get(r["emotion"], r["emotion"])
                if e in ("angry", "neutral"):
                    out[f"{c}:{r['speaker']}"][e].append(data_dir / "speech" / c / r["path"])
    return {k: v for k, v in out.items() if v["angry"] and len(v["neutral"]) >= 2}


def _call_score(model, opening_feats, clip_feats):
    """Mean score over a clip's chunks after the speaker's calm opening, as the service scores a call."""
    b = SpeakerBaseline(baseline_seconds=20.0)
    for f in opening_feats:
        b.update(f)
    v = []
    for f in clip_feats:
        b.update(f)
        s = model.score(f, b.delta(f))
        if s is not None:
            v.append(s)
    return float(np.mean(v)) if v else None


def _cold_clip(model, feats):
    """Cold clip score as in training.audio.loco: mean of the first two chunks with speech, no baseline."""
    v = [x for x in (model.score(f, None) for f in feats) if x is not None][:2]
    return float(np.mean(v)) if v else None


@pytest.fixture(scope="module")
def speaker_feats(data_dir):
    spk = _speakers(data_dir)
    return spk, {p: stream(*_read(p)) for d in spk.values() for e in ("angry", "neutral") for p in d[e]}


def test_every_real_speaker_scores_angry_above_neutral(model, speaker_feats):
    """Every speaker of the speaker corpora with angry and neutral clips (112): with no baseline, the mean score of
    their angry clips is above that of their neutral clips."""
    spk, feats = speaker_feats
    assert len(spk) > 100
    worse = []
    for name, d in sorted(spk.items()):
        mean = {e: np.mean([s for p in d[e] if (s := _cold_clip(model, feats[p])) is not None])
                for e in ("angry", "neutral")}
        if not mean["angry"] > mean["neutral"]:
            worse.append((name, round(mean["angry"], 3), round(mean["neutral"], 3)))
    assert not worse, f"speakers whose angry clips do not score above their neutral ones: {worse}"


def test_speakers_after_a_calm_opening(model, speaker_feats):
    """The same after a calm opening of the speaker's other neutral clips, as in a call: at least 97 % of the
    speakers (one nEMO speaker, WR0, is the known exception: the corpus is level-normalised, so the loudness
    delta argues against its anger — see MODEL_CARD.md)."""
    spk, feats = speaker_feats
    rng = np.random.default_rng(0)
    worse = []
    for name, d in sorted(spk.items()):
        pick = {e: [d[e][i] for i in sorted(rng.permutation(len(d[e]))[:PER_CLASS])] for e in ("angry", "neutral")}
        calm = d["neutral"][:OPENING_CLIPS]
        mean = {}
        for e in ("angry", "neutral"):
            v = []
            for p in pick[e]:
                opening = [f for q in calm if q != p for f in feats[q]]
                s = _call_score(model, opening, feats[p])
                if s is not None:
                    v.append(s)
            mean[e] = np.mean(v)
        if not mean["angry"] > mean["neutral"]:
            worse.append((name, round(mean["angry"], 3), round(mean["neutral"], 3)))
    assert len(worse) <= 0.03 * len(spk), f"speakers whose angry clips do not score above their neutral ones: {worse}"


def test_sample_angry_customer_above_calm(model):
    cold = {}
    for name in ("customer_calm_16k", "customer_angry_16k"):
        x, sr = _read(SAMPLES / f"{name}.wav")
        s = [model.score(f, None) for f in stream(x, sr)]
        cold[name] = np.mean([v for v in s if v is not None])
    assert cold["customer_angry_16k"] > cold["customer_calm_16k"]


def test_escalating_call_score_rises_with_the_customers_anger(model):
    """The customer channel of the escalating sample call, streamed as the service does (1 s chunks, baseline
    of settings.baseline_seconds): the acoustic score over the angry turns is above that over the calm turns."""
    meta = json.loads((SAMPLES / "call_escalating_8k.json").read_text(encoding="utf-8"))
    x, sr = sf.read(str(SAMPLES / "call_escalating_8k.wav"), dtype="float64", always_2d=True)
    x = x[:, meta["channels"]["customer"]]
    b = SpeakerBaseline(Settings().analysis.baseline_seconds)
    scores = []
    for i, f in enumerate(stream(x, sr)):
        b.update(f)
        scores.append((i + 0.5, model.score(f, b.delta(f))))
    turns = [t for t in meta["turns"] if t["role"] == "customer"]

    def during(ts):
        return [s for t, s in scores if s is not None and any(u["start"] <= t <= u["end"] + 0.5 for u in ts)]

    calm, angry = during(turns[:3]), during(turns[-3:])
    assert len(calm) >= 10 and len(angry) >= 6
    assert np.mean(angry) > np.mean(calm)
    assert np.median(angry) > np.median(calm)


def test_no_speech_gives_none(model):
    f = stream(np.zeros(16000), 16000)[0]
    assert model.score(f, None) is None
    assert model.explain(f, None) == {}


@pytest.mark.parametrize("relative", [False, True])
def test_explain_matches_the_score(model, relative):
    x, sr = _read(SAMPLES / "customer_angry_16k.wav")
    fs = stream(x, sr)
    b = SpeakerBaseline(baseline_seconds=3.0, min_ready_s=3.0)
    for f in fs[:4]:
        b.update(f)
    f = fs[5]
    d = b.delta(f) if relative else None
    assert (d is not None) == relative
    p = model.score(f, d)
    nets = [model.absolute] if not relative else [model.relative] + ([model.absolute] if model.blend_absolute else [])
    contrib = model.explain(f, d)
    cnn = model.cnn_logit(f) is not None
    assert cnn == (model.cnn is not None)  # a 1 s chunk of speech: the CNN member (when shipped) scores it
    assert contrib and set(contrib) == {n for m in nets for n in m.features} | ({CNN_FEATURE} if cnn else set())
    logit = math.log(p / (1 - p))
    exact = all(len(m.layers) == 1 for m in nets)
    # exact for linear networks, integrated gradients (approximate completeness) otherwise
    assert sum(contrib.values()) + model.logit_at_mean(relative, cnn) == pytest.approx(logit, abs=1e-9 if exact else 0.3)


def test_missing_or_malformed_model_raises(tmp_path, model):
    with pytest.raises(ModelNotAvailableError):
        AcousticAngerModel.load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ModelNotAvailableError):
        AcousticAngerModel.load(tmp_path / "bad.json")
    spec = json.loads(json.dumps(model.spec))
    spec["models"]["absolute"]["layers"][0][0] = spec["models"]["absolute"]["layers"][0][0][:-1]
    (tmp_path / "short.json").write_text(json.dumps(spec))
    with pytest.raises(ModelNotAvailableError):
        AcousticAngerModel.load(tmp_path / "short.json")
    spec = json.loads(json.dumps(model.spec))
    spec["format"] = "nuqi-acoustic-anger-logreg-v1"
    (tmp_path / "old.json").write_text(json.dumps(spec))
    with pytest.raises(ModelNotAvailableError):
        AcousticAngerModel.load(tmp_path / "old.json")
