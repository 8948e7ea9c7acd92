"""Leave-one-corpus-out (LOCO) and leave-speaker-out benchmark of the acoustic anger model.

Protocol (all figures are AUCs of clip scores; clips come from the feature cache of
:mod:`training.audio.feature_cache`, i.e. the service's streaming path in 1 s chunks):

* **cold** — a fresh speaker, no baseline: mean score of the clip's first ``COLD_CHUNKS`` chunks with speech
  (``cold1``: first chunk only).
* **opened** — a call: the same speaker's calm clips (neutral; RAVDESS also calm) in seeded random order,
  excluding the scored clip, until ≥ ``--opening`` seconds of audio, each chunk fed to the speaker baseline and
  scored exactly as ``pipelines.session.analyze_role`` does (``baseline.update`` → ``delta`` → ``score``), then
  the scored clip's chunks the same way; clip score = mean over its chunks with speech.  Speaker corpora only
  (not URDU, whose ids are not persons, nor Taiwan, which has none).
* pairs: ``ang_neu`` angry vs neutral (+ RAVDESS calm); ``ang_oth`` angry vs the other emotions (happy, sad,
  fear, surprise, disgust, boredom; neutral/calm excluded); Taiwan: ``neg_nat`` negative vs natural (cold only).

Models: ``shipped`` scores every corpus with ``models/acoustic-anger/model.json`` as it is (the "before"
figures; it was trained on EmoDB + Taiwan, so those two are in-sample for it).  Trained models
(:mod:`training.audio.anger_fit`) are refitted per fold on the other corpora only (LOCO), or on the other
corpora plus the other speakers of the same corpus (``--lso``, grouped 5-fold by speaker).

    OMP_NUM_THREADS=1 nice python -m training.audio.loco --model shipped --condition tel8k
    OMP_NUM_THREADS=1 nice python -m training.audio.loco --model fit --condition tel8k --lso
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
from sklearn.metrics import roc_auc_score

from pipelines.audio.baseline import FeatureDelta, SpeakerBaseline
from pipelines.audio.stream import ChunkFeatures
from pipelines.settings import get_settings
from training.audio import corpora
from training.audio.feature_cache import load_cache

logger = logging.getLogger("nuqi.training.loco")
COLD_CHUNKS = 2
OTHER = ("happy", "sad", "fear", "surprise", "disgust", "boredom")


class Scorer(Protocol):
    def score(self, f: ChunkFeatures, delta: FeatureDelta | None) -> float | None: ...


@dataclass
class Rec:
    id: str
    corpus: str
    emotion: str
    speaker: str
    calm: bool
    duration_s: float
    chunks: list[ChunkFeatures]
    person: str = ""  # the speaker id as in the corpus (``speaker`` is prefixed for augmented training copies)

    @property
    def angry(self) -> bool:
        return self.emotion == "angry"


def load_recs(condition: str, corpora_: tuple[str, ...] = corpora.ALL, cache: Path | None = None,
              tag: str = "") -> list[Rec]:
    """Cached clips; a non-empty ``tag`` prefixes ids and speakers (a second rendering used for training only)."""
    out = []
    for d in load_cache(condition, corpora_, cache):
        spk = d["speaker"]
        out.append(Rec(tag + d["id"], d["corpus"], d["emotion"], (tag + spk) if spk else "", d["calm"],
                       d["duration_s"], [ChunkFeatures.from_dict(c) for c in d["chunks"]], person=spk))
    return out


def opening_clips(recs: list[Rec], seconds: float, seed: int = 0) -> dict[str, list[Rec]]:
    """clip id -> its speaker's calm clips that make the opening (seeded order, ≥ ``seconds``, never the clip)."""
    calm: dict[str, list[Rec]] = defaultdict(list)
    for r in recs:
        if r.speaker and r.calm:
            calm[r.speaker].append(r)
    out = {}
    for r in recs:
        pool = [c for c in calm.get(r.speaker, []) if c.id != r.id] if r.speaker else []
        if not pool:
            continue
        rnd = random.Random(f"{seed}:{r.id}")
        rnd.shuffle(pool)
        used: list[Rec] = []
        t = 0.0
        for c in pool:
            if t >= seconds:
                break
            used.append(c)
            t += c.duration_s
        out[r.id] = used
    return out


