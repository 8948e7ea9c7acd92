"""Leave-one-corpus-out benchmark of a small CNN on 8 kHz log-mel for acoustic anger (issue 13, option 3).

Input: :mod:`training.audio.mel_cache` (tel8k rendering; ``--clean`` adds the clean rendering of the training
corpora to training, as for v2).  The CNN sees 1 s windows (100 frames x 40 mel bands), each gain-normalised (minus the mean
dB of its speech frames: frames within 35 dB of the window's loudest), training windows every 0.5 s with
SpecAugment-style band and time masks and a random ±1 frame shift.  Labels angry vs every other clip, weights as
v2 (corpora equal; angry 0.5, neutral/calm 0.3, other 0.2 inside each corpus).

Scores (same pairs as :mod:`training.audio.loco`): every non-overlapping 1 s window with speech of the held-out
clip (the first 6 s, as cached) is scored, as a served per-chunk member would (``logits`` per clip in the out-of-fold
file); ``cold`` = mean probability of the clip's first two windows with speech; Taiwan negative vs natural by the
model trained on the seven emotion corpora.  With ``--v2 <loco --out json>`` also ``sum``: the CNN's mean logit
(first two windows) plus the v2 model's cold logit (weights fixed at 1 : 1 in advance, nothing fitted on the
held-out corpus), and ``served`` (:func:`served`): v2 + w x CNN for w = 1 and 0.5, cold (first two windows) and
opened (v2's opened logit + the CNN mean logit over all the clip's windows; ``_rel``: minus the CNN mean logit over
the windows of the same opening clips v2 used), AUCs, averages and speakers counted by loco's own functions.

    OMP_NUM_THREADS=1 python -m training.audio.loco_cnn --v2 /tmp/anger-res/v2_tel8k_open20.json --out /tmp/cnn.json
    python -m training.audio.loco_cnn --v2 /tmp/anger-res/v2_tel8k_open20.json --served /tmp/cnn.json  # post hoc
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from pipelines.audio.baseline import LOW_Q
from pipelines.audio.logmel import cnn_windows
from pipelines.settings import get_settings
from training.audio import corpora, loco, mel_cache
from training.audio.loco import OTHER, _auc

logger = logging.getLogger("nuqi.training.loco_cnn")
W = 100  # frames per window (1 s)
SHARE = {"angry": 0.5, "calm": 0.3, "other": 0.2}
COLD = 2  # cold score: the first two windows with speech (v2's cold uses its first two chunks with speech)
# ``--head softmax`` / ``aux``: the emotion classes of the seven corpora (RAVDESS calm counts as neutral)
EMOTIONS = ("angry", "neutral", "happy", "sad", "fear", "surprise", "disgust", "boredom")
HEADS = ("binary", "softmax", "aux")
ARCHS = ("1d", "2d")
NORMS = ("none", "cmn")


def windows(m: np.ndarray, hop: int) -> np.ndarray:
    """(n, W, N_MEL) gain-normalised windows with speech: the service's :func:`pipelines.audio.logmel.cnn_windows`."""
    return cnn_windows(m, hop)


