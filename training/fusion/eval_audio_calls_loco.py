"""Audio-only alerts out of sample on every speaker corpus: calm, angry and other-emotion streams per speaker, each
corpus scored by an acoustic member that never heard it.

:mod:`training.fusion.eval_audio_calls` builds its streams from EmoDB alone (10 speakers), and the shipped nets were
trained on EmoDB, so its figures are in sample and too few to tell two members apart (3 vs 5 calm streams of 10 with
an alert: Fisher p ≈ 0.65).  This check builds the same kind of stream for every speaker of the six speaker corpora
(:data:`training.audio.corpora.SPEAKER_CORPORA`; 123 speakers have a calm opening) and scores each corpus with the
member's fold net of ``loco_cnn --save-nets`` (trained on the other corpora), exported with the artifact's
calibration into a models folder per corpus (``bench/acoustic_loco_streams.sh`` builds them).  The v2 cue networks
are the served ones (trained on all corpora: in sample for every member alike) unless the folders also get the
fold's cue networks (``train_anger_loco --save-folds``, the script's ``CUE_FOLDS``): then the whole acoustic model
is out of sample.

Per speaker (clips in manifest order, ``calm`` = neutral, and RAVDESS calm):

* opening: the speaker's calm clips until :data:`OPENING_S` s of audio, at most two thirds of them (the rest are
  left for the calm body); the speaker baseline is formed from its first ``--baseline-s`` (8) s of speech, as in
  the EmoDB streams;
* bodies, one stream each, clips shuffled (seeded) and cut at :data:`BODY_S` s so every corpus weighs alike:
  ``anger``; ``calm`` (the remaining calm clips, sadness, boredom: low arousal); ``other`` (happiness, fear,
  surprise, disgust: aroused, not angry).

Streams are scored at 8 kHz telephone band (the product's line and the rate where the EmoDB rule failed) through
:func:`training.fusion.eval_audio_calls.run_stream`, the live path.  Streams with an alert, and reaching stage ≥ 3,
are counted per corpus and pooled::

    OMP_NUM_THREADS=1 python -m training.fusion.eval_audio_calls_loco --fold-dirs emodb=/tmp/m/emodb ... \\
        --label shipped --json /tmp/streams_shipped.json
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from pipelines.fusion.engine import DecisionModel
from pipelines.registry import ModelRegistry
from pipelines.settings import Settings
from training.audio import corpora
from training.fusion.eval_audio_calls import build_stream, run_stream

log = logging.getLogger("nuqi.fusion.eval_audio_calls_loco")

OPENING_S = 15.0
BODY_S = 30.0
RATE = 8000
BODIES = {"anger": {"angry"}, "calm": {"neutral", "calm", "sad", "boredom"},
          "other": {"happy", "fear", "surprise", "disgust"}}


@dataclass(frozen=True)
class Stream:
    corpus: str
    speaker: str
    body: str
    opening: tuple[Path, ...]
    clips: tuple[Path, ...]


def _duration(path: Path) -> float:
    return float(sf.info(path).duration)


def streams(clips: Sequence[corpora.Clip], seed: int = 0) -> list[Stream]:
    """The streams of every speaker of ``clips`` (one corpus or several) that has a calm opening; a body is left out
    where the speaker has no clip of its kind.  Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    out = []
    by: dict[str, list[corpora.Clip]] = {}
    for c in clips:
        if c.speaker:
            by.setdefault(c.speaker, []).append(c)
    for spk in sorted(by):
        own = by[spk]
        calm = [c for c in own if c.calm]
        opening: list[corpora.Clip] = []
        t = 0.0
        while calm[len(opening):] and t < OPENING_S and len(opening) < (2 * len(calm)) // 3:
            t += _duration(calm[len(opening)].path)
            opening.append(calm[len(opening)])
        if not opening:
            continue
        for body, emotions in BODIES.items():
            pool = [c for c in own if c.emotion in emotions and c not in opening]
            pool = [pool[i] for i in rng.permutation(len(pool))]
            take, t = [], 0.0
            for c in pool:
                if t >= BODY_S:
                    break
                take.append(c.path)
                t += _duration(c.path)
            if take:
                out.append(Stream(own[0].corpus, spk, body, tuple(c.path for c in opening), tuple(take)))
    return out


@dataclass(frozen=True)
class Scored:
    corpus: str
    speaker: str
    body: str
    body_s: float
    peak_stage: int
    peak_fused: float
    alerts: int
    p90_acoustic: float | None


def score(items: Sequence[Stream], models: ModelRegistry, seed: int = 0) -> list[Scored]:
    rng = np.random.default_rng(seed)
    out = []
    for s in items:
        head, tail = build_stream(list(s.opening), rng), build_stream(list(s.clips), rng)
        r = run_stream(np.concatenate([head, tail]), RATE, head.size / 16000, models)
        out.append(Scored(s.corpus, s.speaker, s.body, round(tail.size / 16000, 1), r["peak_stage"],
                          r["peak_fused"], r["alerts"], r["p90_acoustic"]))
    return out


def table(rows: Sequence[Scored], label: str) -> str:
    lines = ["| member | corpus | body | streams | with an alert | reach ≥ 3 | median p90 chunk acoustic |",
             "|---|---|---|---|---|---|---|"]
    groups = [(c, [r for r in rows if r.corpus == c]) for c in sorted({r.corpus for r in rows})]
    for corpus, sub in [*groups, ("**pooled**", list(rows))]:
        for body in BODIES:
            b = [r for r in sub if r.body == body]
            if not b:
                continue
            p90 = [r.p90_acoustic for r in b if r.p90_acoustic is not None]
            lines.append(f"| {label} | {corpus} | {body} | {len(b)} | {sum(r.alerts > 0 for r in b)} "
                         f"({sum(r.alerts > 0 for r in b) / len(b):.0%}) | {sum(r.peak_stage >= 3 for r in b)} "
                         f"({sum(r.peak_stage >= 3 for r in b) / len(b):.0%}) | "
                         f"{f'{np.median(p90):.3f}' if p90 else '–'} |")
    return "\n".join(lines)


def fold_dirs_arg(values: Sequence[str]) -> dict[str, Path]:
    """``corpus=DIR`` pairs; every corpus must be a speaker corpus."""
    out = {}
    for v in values:
        corpus, sep, d = v.partition("=")
        if not sep or corpus not in corpora.SPEAKER_CORPORA:
            raise SystemExit(f"--fold-dirs takes CORPUS=DIR with CORPUS one of {corpora.SPEAKER_CORPORA}, got {v!r}")
        out[corpus] = Path(d)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fold-dirs", nargs="+", required=True, metavar="CORPUS=DIR",
                    help="per corpus, a models folder whose acoustic-anger never heard that corpus")
    ap.add_argument("--params", type=Path, default=Path("models/fusion/params.json"))
    ap.add_argument("--baseline-s", type=float, default=8.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--label", default="member")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    rows: list[Scored] = []
    for corpus, d in fold_dirs_arg(a.fold_dirs).items():
        settings = Settings(models_dir=d, baseline_seconds=a.baseline_s)
        models = ModelRegistry.load(settings, components=("acoustic", "fusion"))
        models.fusion = DecisionModel.load(a.params.parent)
        items = streams(corpora.load(settings.data_dir / "speech", (corpus,)), a.seed)
        got = score(items, models, a.seed)
        log.info("%s: %d streams, %d with an alert", corpus, len(got), sum(r.alerts > 0 for r in got))
        rows += got
    print(table(rows, a.label))
    if a.json:
        a.json.write_text(json.dumps([asdict(r) for r in rows], indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