def openings(recs: list[Rec], seconds: float, seed: int = 0) -> dict[str, list[ChunkFeatures]]:
    """clip id -> the chunks of its speaker's calm opening (≥ ``seconds`` of audio, never the clip itself)."""
    return {k: [f for c in v for f in c.chunks] for k, v in opening_clips(recs, seconds, seed).items()}


def _mean(v: list[float]) -> float | None:
    return float(np.mean(v)) if v else None


def clip_scores(model: Scorer, recs: list[Rec], opens: dict[str, list[ChunkFeatures]] | None,
                baseline: Callable[[], SpeakerBaseline]) -> dict[str, dict[str, float | None]]:
    """clip id -> {'cold1', 'cold', 'opened'} scores."""
    out = {}
    for r in recs:
        s = [x for x in (model.score(f, None) for f in r.chunks) if x is not None]
        d: dict[str, float | None] = {"cold1": s[0] if s else None, "cold": _mean(s[:COLD_CHUNKS]), "opened": None}
        if opens is not None and r.id in opens:
            b = baseline()
            for f in opens[r.id]:
                b.update(f)
                b.delta(f)
            v = []
            for f in r.chunks:
                b.update(f)
                x = model.score(f, b.delta(f))
                if x is not None:
                    v.append(x)
            d["opened"] = _mean(v)
        out[r.id] = d
    return out


def _auc(pos: list[float], neg: list[float]) -> float | None:
    if len(pos) < 3 or len(neg) < 3:
        return None
    return float(roc_auc_score([1] * len(pos) + [0] * len(neg), pos + neg))


def aucs(recs: list[Rec], scores: dict[str, dict[str, float | None]]) -> dict[str, float | None]:
    """{'<pair>.<mode>': AUC} for one corpus' clips."""
    res: dict[str, float | None] = {}
    for mode in ("cold1", "cold", "opened"):
        def grab(pred: Callable[[Rec], bool], mode: str = mode) -> list[float]:
            return [scores[r.id][mode] for r in recs if pred(r) and scores[r.id][mode] is not None]
        if recs and recs[0].corpus == corpora.TW:
            neg, nat = grab(lambda r: r.emotion == "negative"), grab(lambda r: r.emotion == "natural")
            res[f"neg_nat.{mode}"] = _auc(neg, nat)
            continue
        ang = grab(lambda r: r.angry)
        res[f"ang_neu.{mode}"] = _auc(ang, grab(lambda r: r.calm))
        res[f"ang_oth.{mode}"] = _auc(ang, grab(lambda r: r.emotion in OTHER))
    return res


def per_speaker(recs: list[Rec], scores: dict[str, dict[str, float | None]], mode: str = "opened") -> dict[str, float]:
    """speaker -> mean angry score minus mean neutral score (speakers with both)."""
    by: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"a": [], "n": []})
    for r in recs:
        v = scores[r.id][mode]
        if v is None or not r.speaker:
            continue
        if r.angry:
            by[r.speaker]["a"].append(v)
        elif r.calm:
            by[r.speaker]["n"].append(v)
    return {k: float(np.mean(d["a"]) - np.mean(d["n"])) for k, d in by.items() if d["a"] and d["n"]}


KEYS = ("ang_neu.opened", "ang_neu.cold", "ang_neu.cold1", "ang_oth.opened", "ang_oth.cold", "neg_nat.cold",
        "neg_nat.cold1")