class Net(nn.Module):
    """1-D CNN over time with the mel bands as channels (cheap on one CPU thread); ``arch="2d"``: a 2-D CNN over
    (time, band) with ``ch / 4``, ``ch / 2``, ``ch`` channels (3 x 3 kernels, 2 x 2 pooling: local patterns are
    learnt once for every band, as a pitch or formant shift between voices moves them), the 10 remaining band
    groups kept apart (where the energy lies, e.g. spectral tilt, still counts), then pooled over time as the 1-D net.

    ``head``: ``binary`` (one anger logit, trained angry vs the rest), ``softmax`` (one logit per emotion of
    :data:`EMOTIONS`; the anger logit is log P(angry) − log P(not angry)) or ``aux`` (the binary logit plus the
    emotion logits as an auxiliary task).  :meth:`forward` always returns the anger logit, so the export and the
    service see one number per window whatever the head.

    ``norm="cmn"``: each band minus its mean over the window's frames first (cepstral-mean-style normalisation
    inside the graph, so the exported member needs no other input): the net sees how the spectrum moves, not its
    long-term shape, which differs with voice, language and line more than with emotion (the cue networks keep
    the static spectral cues)."""

    def __init__(self, ch: int = 32, head: str = "binary", arch: str = "1d", norm: str = "none") -> None:
        super().__init__()
        if head not in HEADS or arch not in ARCHS or norm not in NORMS:
            raise ValueError(f"head must be one of {HEADS}, arch one of {ARCHS}, norm one of {NORMS}")
        self.kind, self.arch, self.norm = head, arch, norm
        n = mel_cache.N_MEL
        if arch == "1d":
            self.body = nn.Sequential(
                nn.Conv1d(n, ch, 5, padding=2), nn.BatchNorm1d(ch), nn.ReLU(), nn.MaxPool1d(2),
                nn.Conv1d(ch, ch, 5, padding=2), nn.BatchNorm1d(ch), nn.ReLU(), nn.MaxPool1d(2),
                nn.Conv1d(ch, ch, 3, padding=1), nn.BatchNorm1d(ch), nn.ReLU(),
            )
        else:
            c1, c2 = max(ch // 4, 1), max(ch // 2, 1)
            self.body = nn.Sequential(
                nn.Conv2d(1, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(c2, ch, 3, padding=1), nn.BatchNorm2d(ch), nn.ReLU(),
            )
        self.drop = nn.Dropout(0.2)
        feat = ch if arch == "1d" else ch * (n // 4)
        self.head = nn.Linear(2 * feat, {"binary": 1, "softmax": len(EMOTIONS), "aux": 1 + len(EMOTIONS)}[head])

    def features(self, x: torch.Tensor) -> torch.Tensor:  # x: (b, W, N_MEL) -> (b, pooled features)
        if self.norm == "cmn":
            x = x - x.mean(dim=1, keepdim=True)
        if self.arch == "2d":
            h = self.body(x[:, None])  # (b, ch, time / 4, bands / 4)
            h = h.permute(0, 1, 3, 2).flatten(1, 2)  # (b, ch x bands / 4, time / 4)
        else:
            h = self.body(x.transpose(1, 2))
        return torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)

    def raw(self, x: torch.Tensor) -> torch.Tensor:  # x: (b, W, N_MEL) -> (b, outputs)
        return self.head(self.drop(self.features(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.raw(x)
        if self.kind == "softmax":
            return z[:, 0] - torch.logsumexp(z[:, 1:], dim=1)
        return z[:, 0]

    def loss(self, x: torch.Tensor, y: torch.Tensor, cls: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """Per-window loss: binary cross-entropy of the anger logit and/or cross-entropy over the emotions
        (``h``: the windows' pooled features, when the caller has them already)."""
        z = self.head(self.drop(self.features(x) if h is None else h))
        if self.kind == "softmax":
            return nn.functional.cross_entropy(z, cls, reduction="none")
        bce = nn.functional.binary_cross_entropy_with_logits(z[:, 0], y, reduction="none")
        if self.kind == "aux":
            return bce + nn.functional.cross_entropy(z[:, 1:], cls, reduction="none")
        return bce


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """One random band mask (≤ 6 bands) and time mask (≤ 15 frames) per window, and a ±1 frame shift."""
    b, n = x.shape[0], mel_cache.N_MEL
    f0 = torch.randint(0, n - 6, (b, 1), generator=g)
    fw = torch.randint(0, 7, (b, 1), generator=g)
    t0 = torch.randint(0, W - 15, (b, 1), generator=g)
    tw = torch.randint(0, 16, (b, 1), generator=g)
    band, t = torch.arange(n)[None], torch.arange(W)[None]
    keep = ~((band >= f0) & (band < f0 + fw))[:, None, :] & ~((t >= t0) & (t < t0 + tw))[:, :, None]
    shift = int(torch.randint(-1, 2, (1,), generator=g))
    return torch.roll(x * keep, shift, dims=1)


class _Reverse(torch.autograd.Function):
    """Identity forward; the gradient times −``lam`` backward (the gradient-reversal layer of domain-adversarial
    training, Ganin & Lempitsky 2015)."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, lam: float) -> torch.Tensor:  # type: ignore[override]
        ctx.lam = lam
        return h.view_as(h)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return -ctx.lam * grad, None


def _adversary(n_in: int, n_corpora: int) -> nn.Module:
    """Corpus classifier on the pooled features, trained through :class:`_Reverse` (never exported)."""
    return nn.Sequential(nn.Linear(n_in, 64), nn.ReLU(), nn.Linear(64, n_corpora))


def train(x: np.ndarray, y: np.ndarray, w: np.ndarray, epochs: int, seed: int = 0, ch: int = 32,
          head: str = "binary", emotions: np.ndarray | None = None, arch: str = "1d", norm: str = "none",
          corpus: np.ndarray | None = None, adv: float = 0.0) -> Net:
    """``emotions``: each window's emotion (needed by the ``softmax`` and ``aux`` heads).  ``adv`` > 0:
    domain-adversarial training against ``corpus`` (each window's corpus): a corpus classifier on the pooled
    features learns to tell the training corpora apart while the features are pushed, through gradient
    reversal, to make that hard; its weight ramps 0 → ``adv`` over training (2 / (1 + e^(−10 p)) − 1)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = Net(ch, head, arch, norm)
    if head != "binary" and emotions is None:
        raise ValueError(f"the {head} head needs each window's emotion")
    if adv > 0 and corpus is None:
        raise ValueError("adversarial training needs each window's corpus")
    cls = torch.from_numpy(np.array([EMOTIONS.index(_emotion(e)) for e in emotions]) if emotions is not None
                           else np.zeros(len(x), dtype=np.int64))
    params = list(net.parameters())
    if adv > 0:
        names = sorted(set(corpus))
        dom = torch.from_numpy(np.array([names.index(c) for c in corpus], dtype=np.int64))
        adversary = _adversary(net.head.in_features, len(names))
        params += list(adversary.parameters())
    opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=1e-3)
    xt, yt, wt = torch.from_numpy(x), torch.from_numpy(y.astype(np.float32)), torch.from_numpy((w / w.mean()).astype(np.float32))
    n = len(xt)
    steps = epochs * ((n + 127) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    net.train()
    step = 0
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, 128):
            idx = perm[i : i + 128]
            xb = _augment(xt[idx], g)
            if adv > 0:
                h = net.features(xb)
                lam = adv * (2 / (1 + np.exp(-10 * step / steps)) - 1)
                per = net.loss(xb, yt[idx], cls[idx], h) + nn.functional.cross_entropy(
                    adversary(_Reverse.apply(h, float(lam))), dom[idx], reduction="none")
            else:
                per = net.loss(xb, yt[idx], cls[idx])
            loss = (per * wt[idx]).mean()
            step += 1
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    return net


def _emotion(emotion: str) -> str:
    return "neutral" if emotion == "calm" else emotion


def _group(emotion: str) -> str:
    return "angry" if emotion == "angry" else "calm" if emotion in ("neutral", "calm") else "other"


def training_windows(clips: dict, *sources: dict[str, np.ndarray]
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Windows every 0.5 s of every clip of the emotion corpora in ``sources`` (clip id -> log-mel; Taiwan
    skipped): (windows, corpus per window, group per window: angry / calm / other, emotion per window)."""
    rows_x, rows_c, rows_g, rows_e = [], [], [], []
    for src in sources:
        for cid, m in src.items():
            c = clips[cid]
            if c.corpus == corpora.TW:
                continue
            wv = windows(m, W // 2)
            rows_x.append(wv)
            rows_c += [c.corpus] * len(wv)
            rows_g += [_group(c.emotion)] * len(wv)
            rows_e += [c.emotion] * len(wv)
    return np.concatenate(rows_x), np.array(rows_c), np.array(rows_g), np.array(rows_e)


def corpus_weights(cc: np.ndarray, gg: np.ndarray, share: dict[str, float] | None = None) -> np.ndarray:
    """v2's sample weights: corpora equal; inside each, angry 0.5, calm 0.3, other 0.2 (``share``; angry / calm
    0.5 / 0.5 where a corpus has no other emotions)."""
    w = np.zeros(len(cc))
    for c in np.unique(cc):
        inside = dict(share or SHARE) if ((cc == c) & (gg == "other")).any() else {"angry": 0.5, "calm": 0.5}
        for grp, s in inside.items():
            m = (cc == c) & (gg == grp)
            if m.any():
                w[m] = s / m.sum()
    return w


def run(epochs: int, v2: dict | None, seeds: int = 1, clean: bool = False, ch: int = 32, seed0: int = 0,
        share: dict[str, float] | None = None, head: str = "binary", arch: str = "1d",
        held_out: Sequence[str] | None = None, save_nets: Path | None = None, norm: str = "none",
        adv: float = 0.0) -> dict:
    """Leave-one-corpus-out over ``held_out`` (default every corpus; a subset lets two processes split the folds,
    joined afterwards by :func:`merge`).  ``save_nets``: a folder that gets each fold's net as ``<held-out>.pt``
    (one seed only); the Taiwan fold's net is trained on all seven emotion corpora, exactly what
    ``train_anger_cnn`` trains with the same flags and seed."""
    if save_nets is not None and seeds != 1:
        raise ValueError("--save-nets keeps one net per fold: use it with --seeds 1")
    clips = {c.id: c for c in corpora.load(get_settings().data_dir / "speech")}
    tel = mel_cache.load("tel8k")
    cln = mel_cache.load("clean", corpora.EMOTION_CORPORA) if clean else {}
    x, rc, rg, re_ = training_windows(clips, tel, cln)
    y = (rg == "angry").astype(np.float32)
    logger.info("training windows: %d", len(x))
    # held-out clip windows (tel8k): every non-overlapping 1 s window with speech (as a served per-chunk member)
    test = {cid: windows(m, W) for cid, m in tel.items()}
    res, oof = {}, {}
    for held in held_out or corpora.ALL:
        t0 = time.time()
        tr = rc != held
        w = corpus_weights(rc[tr], rg[tr], share)
        ids = [cid for cid in test if clips[cid].corpus == held and len(test[cid])]
        lg = {cid: 0.0 for cid in ids}
        for seed in range(seed0, seed0 + seeds):  # an ensemble: mean logit of nets trained from different seeds
            net = train(x[tr], y[tr], w, epochs, seed, ch, head, re_[tr], arch, norm, rc[tr], adv)
            with torch.no_grad():
                for cid in ids:
                    lg[cid] = lg[cid] + net(torch.from_numpy(test[cid])).numpy() / seeds
            if save_nets is not None:
                save_nets.mkdir(parents=True, exist_ok=True)
                torch.save(net.state_dict(), save_nets / f"{held}.pt")
        sc = {cid: {"cold": float(np.mean(1 / (1 + np.exp(-v[:COLD])))), "logit": float(np.mean(v[:COLD])),
                    "logits": [float(u) for u in v]} for cid, v in lg.items()}
        if v2 is not None:
            for cid, d in sc.items():
                p = (v2.get(cid) or {}).get("cold")
                d["sum"] = None if p is None else d["logit"] + float(np.log(max(min(p, 1 - 1e-4), 1e-4)
                                                                           / (1 - max(min(p, 1 - 1e-4), 1e-4))))
        oof.update(sc)
        res[held] = _aucs(held, ids, clips, sc)
        logger.info("%s held out: %s (%.0f s)", held, {k: v and round(v, 3) for k, v in res[held].items()},
                    time.time() - t0)
    return {"epochs": epochs, "seeds": seeds, "seed0": seed0, "clean": clean, "ch": ch, "share": share or SHARE,
            "head": head, "arch": arch, "norm": norm, "adv": adv,
            "per_corpus": res, "average": _average(res), "oof": oof}


def _average(res: dict) -> dict:
    keys = sorted({k for r in res.values() for k in r})
    return {k: float(np.mean([r[k] for r in res.values() if r.get(k) is not None])) for k in keys}


CONFIG_KEYS = ("epochs", "seeds", "seed0", "clean", "ch", "share", "head", "arch", "norm", "adv")


def merge(parts: list[dict]) -> dict:
    """``--out`` files of runs over disjoint ``--held`` subsets with the same flags, as one run."""
    first = parts[0]
    for p in parts[1:]:
        diff = [k for k in CONFIG_KEYS if p.get(k) != first.get(k)]
        if diff:
            raise ValueError(f"the runs differ in {diff}: only folds of one configuration can be merged")
    res: dict = {}
    oof: dict = {}
    for p in parts:
        twice = set(res) & set(p["per_corpus"])
        if twice:
            raise ValueError(f"held-out corpora in more than one file: {sorted(twice)}")
        res.update(p["per_corpus"])
        oof.update(p["oof"])
    return {**{k: first.get(k) for k in CONFIG_KEYS}, "per_corpus": res, "average": _average(res), "oof": oof}


def _aucs(held: str, ids: list[str], clips: dict, sc: dict) -> dict:
    out = {}
    for mode in ("cold", "sum"):
        def grab(pred, mode=mode):
            return [sc[i][mode] for i in ids if pred(clips[i].emotion) and sc[i].get(mode) is not None]
        if held == corpora.TW:
            out[f"neg_nat.{mode}"] = _auc(grab(lambda e: e == "negative"), grab(lambda e: e == "natural"))
        else:
            ang = grab(lambda e: e == "angry")
            out[f"ang_neu.{mode}"] = _auc(ang, grab(lambda e: e in ("neutral", "calm")))
            out[f"ang_oth.{mode}"] = _auc(ang, grab(lambda e: e in OTHER))
    return {k: v for k, v in out.items() if v is not None}


def _lg(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return float(np.log(p / (1 - p)))


def opened_sum(v2: dict, cnn: dict) -> dict:
    """Post hoc: v2's opened logit + the CNN's logit (its first two 1 s windows) per clip of the speaker corpora,
    both out of fold; AUCs per corpus, their averages and speakers whose mean angry > mean neutral."""
    clips = {c.id: c for c in corpora.load(get_settings().data_dir / "speech")}
    res, spk = {}, {}
    for corp in corpora.SPEAKER_CORPORA:
        s = {i: _lg(v2[i]["opened"]) + cnn[i]["logit"] for i, c in clips.items()
             if c.corpus == corp and i in cnn and (v2.get(i) or {}).get("opened") is not None}
        ang = [v for i, v in s.items() if clips[i].emotion == "angry"]
        res[corp] = {"ang_neu.opened_sum": _auc(ang, [v for i, v in s.items() if clips[i].calm]),
                     "ang_oth.opened_sum": _auc(ang, [v for i, v in s.items() if clips[i].emotion in OTHER])}
        by: dict[str, dict[str, list[float]]] = {}
        for i, v in s.items():
            g = "a" if clips[i].angry else "n" if clips[i].calm else None
            if g:
                by.setdefault(clips[i].speaker, {"a": [], "n": []})[g].append(v)
        spk.update({k: float(np.mean(d["a"]) - np.mean(d["n"])) for k, d in by.items() if d["a"] and d["n"]})
    avg = {k: float(np.mean([r[k] for r in res.values() if r[k] is not None])) for k in next(iter(res.values()))}
    return {"per_corpus": res, "average": avg, "speakers_up": [sum(v > 0 for v in spk.values()), len(spk)]}


def _blend(v2: dict, cnn: dict, opens: dict[str, list[str]], w: float | None, relative: bool = False,
           base_q: float | None = None) -> dict:
    """clip id -> {'cold1', 'cold', 'opened'} as loco.clip_scores, for one blend.  ``w`` None: v2 alone.
    cold = v2 cold logit + w x CNN mean logit of the first two windows; opened = v2 opened logit + w x CNN mean
    logit of all the clip's windows (``relative``: minus the CNN mean logit of all windows of its opening clips, or
    their ``base_q`` quantile, as the served speaker baseline takes it)."""
    out = {}
    for i, d in v2.items():
        lg = (cnn.get(i) or {}).get("logits") or []
        cold = opened = None
        if d.get("cold") is not None and (w is None or lg):
            cold = _lg(d["cold"]) + (0.0 if w is None else w * float(np.mean(lg[:COLD])))
        if d.get("opened") is not None and (w is None or lg):
            x = 0.0 if w is None else w * float(np.mean(lg))
            if relative and w is not None:
                base = [u for j in opens.get(i, []) for u in (cnn.get(j) or {}).get("logits") or []]
                ref = float(np.mean(base) if base_q is None else np.quantile(base, base_q)) if base else None
                x = None if ref is None else w * (float(np.mean(lg)) - ref)
            opened = None if x is None else _lg(d["opened"]) + x
        out[i] = {"cold1": None, "cold": cold, "opened": opened}
    return out


def served(v2: dict, cnn: dict, opening_s: float = 20.0, seed: int = 0, ws: tuple[float, ...] = (1.0, 0.5)) -> dict:
    """The served-path estimate of v2 + CNN: per blend, loco.aucs per corpus, loco.average, loco.per_speaker
    (opened) and Taiwan neg vs nat (cold).  The relative variant's opening clips are exactly v2's
    (``loco.opening_clips`` on the same tel8k cache, the same ``opening_s`` and seed)."""
    recs = loco.load_recs("tel8k")
    opens = {k: [c.id for c in v] for k, v in loco.opening_clips(recs, opening_s, seed).items()}
    by: dict[str, list] = {}
    for r in recs:
        by.setdefault(r.corpus, []).append(r)
    variants = {"v2": (None, False, None)}
    for w in ws:
        variants[f"w{w:g}"] = (w, False, None)
        variants[f"w{w:g}_rel"] = (w, True, None)
        variants[f"w{w:g}_rel_q{LOW_Q * 100:g}"] = (w, True, LOW_Q)
    out = {}
    for name, (w, rel, q) in variants.items():
        sc = _blend(v2, cnn, opens, w, rel, q)
        res = {c: loco.aucs(rs, sc) for c, rs in by.items()}
        spk: dict[str, float] = {}
        for rs in by.values():
            spk.update(loco.per_speaker(rs, sc))
        out[name] = {"per_corpus": res, "average": loco.average(res),
                     "speakers_up": [sum(v > 0 for v in spk.values()), len(spk)],
                     "n_scored": {m: sum(d[m] is not None for d in sc.values()) for m in ("cold", "opened")}}
    return out


def served_table(s: dict) -> str:
    keys = ("ang_neu.opened", "ang_neu.cold", "ang_oth.opened", "ang_oth.cold", "neg_nat.cold")
    lines = ["| blend | held-out | " + " | ".join(keys) + " | speakers ang > neu |", "|---|---|" + "---|" * (len(keys) + 1)]
    for name, r in s.items():
        rows = list(r["per_corpus"].items()) + [("**average**", r["average"])]
        for c, d in rows:
            sp = f"{r['speakers_up'][0]}/{r['speakers_up'][1]}" if c == "**average**" else ""
            lines.append(f"| {name} | {c} | " + " | ".join("—" if d.get(k) is None else f"{d[k]:.3f}" for k in keys)
                         + f" | {sp} |")
    return "\n".join(lines)


def time_net(ch: int = 64, reps: int = 2000, arch: str = "1d") -> dict:
    """CPU cost on this thread: ms per 1 s window of an (untrained, same-shaped) net in torch eager, batch 1
    (min and median of 5 x ``reps``), and ms per second of 8 kHz audio of the log-mel and the window gain norm."""
    net = Net(ch, arch=arch).eval()
    x = torch.randn(1, W, mel_cache.N_MEL)
    sig = np.random.default_rng(0).normal(0.0, 0.1, mel_cache.SR * 60)
    ts = []
    with torch.no_grad():
        for _ in range(200):
            net(x)
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(reps):
                net(x)
            ts.append((time.perf_counter() - t0) / reps * 1e3)
    t0 = time.perf_counter()
    m = mel_cache.log_mel(sig)
    t1 = time.perf_counter()
    windows(m, W)
    t2 = time.perf_counter()
    return {"weights": sum(p.numel() for p in net.parameters()), "net_ms_min": min(ts), "net_ms_median": float(np.median(ts)),
            "mel_ms_per_s": (t1 - t0) / 60 * 1e3, "norm_ms_per_s": (t2 - t1) / 60 * 1e3}


def mean_logits(oofs: list[dict]) -> dict:
    """Out-of-fold files of several nets (same caches, so the same windows per clip) as one: per clip the mean of
    their window logits (an ensemble member that averages the nets' logits)."""
    out = {}
    for cid in set.intersection(*(set(o) for o in oofs)):
        lgs = [o[cid].get("logits") or [] for o in oofs]
        if len({len(v) for v in lgs}) != 1:
            raise ValueError(f"{cid}: the files scored different windows ({[len(v) for v in lgs]})")
        out[cid] = {"logits": [float(np.mean(col)) for col in zip(*lgs)]}
    return out


def share_arg(values: list[float] | None) -> dict[str, float] | None:
    """``--share ANGRY CALM OTHER`` as the shares of :func:`corpus_weights` (None: v2's)."""
    return None if values is None else dict(zip(("angry", "calm", "other"), map(float, values), strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--v2", type=Path, default=None)
    ap.add_argument("--clean", action="store_true", help="add the clean rendering to training")
    ap.add_argument("--seeds", type=int, default=1, help="ensemble of this many nets (mean logit)")
    ap.add_argument("--seed", type=int, default=0, help="first training seed (a noise check: another seed)")
    ap.add_argument("--ch", type=int, default=32, help="channels per conv layer")
    ap.add_argument("--share", type=float, nargs=3, default=None, metavar=("ANGRY", "CALM", "OTHER"),
                    help="sample-weight shares inside each corpus (default 0.5 0.3 0.2, as v2)")
    ap.add_argument("--head", choices=HEADS, default="binary",
                    help="binary: angry vs rest; softmax: all emotions, anger logit vs the rest; aux: binary + emotions")
    ap.add_argument("--arch", choices=ARCHS, default="1d", help="1-D CNN over time (bands as channels) or 2-D")
    ap.add_argument("--norm", choices=NORMS, default="none",
                    help="cmn: each band minus its mean over the window inside the net (see Net)")
    ap.add_argument("--adv", type=float, default=0.0,
                    help="domain-adversarial weight against the training corpora (0: off; see train)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--held", nargs="+", choices=corpora.ALL, default=None,
                    help="only these held-out folds (split a run over processes; join them with --merge)")
    ap.add_argument("--save-nets", type=Path, default=None,
                    help="save each fold's net in this folder as <held-out>.pt (tw-mandarin-valence.pt: all seven "
                         "emotion corpora, for train_anger_cnn --load-net)")
    ap.add_argument("--merge", type=Path, nargs="+", default=None,
                    help="join the --out files of runs over disjoint --held folds into --out (served blends with --v2)")
    ap.add_argument("--time", action="store_true", help="only time the net (--ch) and the log-mel on one thread")
    ap.add_argument("--served", type=Path, nargs="+", default=None,
                    help="only report the served-path blends of v2 + CNN from this earlier --out file (needs --v2); "
                         "several files: their nets as one ensemble member (mean of their window logits)")
    ap.add_argument("--opened-sum", type=Path, default=None,
                    help="only report v2 opened + CNN logit from this earlier --out file (needs --v2)")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    if a.time:
        print(json.dumps(time_net(a.ch, arch=a.arch)))
        return
    v2_run = json.loads(a.v2.read_text()) if a.v2 else None
    v2 = v2_run["oof"] if v2_run else None
    if a.served:
        if v2_run is None:
            raise SystemExit("--served needs --v2")
        s = served(v2, mean_logits([json.loads(f.read_text())["oof"] for f in a.served]), v2_run["opening_s"],
                   v2_run["seed"])
        print(served_table(s))
        print(json.dumps({k: {"average": v["average"], "speakers_up": v["speakers_up"], "n_scored": v["n_scored"]}
                          for k, v in s.items()}, indent=1))
        return
    if a.opened_sum:
        if v2 is None:
            raise SystemExit("--opened-sum needs --v2")
        o = opened_sum(v2, json.loads(a.opened_sum.read_text())["oof"])
        print(json.dumps(o, indent=1))
        return
    if a.merge:
        r = merge([json.loads(f.read_text()) for f in a.merge])
    else:
        r = run(a.epochs, v2, a.seeds, a.clean, a.ch, a.seed, share_arg(a.share), a.head, a.arch, a.held, a.save_nets,
                a.norm, a.adv)
    print(", ".join(f"{k} {v:.3f}" for k, v in r["average"].items()))
    if v2_run is not None and (a.merge or a.held is None):  # a subset of the folds: the blends come with --merge
        r["served"] = served(v2, r["oof"], v2_run["opening_s"], v2_run["seed"])
        print(served_table(r["served"]))
    if a.out:
        a.out.write_text(json.dumps(r))


if __name__ == "__main__":
    main()
