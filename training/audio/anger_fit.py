"""Fit the acoustic anger model (cold + relative networks) on cached chunk features.

Rows are 1 s chunks with speech (``min_speech_s``).  Cold rows: every chunk, no baseline.  Relative rows: the
chunks of every clip of a speaker corpus after a calm opening of the same speaker (``training.audio.loco``
protocol) whose length is drawn uniformly from ``open_range`` seconds, so the model sees baselines from
barely-ready to full.  Level deltas (``d_loudness_db``) are withheld (missing → imputed) on the corpora whose
files are level-normalised (EmoDB, nEMO, the Korean set), so the model learns level only from corpora that
keep it.  Weights: every corpus counts the same; inside a corpus angry 0.5, neutral/calm 0.3, other emotions
0.2 (neutral 0.5 where there are none).  Labels: angry vs everything else.  The Taiwan set is never trained on.
"""
from __future__ import annotations

import logging
import random
import warnings
from collections import defaultdict

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

from pipelines.audio.anger_model import (
    ABS_FEATURES,
    FORMAT,
    MIN_SPEECH_S,
    REL_FEATURES,
    STACK_FEATURE,
    AcousticAngerModel,
    feature_vector,
)
from pipelines.audio.baseline import SpeakerBaseline
from pipelines.audio.stream import ChunkFeatures

logger = logging.getLogger("nuqi.training.anger_fit")

COLD = list(ABS_FEATURES)
REL = COLD + list(REL_FEATURES)
LEVEL_NORMALISED = ("emodb", "nemo-polish", "korean-emotiontts")
BASELINE_SECONDS = 20.0
MIN_READY_S = 5.0
SHRINK_S = 0.0
SHARE = {"angry": 0.5, "calm": 0.3, "other": 0.2}


def baseline() -> SpeakerBaseline:
    return SpeakerBaseline(baseline_seconds=BASELINE_SECONDS, min_ready_s=MIN_READY_S, shrink_s=SHRINK_S)


def _group(r) -> str:
    return "angry" if r.angry else "calm" if r.calm else "other"


def _weights(recs, counts_per_rec: dict[str, int]) -> dict[str, float]:
    """per-record weight of each of its rows: corpora equal; groups by SHARE inside a corpus."""
    tot: dict[tuple[str, str], int] = defaultdict(int)
    for r in recs:
        tot[(r.corpus, _group(r))] += counts_per_rec.get(r.id, 0)
    out = {}
    for r in recs:
        c = r.corpus
        share = dict(SHARE)
        if tot[(c, "other")] == 0:
            share = {"angry": 0.5, "calm": 0.5, "other": 0.0}
        n = tot[(c, _group(r))]
        out[r.id] = share[_group(r)] / n if n else 0.0
    return out


def calm_by_speaker(recs) -> dict[str, list]:
    calm = defaultdict(list)
    for r in recs:
        if r.speaker and r.calm:
            calm[r.speaker].append(r)
    return calm


def opened_baseline(r, calm: dict[str, list], seed: int,
                    open_range: tuple[float, float] = (5.0, 25.0)) -> SpeakerBaseline | None:
    """The speaker baseline after a seeded calm opening of ``r``'s speaker (their other calm clips, a random
    length in ``open_range`` seconds); None when the speaker has no other calm clip."""
    pool = [c for c in calm.get(r.speaker, []) if c.id != r.id] if r.speaker else []
    if not pool:
        return None
    rnd = random.Random(f"fit{seed}:{r.id}")
    rnd.shuffle(pool)
    secs = rnd.uniform(*open_range)
    b = baseline()
    t = 0.0
    for c in pool:
        if t >= secs:
            break
        for f in c.chunks:
            b.update(f)
        t += c.duration_s
    return b


def build_rows(recs, seed: int = 0, open_range: tuple[float, float] = (5.0, 25.0)):
    """(Xc, yc, wc, Xr, yr, wr) for the cold and the relative model."""
    xc, idc = [], []
    for r in recs:
        for f in r.chunks:
            if f.speech_s >= MIN_SPEECH_S:
                xc.append(feature_vector(COLD, f, None))
                idc.append(r.id)
    calm = calm_by_speaker(recs)
    xr, idr = [], []
    iloud = REL.index("d_loudness_db")
    for r in recs:
        b = opened_baseline(r, calm, seed, open_range)
        if b is None:
            continue
        for f in r.chunks:
            b.update(f)
            d = b.delta(f)
            if f.speech_s >= MIN_SPEECH_S and d is not None:
                v = feature_vector(REL, f, d)
                if r.corpus in LEVEL_NORMALISED:
                    v[iloud] = np.nan
                xr.append(v)
                idr.append(r.id)
    by_id = {r.id: r for r in recs}

    def pack(x, ids):
        cnt: dict[str, int] = defaultdict(int)
        for i in ids:
            cnt[i] += 1
        w = _weights(recs, cnt)
        return (np.asarray(x), np.array([by_id[i].angry for i in ids], dtype=int), np.array([w[i] for i in ids]),
                np.array(ids))

    return pack(xc, idc), pack(xr, idr)