def table(res: dict[str, dict[str, float | None]]) -> str:
    cols = [k for k in KEYS if any(res[c].get(k) is not None for c in res)]
    lines = ["| held-out corpus | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for c, d in res.items():
        lines.append(f"| {c} | " + " | ".join("—" if d.get(k) is None else f"{d[k]:.3f}" for k in cols) + " |")
    return "\n".join(lines)


def average(res: dict[str, dict[str, float | None]], exclude: tuple[str, ...] = ()) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for k in KEYS:
        v = [d[k] for c, d in res.items() if c not in exclude and d.get(k) is not None]
        out[k] = float(np.mean(v)) if v else None
    return out


def run(condition: str, model_kind: str, opening_s: float, lso: bool, seed: int, fit_kw: dict,
        train_extra: list[str] = (), train_condition: str | None = None) -> dict:
    recs = load_recs(condition)
    # training rows from another rendering of the same clips (e.g. train on telephone audio, score clean audio)
    train_recs = recs if not train_condition or train_condition == condition else load_recs(train_condition)
    extra: list[Rec] = []
    for i, spec in enumerate(train_extra):  # "<cache dir>:<condition>" renderings added to every training set
        d, cond = spec.rsplit(":", 1)
        extra += load_recs(cond, cache=Path(d), tag=f"x{i}|")
    opens = openings(recs, opening_s, seed)
    by_corpus: dict[str, list[Rec]] = defaultdict(list)
    for r in recs:
        by_corpus[r.corpus].append(r)
    fit_record = dict(fit_kw)
    res: dict[str, dict[str, float | None]] = {}
    spk: dict[str, float] = {}
    oof: dict[str, dict[str, float | None]] = {}
    if model_kind == "shipped":
        from pipelines.audio.anger_model import AcousticAngerModel

        m = AcousticAngerModel.load(get_settings().models_dir / "acoustic-anger" / "model.json")
        sc = clip_scores(m, recs, opens, SpeakerBaseline)
        oof = sc
        for c, rs in by_corpus.items():
            res[c] = aucs(rs, sc)
            spk.update(per_speaker(rs, sc))
    else:
        from training.audio import anger_fit

        fit_kw = dict(fit_kw)
        if "shrink_s" in fit_kw:  # baseline delta shrinkage, for training rows and scoring alike
            anger_fit.SHRINK_S = float(fit_kw.pop("shrink_s"))
        for c in corpora.ALL:
            t0 = time.time()
            if lso:
                if c not in corpora.SPEAKER_CORPORA:
                    continue
                spks = sorted({r.person for r in by_corpus[c]})
                random.Random(seed).shuffle(spks)
                folds = [set(spks[i::5]) for i in range(min(5, len(spks)))]
                sc = {}
                for fold in folds:
                    train = [r for r in train_recs + extra if r.corpus != corpora.TW
                             and not (r.corpus == c and r.person in fold)]
                    m = anger_fit.fit(train, seed=seed, **fit_kw)
                    sc.update(clip_scores(m, [r for r in by_corpus[c] if r.person in fold], opens, anger_fit.baseline))
            else:
                train = [r for r in train_recs + extra if r.corpus not in (c, corpora.TW)]
                m = anger_fit.fit(train, seed=seed, **fit_kw)
                sc = clip_scores(m, by_corpus[c], opens, anger_fit.baseline)
            oof.update(sc)
            res[c] = aucs(by_corpus[c], sc)
            spk.update(per_speaker(by_corpus[c], sc))
            logger.info("%s held out: %s (%.0f s)", c, {k: v and round(v, 3) for k, v in res[c].items()},
                        time.time() - t0)
    return {"condition": condition, "model": model_kind, "opening_s": opening_s, "lso": lso, "seed": seed,
            "fit": fit_record, "train_extra": list(train_extra), "train_condition": train_condition or condition,
            "per_corpus": res, "average": average(res),
            "per_speaker_diff": spk,
            "oof": oof}


def main() -> None:
    ap = argparse.ArgumentParser(description="LOCO / leave-speaker-out benchmark of the acoustic anger model")
    ap.add_argument("--model", choices=("shipped", "fit"), default="fit")
    ap.add_argument("--condition", default="tel8k")
    ap.add_argument("--opening", type=float, default=20.0, help="seconds of calm opening audio before a scored clip")
    ap.add_argument("--train-condition", default=None, help="cache condition to train on (default: --condition)")
    ap.add_argument("--lso", action="store_true", help="leave-speaker-out inside each speaker corpus instead of LOCO")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fit", default="{}", help="JSON kwargs for anger_fit.fit")
    ap.add_argument("--out", type=Path, default=None, help="write the result JSON here")
    ap.add_argument("--train-extra", nargs="*", default=[],
                    help="renderings for training only, <cache dir>:<condition> (e.g. /tmp/nuqi-anger-s1:tel8k)")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    r = run(a.condition, a.model, a.opening, a.lso, a.seed, json.loads(a.fit), a.train_extra, a.train_condition)
    print(f"\n{a.model} {a.condition} opening={a.opening}s {'LSO' if a.lso else 'LOCO'}")
    print(table(r["per_corpus"]))
    avg = r["average"]
    print("| **average** | " + " | ".join("—" if v is None else f"{v:.3f}" for k, v in avg.items()
                                         if any(r['per_corpus'][c].get(k) is not None for c in r['per_corpus'])) + " |")
    d = r["per_speaker_diff"]
    if d:
        print(f"speakers with mean(angry) > mean(neutral) after the opening: {sum(v > 0 for v in d.values())}/{len(d)}")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(r))


if __name__ == "__main__":
    main()
