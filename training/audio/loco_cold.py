"""Fast leave-one-corpus-out comparison of *absolute* (cold) anger models under the v2 protocol (issue 13).

Same data, pairs, folds and clip scores as :mod:`training.audio.loco` (cold = mean of the first two chunks with
speech; opened = after the same speaker's 20 s calm opening, clip mean; Taiwan negative vs natural cold, scored by
a model trained on the seven emotion corpora), but the rows and the speaker deltas are built once and only the
networks are refitted per held-out corpus, so several candidates for the absolute network can be measured side
by side.  The relative network is always the v2 one (logistic on the deltas + a linear cold logit), blended with
the candidate absolute logit (``blend`` 0.3) once the baseline is ready — the shipped serving path.

Candidates (``--cand``):

* ``mlp`` — v2: MLP 38→32, α 3 on the 38 chunk cues (the reference; reproduces ``loco``'s v2 row).
* ``hgb`` — sklearn HistGradientBoostingClassifier on the same 38 cues.
* ``ext_mlp`` / ``ext_hgb`` — the 38 cues plus 12 within-chunk contour shapes (``DYN_FEATURES``: F0 slope and
  skew, level skew and decay, voiced-run length, spectral flatness, MFCC c1..c6 velocity spreads); needs the
  stream of the experiment commit and a cache built with it (``NUQI_ANGER_CACHE=/tmp/nuqi-anger-ext``).
* ``ctx_mlp`` / ``ctx_hgb`` — the chunk's cues plus the mean and standard deviation of each cue over the last
  ``CTX`` chunks with speech of the same turn (clip), and the within-turn spread of level and F0: the trajectory
  of the turn so far, as a per-speaker ring of the last chunks would give it in serving.
* ``share:<a>,<c>,<o>/`` prefix — training weights of angry / calm / other inside each corpus (v2: 0.5, 0.3, 0.2);
  ``grp:<a>,<c>,<hi>,<lo>/`` — the same with the other emotions split into high arousal (happy, fear, surprise,
  disgust) and low arousal (sad, boredom).
* ``<kind>?{json}`` suffix — hyper-parameters (MLP ``hidden``/``alpha``; HGB keyword arguments).

    OMP_NUM_THREADS=1 python -m training.audio.loco_cold --cand mlp hgb ctx_hgb --out /tmp/loco_cold.json
"""
from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from pipelines.audio import anger_model
from pipelines.audio.anger_model import ABS_FEATURES, MIN_SPEECH_S, feature_vector
from training.audio import anger_fit, corpora
from training.audio.loco import OTHER, _auc, load_recs, openings, per_speaker

# the within-chunk dynamics cues (``ext_`` candidates) were measured with the stream of the commit named in
# bench/RESULTS_anger_loco.md and not shipped; without them ``ext_`` candidates are refused
DYN_FEATURES: dict = getattr(anger_model, "DYN_FEATURES", {})

logger = logging.getLogger("nuqi.training.loco_cold")
COLD = list(ABS_FEATURES)
EXT = COLD + list(DYN_FEATURES)
NB, NE = len(COLD), len(EXT)
CTX = 3
BLEND = 0.3


def _ctx(x: np.ndarray, loud: np.ndarray, f0: np.ndarray, k: int = CTX) -> np.ndarray:
    """Per row i of one turn: mean and SD of each cue over rows max(0, i-k+1)..i, plus level and F0 spread."""
    out = []
    for i in range(len(x)):
        s = slice(max(0, i - k + 1), i + 1)
        w = x[s, :NB]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            m = np.nanmean(w, axis=0)
            sd = np.nanstd(w, axis=0) if len(w) > 1 else np.full(NB, np.nan)
            lv = np.nanstd(loud[s]) if len(w) > 1 else np.nan
            fv = np.nanstd(f0[s]) if len(w) > 1 else np.nan
            dl = loud[i] - np.nanmean(loud[s]) if len(w) > 1 else np.nan
        out.append(np.concatenate([x[i], m, sd, [lv, fv, dl]]))
    return np.asarray(out)