def _standardise(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean = np.zeros(x.shape[1])
    scale = np.ones(x.shape[1])
    for j in range(x.shape[1]):
        ok = np.isfinite(x[:, j])
        if ok.sum() > 1:
            mean[j] = np.average(x[ok, j], weights=w[ok] + 1e-12)
            scale[j] = max(float(np.sqrt(np.average((x[ok, j] - mean[j]) ** 2, weights=w[ok] + 1e-12))), 1e-6)
    z = (x - mean) / scale
    z = np.where(np.isfinite(z), np.clip(z, -5, 5), 0.0)
    return z, mean, scale


def fit_net(x: np.ndarray, y: np.ndarray, w: np.ndarray, names: list[str], kind: str = "mlp", hidden: int = 32,
            alpha: float = 1e-2, c_reg: float = 0.1, seed: int = 0) -> dict:
    z, mean, scale = _standardise(x, w)
    sw = w / w.mean()
    if kind == "logreg":
        m = LogisticRegression(C=c_reg, max_iter=3000)
        m.fit(z, y, sample_weight=sw)
        layers = [(m.coef_.T.tolist(), m.intercept_.tolist())]
    else:
        m = MLPClassifier(hidden_layer_sizes=(hidden,), activation="relu", alpha=alpha, max_iter=300,
                          learning_rate_init=1e-3, batch_size=min(256, len(z)), random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            m.fit(z, y, sample_weight=sw)
        layers = [(wt.tolist(), b.tolist()) for wt, b in zip(m.coefs_, m.intercepts_)]
    return {"features": names, "mean": mean.tolist(), "scale": scale.tolist(), "layers": layers, "calib": [1.0, 0.0]}


def fit(recs, seed: int = 0, kind: str = "mlp", hidden: int = 32, alpha: float = 1e-2, c_reg: float = 0.1,
        rel_kind: str | None = None, cold_features: list[str] | None = None,
        rel_features: list[str] | None = None, stack: bool = False, rel_deltas_only: bool = False,
        drop: tuple[str, ...] = (), blend: float = 0.0) -> AcousticAngerModel:
    """Fit both networks on ``recs``; ``drop`` removes features from both, ``rel_deltas_only`` keeps only the
    speaker deltas in the relative model (use with ``stack`` so it still sees the cold evidence)."""
    (xc, yc, wc, _), (xr, yr, wr, _) = build_rows(recs, seed)
    cf = [n for n in (cold_features or COLD) if n not in drop]
    rf = [n for n in (rel_features or REL) if n not in drop and not (rel_deltas_only and n in ABS_FEATURES)]
    ic = [COLD.index(n) for n in cf]
    xr_cold = xr[:, [REL.index(n) for n in cf]]  # the cold inputs of the relative rows' chunks
    xr = xr[:, [REL.index(n) for n in rf]]
    absolute = fit_net(xc[:, ic], yc, wc, cf, kind, hidden, alpha, c_reg, seed)
    models = {"absolute": absolute}
    if stack:
        # a network's logit on its own training rows is optimistic (a hidden layer memorises); stacking on it
        # would teach the relative model to over-trust it, so a non-linear cold model gets a linear stack base
        base = absolute
        if kind != "logreg":
            base = models["stack_base"] = fit_net(xc[:, ic], yc, wc, cf, "logreg", hidden, alpha, c_reg, seed)
        a = AcousticAngerModel({"format": FORMAT, "models": {"absolute": base, "relative": base}}).absolute
        xr = np.column_stack([xr, a.raw_logit(a.z(xr_cold))])
        rf.append(STACK_FEATURE)
    models["relative"] = fit_net(xr, yr, wr, rf, rel_kind or kind, hidden, alpha, c_reg, seed)
    return AcousticAngerModel({"format": FORMAT, "min_speech_s": MIN_SPEECH_S, "models": models,
                               "blend_absolute": blend})


__all__ = ["fit", "baseline", "build_rows", "fit_net", "COLD", "REL", "ChunkFeatures"]
