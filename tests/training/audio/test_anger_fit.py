"""training.audio: telephone channel and the anger-model fit, on real EmoDB clips (skips without the data)."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf
from sklearn.metrics import roc_auc_score

from pipelines.audio.anger_model import AcousticAngerModel
from pipelines.audio.stream import ChunkFeatures
from training.audio import anger_fit, telephone
from training.audio.feature_cache import stream_chunks
from training.audio.loco import Rec

SPEAKERS = ("03", "08", "09", "10")


@pytest.fixture(scope="module")
def recs(data_dir):
    root = data_dir / "speech" / "emodb"
    out = []
    for r in csv.DictReader(open(root / "manifest.csv", encoding="utf-8")):
        if r["speaker"] in SPEAKERS and r["emotion"] in ("anger", "neutral", "happiness"):
            x, sr = sf.read(root / r["path"], dtype="float64")
            emo = {"anger": "angry", "happiness": "happy"}.get(r["emotion"], r["emotion"])
            out.append(Rec(f"emodb/{r['path']}", "emodb", emo, f"emodb:{r['speaker']}", emo == "neutral",
                           len(x) / sr, [ChunkFeatures.from_dict(c) for c in stream_chunks(x, sr, lead_s=0)],
                           person=r["speaker"]))
    return out


def test_codec_round_trip_keeps_length_and_signal(data_dir):
    x, sr = sf.read(data_dir / "speech" / "emodb" / "wav" / "03a01Wa.wav", dtype="float64")
    x8 = x[::2] * 0.5
    for name in telephone.CODECS:
        y = telephone.codec(x8, name)
        assert y.size == x8.size
        if name in ("ul", "al"):  # waveform codecs: sample-aligned
            assert np.corrcoef(x8, y)[0, 1] > 0.99


def test_channel_is_seeded_per_call():
    a, b = telephone.channel_for("emodb:03"), telephone.channel_for("emodb:03")
    assert a == b and a != telephone.channel_for("emodb:08")
    assert -12 <= a.gain_db <= 12 and 10 <= a.snr_db <= 30 and a.codec in telephone.CODECS


@pytest.mark.parametrize("kind", ["logreg", "mlp"])
def test_fit_serves_what_it_learnt(recs, kind):
    m = anger_fit.fit(recs, kind=kind, hidden=8, alpha=1.0, stack=True, rel_deltas_only=True, blend=0.3)
    again = AcousticAngerModel(json.loads(json.dumps(m.spec)))
    cold = {}
    for r in recs:
        s = [m.score(f, None) for f in r.chunks]
        s2 = [again.score(f, None) for f in r.chunks]
        assert s == s2  # the JSON round trip serves the same numbers
        v = [x for x in s if x is not None]
        if v:
            cold[r.id] = (r.angry, float(np.mean(v)))
    y = [a for a, _ in cold.values()]
    p = [s for _, s in cold.values()]
    assert 0.0 < min(p) and max(p) < 1.0
    assert roc_auc_score(y, p) > 0.85  # in-sample: angry vs neutral + happy of the training speakers
    assert m.relative.features[-1] == "cold_logit" and all(n.startswith("d_") for n in m.relative.features[:-1])