def _turn(chunks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray([feature_vector(EXT, f, None) for f in chunks]) if chunks else np.zeros((0, NE))
    loud = np.array([np.nan if f.loudness_db is None else f.loudness_db for f in chunks])
    f0 = np.array([np.nan if not f.f0_median_hz else 12 * np.log2(f.f0_median_hz / 100.0) for f in chunks])
    return x, loud, f0


HI_AROUSAL = ("happy", "fear", "surprise", "disgust")


def _grp(r) -> str:
    return "angry" if r.angry else "calm" if r.calm else "hi" if r.emotion in HI_AROUSAL else "lo"


def weights(recs, ids: np.ndarray, share: dict[str, float]) -> np.ndarray:
    if "hi" in share:  # groups angry / calm / high-arousal other / low-arousal other, corpora equal
        tot: dict[tuple[str, str], int] = defaultdict(int)
        cnt: dict[str, int] = defaultdict(int)
        for i in ids:
            cnt[i] += 1
        for r in recs:
            tot[(r.corpus, _grp(r))] += cnt.get(r.id, 0)
        w = {}
        for r in recs:
            present = {g: s for g, s in share.items() if tot[(r.corpus, g)] > 0}
            norm = sum(present.values())
            n = tot[(r.corpus, _grp(r))]
            w[r.id] = present.get(_grp(r), 0.0) / norm / n if n else 0.0
        return np.array([w[i] for i in ids])
    old = dict(anger_fit.SHARE)
    anger_fit.SHARE.clear()
    anger_fit.SHARE.update(share)
    try:
        cnt: dict[str, int] = defaultdict(int)
        for i in ids:
            cnt[i] += 1
        w = anger_fit._weights(recs, cnt)
    finally:
        anger_fit.SHARE.clear()
        anger_fit.SHARE.update(old)
    return np.array([w[i] for i in ids])


class Data:
    """Rows and scoring inputs built once."""

    def __init__(self, condition: str, extra: list[str], opening_s: float, seed: int = 0) -> None:
        t0 = time.time()
        self.recs = load_recs(condition)
        train = [r for r in self.recs if r.corpus != corpora.TW]
        for i, spec in enumerate(extra):
            d, cond = spec.rsplit(":", 1)
            train += [r for r in load_recs(cond, cache=Path(d), tag=f"x{i}|") if r.corpus != corpora.TW]
        self.train = train
        (xc, yc, _, idc), (xr, yr, _, idr) = anger_fit.build_rows(train, seed)
        by = {r.id: r for r in train}
        self.c = {"x": xc, "y": yc, "id": idc, "corpus": np.array([by[i].corpus for i in idc])}
        self.r = {"x": xr, "y": yr, "id": idr, "corpus": np.array([by[i].corpus for i in idr])}
        # context rows of the cold training chunks (same order as build_rows: speech chunks of each rec)
        ctx = []
        for r in train:
            sp = [f for f in r.chunks if f.speech_s >= MIN_SPEECH_S]
            if sp:
                ctx.append(_ctx(*_turn(sp)))
        self.c["ctx"] = np.vstack(ctx)
        assert len(self.c["ctx"]) == len(xc)
        # context of the relative training rows: speech chunks of each rec whose delta exists (same order)
        self.r["ctx"] = self._rel_ctx(train, seed)
        # scoring inputs of the held-out (tel8k) clips
        opens = openings(self.recs, opening_s, seed)
        self.score_in = {}
        for r in self.recs:
            sp = [f for f in r.chunks if f.speech_s >= MIN_SPEECH_S]
            d = {"cold_ctx": _ctx(*_turn(sp[:2])) if sp else None, "opened": None}
            if r.id in opens:
                b = anger_fit.baseline()
                for f in opens[r.id]:
                    b.update(f)
                    b.delta(f)
                rel, ready = [], []
                for f in r.chunks:
                    b.update(f)
                    dl = b.delta(f)
                    if f.speech_s >= MIN_SPEECH_S:
                        rel.append(feature_vector(anger_fit.REL, f, dl))
                        ready.append(dl is not None)
                if rel:
                    d["opened"] = (np.asarray(rel), np.asarray(ready), _ctx(*_turn(sp)))
            self.score_in[r.id] = d
        logger.info("rows: cold %d, relative %d (%.0f s)", len(xc), len(xr), time.time() - t0)

    def _rel_ctx(self, train, seed: int) -> np.ndarray:
        """Context rows aligned with build_rows' relative rows (it keeps speech chunks whose delta exists)."""
        calm = anger_fit.calm_by_speaker(train)
        out = []
        for r in train:
            b = anger_fit.opened_baseline(r, calm, seed)
            if b is None:
                continue
            sp = [f for f in r.chunks if f.speech_s >= MIN_SPEECH_S]
            cx = _ctx(*_turn(sp)) if sp else np.zeros((0, NE + 2 * NB + 3))
            j = 0
            for f in r.chunks:
                b.update(f)
                dl = b.delta(f)
                if f.speech_s >= MIN_SPEECH_S:
                    if dl is not None:
                        out.append(cx[j])
                    j += 1
        return np.asarray(out)


class Absolute:
    """A candidate absolute network: fit on cold rows, raw logit of rows."""

    def __init__(self, kind: str, use_ctx: bool, seed: int = 0, ext: bool = False, **kw) -> None:
        self.kind, self.use_ctx, self.seed, self.ext, self.kw = kind, use_ctx, seed, ext, kw

    def _x(self, ctx: np.ndarray) -> np.ndarray:
        cols = list(range(NE if self.ext else NB))
        if self.use_ctx:
            cols += list(range(NE, ctx.shape[1]))
        return ctx[:, cols]

    def fit(self, ctx: np.ndarray, y: np.ndarray, w: np.ndarray) -> "Absolute":
        x = self._x(ctx)
        sw = w / w.mean()
        if self.kind == "hgb":
            p = {"max_iter": 300, "learning_rate": 0.05, "max_leaf_nodes": 15, "min_samples_leaf": 40,
                 "l2_regularization": 1.0, "random_state": self.seed, **self.kw}
            self.m = HistGradientBoostingClassifier(**p).fit(x, y, sample_weight=sw)
        else:
            z, self.mean, self.scale = anger_fit._standardise(x, w)
            self.m = MLPClassifier(hidden_layer_sizes=(self.kw.get("hidden", 32),), activation="relu",
                                   alpha=self.kw.get("alpha", 3.0), max_iter=300, learning_rate_init=1e-3,
                                   batch_size=min(256, len(z)), random_state=self.seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                self.m.fit(z, y, sample_weight=sw)
        return self

    def raw(self, ctx: np.ndarray) -> np.ndarray:
        x = self._x(ctx)
        if self.kind == "hgb":
            return self.m.decision_function(x)
        z = (x - self.mean) / self.scale
        z = np.where(np.isfinite(z), np.clip(z, -5, 5), 0.0)
        return self.m.decision_function(z) if hasattr(self.m, "decision_function") else _logit(self.m.predict_proba(z)[:, 1])


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _sig(s: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip(s, -50, 50)))


def parse(cand: str) -> tuple[dict, Absolute]:
    share = dict(anger_fit.SHARE)
    rest = cand
    if cand.startswith("share:"):
        head, rest = cand.split("/", 1)
        a, c, o = (float(v) for v in head[len("share:"):].split(","))
        share = {"angry": a, "calm": c, "other": o}
    elif cand.startswith("grp:"):
        head, rest = cand.split("/", 1)
        a, c, hi, lo = (float(v) for v in head[len("grp:"):].split(","))
        share = {"angry": a, "calm": c, "hi": hi, "lo": lo}
    kind, _, opt = rest.partition("?")
    kw = json.loads(opt) if opt else {}
    ext = kind.startswith("ext_")
    if ext and not DYN_FEATURES:
        raise SystemExit("ext_ candidates need the dynamics cues of the stream (see bench/RESULTS_anger_loco.md)")
    kind = kind.removeprefix("ext_")
    use_ctx = kind.startswith("ctx_")
    return share, Absolute(kind.removeprefix("ctx_"), use_ctx, ext=ext, **kw)


def run_candidate(data: Data, cand: str, seed: int = 0) -> dict:
    share, proto = parse(cand)
    wc = weights(data.train, data.c["id"], share)
    wr = weights(data.train, data.r["id"], share)
    by_corpus = defaultdict(list)
    for r in data.recs:
        by_corpus[r.corpus].append(r)
    res, spk, oof = {}, {}, {}
    ic = [anger_fit.REL.index(n) for n in COLD]
    rel_names = [n for n in anger_fit.REL if n not in ABS_FEATURES]
    ir = [anger_fit.REL.index(n) for n in rel_names]
    for held in corpora.ALL:
        t0 = time.time()
        tc = data.c["corpus"] != held
        tr = data.r["corpus"] != held
        absm = Absolute(proto.kind, proto.use_ctx, seed, proto.ext, **proto.kw).fit(data.c["ctx"][tc], data.c["y"][tc], wc[tc])
        base = anger_fit.fit_net(data.c["x"][tc], data.c["y"][tc], wc[tc], COLD, "logreg", seed=seed)
        bn = _net(base)
        xr = data.r["x"][tr]
        xr_rel = np.column_stack([xr[:, ir], bn.raw_logit(bn.z(xr[:, ic]))])
        rel = _net(anger_fit.fit_net(xr_rel, data.r["y"][tr], wr[tr], rel_names + ["cold_logit"], "logreg",
                                     seed=seed))
        sc = {}
        for r in by_corpus[held]:
            d = data.score_in[r.id]
            s = {"cold": None, "opened": None}
            if d["cold_ctx"] is not None and len(d["cold_ctx"]):
                s["cold"] = float(np.mean(_sig(absm.raw(d["cold_ctx"]))))
            if d["opened"] is not None:
                x, ready, cx = d["opened"]
                a = absm.raw(cx)
                rr = rel.raw_logit(rel.z(np.column_stack([x[:, ir], bn.raw_logit(bn.z(x[:, ic]))])))
                s["opened"] = float(np.mean(_sig(np.where(ready, (1 - BLEND) * rr + BLEND * a, a))))
            sc[r.id] = s
        oof.update(sc)
        res[held] = _aucs(by_corpus[held], sc)
        spk.update(per_speaker(by_corpus[held], sc))
        logger.info("%s | %s held out: %s (%.0f s)", cand, held, {k: v and round(v, 3) for k, v in res[held].items()},
                    time.time() - t0)
    keys = ["ang_neu.opened", "ang_neu.cold", "ang_oth.opened", "ang_oth.cold", "neg_nat.cold"]
    avg = {k: float(np.mean([d[k] for d in res.values() if d.get(k) is not None])) for k in keys}
    return {"cand": cand, "per_corpus": res, "average": avg,
            "speakers_up": [sum(v > 0 for v in spk.values()), len(spk)], "oof": oof}


def _net(d: dict):
    from pipelines.audio.anger_model import _Net
    return _Net(d)


def _aucs(recs, sc) -> dict:
    def grab(pred, mode):
        return [sc[r.id][mode] for r in recs if pred(r) and sc[r.id][mode] is not None]
    out = {}
    for mode in ("cold", "opened"):
        if recs[0].corpus == corpora.TW:
            out[f"neg_nat.{mode}"] = _auc(grab(lambda r: r.emotion == "negative", mode),
                                          grab(lambda r: r.emotion == "natural", mode))
            continue
        ang = grab(lambda r: r.angry, mode)
        out[f"ang_neu.{mode}"] = _auc(ang, grab(lambda r: r.calm, mode))
        out[f"ang_oth.{mode}"] = _auc(ang, grab(lambda r: r.emotion in OTHER, mode))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--condition", default="tel8k")
    ap.add_argument("--train-extra", nargs="*", default=["/tmp/nuqi-anger:clean"])
    ap.add_argument("--opening", type=float, default=20.0)
    ap.add_argument("--cand", nargs="+", default=["mlp", "hgb"])
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    data = Data(a.condition, a.train_extra, a.opening)
    out = []
    for c in a.cand:
        r = run_candidate(data, c)
        out.append(r)
        av = r["average"]
        print(f"{c}: " + ", ".join(f"{k} {v:.3f}" for k, v in av.items())
              + f", speakers {r['speakers_up'][0]}/{r['speakers_up'][1]}", flush=True)
        if a.out:
            a.out.write_text(json.dumps(out))


if __name__ == "__main__":
    main()
