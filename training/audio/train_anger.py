"""Train + evaluate the acoustic anger model (``models/acoustic-anger/model.json``).

Data (../shared/data/speech via settings.data_dir):
  * EmoDB (German, acted, 10 speakers): anger = 1, the six other emotions = 0.
  * TW Mandarin valence (652 clips, no speaker ids): Negative = 1, Natural and Positive = 0,
    weighted 0.5 (Negative mixes anger with sadness etc.).
Every clip is streamed through :class:`SpeakerStream` in 1 s chunks under two conditions,
16 kHz as stored and 8 kHz telephone band (soxr + 300–3400 Hz); each chunk with speech is
one training row (the model scores chunks; clip score = mean chunk score).

Speaker baseline (how the live service builds it, from calm speech):
  * EmoDB: the speaker's *neutral* clips with a different sentence than the scored clip
    (so a clip never sits in its own baseline, and no sentence is shared), fed chunk by chunk
    into :class:`SpeakerBaseline` and frozen (≈ 12–14 s of speech, close to the live 15 s).
    Neutral rather than all clips: the live baseline is the calm opening of a call; a baseline
    over all clips would already contain the anger.
  * TW: no speaker ids, so the "speaker" is the gender group (from the filename): its
    Natural clips outside the scored clip's CV group.  A crude multi-speaker baseline.

Evaluation: EmoDB leave-one-speaker-out (train on the 9 other speakers + all TW), TW grouped
5-fold CV with groups = gender × blocks of 20 consecutive file numbers (neighbouring files tend
to come from the same source) (train on those folds + all EmoDB).  Both conditions in training.

    .venv/bin/python -m training.audio.train_anger            # evaluate, fit on all, write model.json
    .venv/bin/python -m training.audio.train_anger --no-write # evaluate only
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import os
import pickle
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from pipelines.audio.anger_model import (
    ABS_FEATURES,
    FORMAT,
    MIN_SPEECH_S,
    REL_FEATURES,
    AcousticAngerModel,
    feature_vector,
)
from pipelines.audio.baseline import SpeakerBaseline
from pipelines.audio.stream import ChunkFeatures, SpeakerStream
from pipelines.settings import REPO_ROOT, get_settings
from training.audio.eval_rate import telephone

logger = logging.getLogger("nuqi.audio.train_anger")

CONDITIONS = (16000, 8000)
TW_WEIGHT = 0.5
CHUNK_S = 1.0
CACHE = Path("/tmp/nuqi_acoustic_feats.pkl")


@dataclass
class Clip:
    dataset: str  # emodb | tw
    path: Path
    label: int  # 1 anger / negative
    cls: str  # emotion or valence class
    speaker: str  # EmoDB speaker id or TW gender
    group: str  # CV group
    text: str  # EmoDB text code ('' for TW)
    calm: bool  # eligible for the baseline (EmoDB neutral, TW natural)
    chunks: dict[int, list[ChunkFeatures]] = field(default_factory=dict)


def load_clips() -> list[Clip]:
    root = get_settings().data_dir / "speech"
    clips: list[Clip] = []
    with open(root / "emodb" / "manifest.csv", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            clips.append(Clip("emodb", root / "emodb" / r["path"], int(r["emotion"] == "anger"), r["emotion"],
                              r["speaker"], "emodb-" + r["speaker"], r["text_code"], r["emotion"] == "neutral"))
    with open(root / "tw-mandarin-valence" / "manifest.csv", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            m = re.search(r"(\d+)\.wav$", r["path"])
            idx = int(m.group(1)) if m else 0
            clips.append(Clip("tw", root / "tw-mandarin-valence" / r["path"], int(r["valence_class"] == "negative"),
                              r["valence_class"], "tw-" + r["gender"], f"tw-{r['gender']}-{idx // 20}", "",
                              r["valence_class"] == "natural"))
    return clips


def stream_chunks(x: np.ndarray, sr: int, chunk_s: float = CHUNK_S) -> list[ChunkFeatures]:
    s = SpeakerStream(sr)
    n = int(round(chunk_s * sr))
    return [s.process(x[i : i + n]) for i in range(0, len(x), n)]


def _pipeline_fingerprint() -> str:
    """Hash of the feature-extraction sources: the feature cache is reused only if unchanged."""
    h = hashlib.sha256()
    audio = REPO_ROOT / "pipelines" / "audio"
    for path in [audio / n for n in ("stream.py", "vad.py", "pitch.py", "loudness.py", "spectral.py", "rate.py")] + [
            Path(__file__).resolve().with_name("eval_rate.py")]:
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def extract(clips: list[Clip]) -> None:
    key = {str(c.path): c for c in clips}
    fp = _pipeline_fingerprint()
    if CACHE.exists():
        cached = pickle.loads(CACHE.read_bytes())
        if cached.get("fingerprint") == fp and set(cached["chunks"]) == set(key):
            for p, ch in cached["chunks"].items():
                key[p].chunks = ch
            logger.info("features from cache %s", CACHE)
            return
    t0 = time.time()
    for c in clips:
        x, fs = sf.read(c.path, dtype="float64")
        if x.ndim > 1:
            x = x.mean(axis=1)
        if fs != 16000:
            x = soxr.resample(x, fs, 16000)
        c.chunks = {16000: stream_chunks(x, 16000), 8000: stream_chunks(telephone(x), 8000)}
    logger.info("extracted features of %d clips in %.1f s", len(clips), time.time() - t0)
    CACHE.write_bytes(pickle.dumps({"fingerprint": fp, "chunks": {str(c.path): c.chunks for c in clips}}))


def baseline_for(c: Clip, clips_by_spk: dict[str, list[Clip]], sr: int) -> SpeakerBaseline | None:
    b = SpeakerBaseline(baseline_seconds=float("inf"))
    for o in clips_by_spk[c.speaker]:
        if not o.calm or o is c:
            continue
        if c.dataset == "emodb" and o.text == c.text:
            continue
        if c.dataset == "tw" and o.group == c.group:
            continue
        for f in o.chunks[sr]:
            b.update(f)
    if b.progress_s <= 0:
        return None
    b.finalize()
    return b


@dataclass
class Rows:
    xa: np.ndarray
    xr: np.ndarray
    y: np.ndarray
    w: np.ndarray
    clip: np.ndarray  # clip index
    sr: np.ndarray


def build_rows(clips: list[Clip]) -> Rows:
    by_spk: dict[str, list[Clip]] = {}
    for c in clips:
        by_spk.setdefault(c.speaker, []).append(c)
    abs_names, rel_names = list(ABS_FEATURES), list(REL_FEATURES)
    xa, xr, y, w, ci, srs = [], [], [], [], [], []
    for i, c in enumerate(clips):
        for sr in CONDITIONS:
            b = baseline_for(c, by_spk, sr)
            for f in c.chunks[sr]:
                if f.speech_s < MIN_SPEECH_S:
                    continue
                d = b.delta(f) if b is not None else None
                xa.append(feature_vector(abs_names, f, None))
                xr.append(feature_vector(rel_names, f, d) if d is not None else np.full(len(rel_names), np.nan))
                y.append(c.label)
                w.append(1.0 if c.dataset == "emodb" else TW_WEIGHT)
                ci.append(i)
                srs.append(sr)
    return Rows(np.array(xa), np.array(xr), np.array(y), np.array(w), np.array(ci), np.array(srs))


# coefficients constrained to be >= 0 (in standardised units): cues whose direction is known from
# the literature on vocal effort/anger, so the shipped model can never say "louder = calmer"
# (TW "negative" also contains sad speech, which otherwise pulls some signs the wrong way).
# d_speech_rate_pct too: EmoDB's acted anger is *slower* than its neutral sentences, which would teach
# "faster than your opening = calmer" — the opposite of what 听语速 teaches for complaining callers.
NONNEG = {"f0_range_st", "spectral_tilt_db", "hf_logit", "d_f0_st", "d_loudness_db", "d_hf_ratio_db",
          "d_spectral_tilt_db", "d_f0_range_st", "d_speech_rate_pct"}


def fit_logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray, names: list[str], c_reg: float = 0.3) -> dict:
    """Weighted, class-balanced, L2-regularised logistic regression with sign constraints (L-BFGS-B)."""
    from scipy.optimize import minimize

    mean = np.nanmean(x, axis=0)
    scale = np.nanstd(x, axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    z = (x - mean) / scale
    z = np.where(np.isfinite(z), np.clip(z, -5, 5), 0.0)
    ww = w.astype(float).copy()
    for k in (0, 1):
        m = y == k
        ww[m] *= w.sum() / (2.0 * w[m].sum())
    ww /= ww.sum()
    lam = 1.0 / (c_reg * len(y))
    d = z.shape[1]

    def loss(p: np.ndarray) -> tuple[float, np.ndarray]:
        s = z @ p[:d] + p[d]
        q = 1.0 / (1.0 + np.exp(-s))
        ll = np.logaddexp(0.0, s) - y * s
        g = ww * (q - y)
        return float(ww @ ll + 0.5 * lam * p[:d] @ p[:d]), np.concatenate([z.T @ g + lam * p[:d], [g.sum()]])

    bounds = [(0.0, None) if n in NONNEG else (None, None) for n in names] + [(None, None)]
    r = minimize(loss, np.zeros(d + 1), jac=True, method="L-BFGS-B", bounds=bounds)
    return {"features": names, "mean": mean.tolist(), "scale": scale.tolist(),
            "coef": r.x[:d].tolist(), "intercept": float(r.x[d])}


def deploy_shift(y: np.ndarray, w: np.ndarray, deploy_prior: float) -> float:
    """Logit shift from the (weighted) training prevalence of anger to the deployment prevalence.

    The corpora are ~30 % anger; in live calls far fewer seconds are angry.  Without the shift an
    uncertain model reports 0.5-0.8 for ordinary speech.  The default deployment prior (0.12) is the
    anger share of CPED-valid utterances, the same prior the fusion layer uses (models/fusion).
    """
    pi = float(np.sum(w * y) / np.sum(w))
    return float(np.log(deploy_prior / (1 - deploy_prior)) - np.log(pi / (1 - pi)))


def predict(m: dict, x: np.ndarray) -> np.ndarray:
    z = (x - np.asarray(m["mean"])) / np.asarray(m["scale"])
    z = np.where(np.isfinite(z), np.clip(z, -5, 5), 0.0)
    return 1.0 / (1.0 + np.exp(-(z @ np.asarray(m["coef"]) + m["intercept"])))


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([pos, neg]))  # average ranks for ties
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def crossval(clips: list[Clip], rows: Rows) -> tuple[dict, dict]:
    """Out-of-fold chunk scores of both models (``oof[...]``) and the fold models (``oof["models"]``)."""
    fold = np.array([c.group if c.dataset == "emodb" else "" for c in clips], dtype=object)
    tw_groups = sorted({c.group for c in clips if c.dataset == "tw"})
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(tw_groups))
    tw_fold = {g: f"tw-fold{int(perm[i]) % 5}" for i, g in enumerate(tw_groups)}
    for i, c in enumerate(clips):
        if c.dataset == "tw":
            fold[i] = tw_fold[c.group]
    row_fold = fold[rows.clip]
    oof = {"absolute": np.full(len(rows.y), np.nan), "relative": np.full(len(rows.y), np.nan)}
    models: dict[str, dict] = {}
    has_rel = np.isfinite(rows.xr).any(axis=1)
    for f in sorted(set(fold)):
        te = row_fold == f
        tr = ~te
        ma = fit_logistic(rows.xa[tr], rows.y[tr], rows.w[tr], list(ABS_FEATURES))
        trr = tr & has_rel
        mr = fit_logistic(rows.xr[trr], rows.y[trr], rows.w[trr], list(REL_FEATURES))
        oof["absolute"][te] = predict(ma, rows.xa[te])
        oof["relative"][te] = predict(mr, rows.xr[te])
        models[f] = {"absolute": ma, "relative": mr}
    return oof, models


def report(clips: list[Clip], rows: Rows, oof: dict) -> dict:
    out: dict = {}
    cls = np.array([c.cls for c in clips])
    ds = np.array([c.dataset for c in clips])
    for model, sc in oof.items():
        for sr in CONDITIONS:
            m = rows.sr == sr
            # clip score = mean over the clip's chunks
            clip_scores = {}
            for ci in np.unique(rows.clip[m]):
                s = sc[m & (rows.clip == ci)]
                s = s[np.isfinite(s)]
                if s.size:
                    clip_scores[int(ci)] = float(s.mean())
            idx = np.array(list(clip_scores))
            val = np.array([clip_scores[i] for i in idx])

            def a(pos_mask, neg_mask, val=val, idx=idx):
                return round(auc(val[pos_mask[idx]], val[neg_mask[idx]]), 3)

            em = ds == "emodb"
            tw = ds == "tw"
            r = {
                "emodb_anger_vs_neutral": a(em & (cls == "anger"), em & (cls == "neutral")),
                "emodb_anger_vs_happiness": a(em & (cls == "anger"), em & (cls == "happiness")),
                "emodb_anger_vs_rest": a(em & (cls == "anger"), em & (cls != "anger")),
                "tw_negative_vs_natural": a(tw & (cls == "negative"), tw & (cls == "natural")),
                "tw_negative_vs_rest": a(tw & (cls == "negative"), tw & (cls != "negative")),
            }
            # chunk-level AUC on EmoDB anger vs neutral
            cm = m & np.isfinite(sc)
            ccls = cls[rows.clip]
            r["emodb_anger_vs_neutral_chunk"] = round(
                auc(sc[cm & (ccls == "anger") & (ds[rows.clip] == "emodb")],
                    sc[cm & (ccls == "neutral") & (ds[rows.clip] == "emodb")]), 3)
            out[f"{model}@{sr}"] = r
    return out


def simulate_calls(clips: list[Clip], fold_models: dict, baseline_s: float = 8.0) -> dict:
    """Live-like check on EmoDB: one continuous stream per held-out speaker.

    Opening = the speaker's neutral clips of 7 of the 10 sentences (≈ 10 s of speech; the
    baseline freezes after ``baseline_s`` s of speech, less than the live 15 s because EmoDB has
    only ~16 s of neutral audio per speaker); body = all the speaker's other clips (every emotion,
    sentences shuffled with a fixed seed), streamed through the *same* SpeakerStream in 1 s chunks
    and scored the way the service does (absolute model until the baseline is ready, then the
    relative one), with the LOSO model that never saw the speaker.  EmoDB clips are exactly
    2.0 s, so chunk k belongs to clip k // 2 of the sequence.
    """

    rng = np.random.default_rng(0)
    out: dict = {}
    for sr in CONDITIONS:
        pos_n, neg_n, pos_r, neg_r, ready_at = [], [], [], [], []
        for spk in sorted({c.speaker for c in clips if c.dataset == "emodb"}):
            own = [c for c in clips if c.dataset == "emodb" and c.speaker == spk]
            texts = sorted({c.text for c in own if c.calm})
            opening = [c for c in own if c.calm and c.text in texts[:7]]
            body = [c for c in own if c not in opening]
            body = [body[i] for i in rng.permutation(len(body))]
            m = fold_models[f"emodb-{spk}"]
            model = AcousticAngerModel({"format": FORMAT, "min_speech_s": MIN_SPEECH_S, "models": m})
            stream = SpeakerStream(sr)
            base = SpeakerBaseline(baseline_seconds=baseline_s)
            seq = opening + body
            k = 0
            ready_k = None
            for c in seq:
                x, fs = sf.read(c.path, dtype="float64")
                x = telephone(x) if sr == 8000 else x
                for i in range(0, len(x), sr):
                    f = stream.process(x[i : i + sr])
                    base.update(f)
                    if base.ready and ready_k is None:
                        ready_k = k + 1
                    score = model.score(f, base.delta(f))
                    clip = seq[min(k // 2, len(seq) - 1)]
                    k += 1
                    if score is None or clip in opening or not base.ready:
                        continue
                    if clip.cls == "anger":
                        pos_n.append(score)
                        pos_r.append(score)
                    elif clip.cls == "neutral":
                        neg_n.append(score)
                        neg_r.append(score)
                    else:
                        neg_r.append(score)
            if ready_k is not None:
                ready_at.append(ready_k)
        out[f"sim@{sr}"] = {
            "anger_vs_neutral_chunk": round(auc(np.array(pos_n), np.array(neg_n)), 3),
            "anger_vs_rest_chunk": round(auc(np.array(pos_r), np.array(neg_r)), 3),
            "chunks": len(pos_r) + len(neg_r),
            "baseline_ready_after_chunks_median": float(np.median(ready_at)) if ready_at else None,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="train the acoustic anger model")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--deploy-prior", type=float, default=0.12,
                    help="anger prevalence the shipped scores are calibrated to (see deploy_shift)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--hold-out", default="16",
                    help="EmoDB speaker(s), comma-separated, left out of the shipped model so tests can score an "
                         "unseen speaker")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    clips = load_clips()
    extract(clips)
    rows = build_rows(clips)
    logger.info("rows: %d (anger %d)", len(rows.y), int(rows.y.sum()))
    oof, fold_models = crossval(clips, rows)
    metrics = report(clips, rows, oof)
    metrics.update(simulate_calls(clips, fold_models))
    print("| model @ rate | EmoDB anger vs neutral (clip) | EmoDB anger vs rest (clip) "
          "| EmoDB anger vs happiness (clip) | EmoDB anger vs neutral (1 s chunk) | TW negative vs natural (clip) "
          "| TW negative vs rest (clip) |")
    print("|---|---|---|---|---|---|---|")
    for k, r in metrics.items():
        if k.startswith("sim@"):
            continue
        print(f"| {k} | {r['emodb_anger_vs_neutral']} | {r['emodb_anger_vs_rest']} | {r['emodb_anger_vs_happiness']} "
              f"| {r['emodb_anger_vs_neutral_chunk']} | {r['tw_negative_vs_natural']} | {r['tw_negative_vs_rest']} |")
    print()
    print("| simulated call @ rate | body chunks | anger vs neutral (1 s chunk) | anger vs rest (1 s chunk) "
          "| baseline ready after (chunks, median) |")
    print("|---|---|---|---|---|")
    for k, r in metrics.items():
        if k.startswith("sim@"):
            print(f"| {k[4:]} Hz | {r['chunks']} | {r['anger_vs_neutral_chunk']} | {r['anger_vs_rest_chunk']} "
                  f"| {r['baseline_ready_after_chunks_median']} |")
    if a.no_write:
        return 0
    held = [h for h in a.hold_out.split(",") if h]
    keep = ~np.isin(np.array([f"{clips[i].dataset}:{clips[i].speaker}" for i in rows.clip]),
                    [f"emodb:{h}" for h in held])
    rows = Rows(rows.xa[keep], rows.xr[keep], rows.y[keep], rows.w[keep], rows.clip[keep], rows.sr[keep])
    has_rel = np.isfinite(rows.xr).any(axis=1)
    models = {
        "absolute": fit_logistic(rows.xa, rows.y, rows.w, list(ABS_FEATURES)),
        "relative": fit_logistic(rows.xr[has_rel], rows.y[has_rel], rows.w[has_rel], list(REL_FEATURES)),
    }
    for name, mask in (("absolute", np.ones(len(rows.y), bool)), ("relative", has_rel)):
        models[name]["prior_shift"] = deploy_shift(rows.y[mask], rows.w[mask], a.deploy_prior)
    spec = {
        "format": FORMAT,
        "min_speech_s": MIN_SPEECH_S,
        "models": models,
        "training": {
            "data": ["EmoDB (535 clips, anger vs other 6 emotions)",
                     "TW Mandarin valence (652 clips, negative vs natural+positive, weight 0.5)"],
            "conditions": ["16 kHz", "8 kHz telephone band 300-3400 Hz"],
            "chunk_s": CHUNK_S,
            "held_out_emodb_speakers": held,
            "rows": int(len(rows.y)),
            "deploy_prior": a.deploy_prior,
            "command": ".venv/bin/python -m training.audio.train_anger",
        },
        "metrics_cv": metrics,
    }
    out = a.out or get_settings().models_dir / "acoustic-anger" / "model.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(spec, indent=1), encoding="utf-8")
    logger.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
