"""Extra char n-gram members for the dialogue-context model, each fitted on a corpus other than CPED (issue 15).

    OMP_NUM_THREADS=1 python -m training.text.extra_member --corpus reviews --out DIR --cped-lp FILE
    OMP_NUM_THREADS=1 python -m training.text.extra_member --corpus nlpcc8 --out DIR --cped-lp FILE

Fits char 1-3-gram TF-IDF + logistic regression, exactly the recipe of the text-emotion n-gram member
(:func:`training.text.train_emotion.fit_tfidf`: ``min_df`` 2, 300,000 n-grams, C 4), on

* ``reviews``: the three review corpora of ``<data_dir>/text/reviews`` (82,525 real food-delivery, hotel and shop
  reviews; label 1 = positive, 0 = negative): "reviews as a weak negative signal";
* ``nlpcc8``: NLPCC 2013 Weibo with its own eight labels (anger and disgust apart, which the text-emotion model
  merges into ``angry``): CPED's anger is confused with its disgust / negative-other turns.

Writes the member as a served :class:`pipelines.text.ngram.CharNgramModel` into ``--out`` and the CPED utterances'
log-probabilities (``{uid: [log P(class) ...]}`` in the order of ``classes`` in ``--out/member.json``) into
``--cped-lp`` for ``training.text.context_search --review-lp`` / ``--nlpcc-lp``.  Neither corpus is CPED, so
nothing of CPED is seen here.  A 5 % stratified slice is held out to report the member's own accuracy.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipelines.settings import get_settings
from pipelines.text.ngram import CharNgramModel, prepare

log = logging.getLogger("nuqi.text.extra_member")

FILES = ("waimai_10k.csv", "ChnSentiCorp_htl_all.csv", "online_shopping_10_cats.csv")
CLASSES = {"reviews": ("negative", "positive"),
           "nlpcc8": ("none", "like", "disgust", "sadness", "happiness", "anger", "surprise", "fear")}


def load_reviews(root: Path) -> tuple[list[str], list[int]]:
    """(texts, labels 1 = positive / 0 = negative) of the three review files, empty reviews skipped."""
    texts, labels = [], []
    for name in FILES:
        with (root / name).open(encoding="utf-8-sig", newline="") as f:
            for r in csv.DictReader(f):
                t = prepare((r.get("review") or "").replace("\ufeff", ""))
                if t and r.get("label") in ("0", "1"):
                    texts.append(t)
                    labels.append(int(r["label"]))
    return texts, labels


def load_nlpcc8(root: Path) -> tuple[list[str], list[int]]:
    """(texts, index into CLASSES["nlpcc8"]) of NLPCC 2013 Weibo, its own labels."""
    texts, labels = [], []
    with (root / "nlpcc2013-weibo" / "Nlpcc2013Train.csv").open(encoding="utf-8") as f:
        for r in csv.DictReader(f):
            lab, t = r["标签"].strip(), prepare(r["文本"])
            if lab in CLASSES["nlpcc8"] and t:
                texts.append(t)
                labels.append(CLASSES["nlpcc8"].index(lab))
    return texts, labels


def fit(texts: Sequence[str], labels: Sequence[int], seed: int):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), min_df=2, sublinear_tf=True, max_features=300000)
    clf = LogisticRegression(C=4.0, max_iter=2000, random_state=seed).fit(vec.fit_transform(texts), labels)
    return vec, clf


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.text.extra_member", description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", choices=tuple(CLASSES), default="reviews")
    ap.add_argument("--out", type=Path, required=True, help="where the served member is written")
    ap.add_argument("--cped-lp", type=Path, required=True, help="JSON {CPED uid: [log P(class) ...]}")
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from sklearn.model_selection import train_test_split

    from training.fusion.cped import load_dialogues
    from training.text.ngram_fit import from_sklearn

    t0 = time.time()
    root = get_settings().data_dir / "text"
    texts, labels = load_reviews(root / "reviews") if args.corpus == "reviews" else load_nlpcc8(root)
    tr_x, ho_x, tr_y, ho_y = train_test_split(texts, labels, test_size=0.05, stratify=labels, random_state=args.seed)
    vec, clf = fit(tr_x, tr_y, args.seed)
    acc = float((clf.predict(vec.transform(ho_x)) == np.array(ho_y)).mean())
    log.info("%s: %d texts; held-out 5 %% accuracy %.3f; fitted in %.1f min", args.corpus, len(texts), acc,
             (time.time() - t0) / 60)
    args.out.mkdir(parents=True, exist_ok=True)
    from_sklearn(vec, clf).save(args.out)
    (args.out / "member.json").write_text(json.dumps(
        {"corpus": args.corpus, "classes": CLASSES[args.corpus], "texts": len(texts), "held_out_accuracy": acc, "seed": args.seed,
         "command": "python -m training.text.extra_member " + " ".join(argv or sys.argv[1:])}, indent=1))
    member = CharNgramModel.load(args.out)  # as served (float16 weights)
    utts = [u for d in load_dialogues().values() for u in d]
    lp = member.log_probs([u.text for u in utts])
    args.cped_lp.parent.mkdir(parents=True, exist_ok=True)
    args.cped_lp.write_text(json.dumps({u.uid: [float(v) for v in row] for u, row in zip(utts, lp)}))
    log.info("CPED: %d utterances scored, mean probabilities %s -> %s", len(utts),
             dict(zip(CLASSES[args.corpus], np.exp(lp).mean(0).round(3).tolist())), args.cped_lp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
