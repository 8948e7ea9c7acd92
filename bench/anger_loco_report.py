"""Markdown tables from ``python -m training.audio.loco --out X.json`` results (for bench/RESULTS_anger_loco.md).

    python bench/anger_loco_report.py /tmp/anger-res/before_tel8k.json /tmp/anger-res/final_tel8k.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.audio.loco import KEYS, average, table  # noqa: E402


def main(paths: list[str]) -> None:
    for p in paths:
        d = json.loads(Path(p).read_text())
        res = d["per_corpus"]
        kind = "leave-speaker-out (5 folds by speaker)" if d["lso"] else "leave-one-corpus-out"
        tc = d.get("train_condition") or d["condition"]
        trained = f" (trained on {tc})" if d["model"] == "fit" else ""
        print(f"\n### {Path(p).stem}: {d['model']} model, scored on {d['condition']}{trained}, {kind}, "
              f"opening {d['opening_s']:g} s")
        if d.get("fit"):
            extra = f", train extra: {d['train_extra']}" if d.get("train_extra") else ""
            print(f"fit: `{json.dumps(d['fit'])}`{extra}")
        print()
        print(table(res))
        avg = average(res)
        cols = [k for k in KEYS if any(res[c].get(k) is not None for c in res)]
        print("| **average** | " + " | ".join("—" if avg[k] is None else f"**{avg[k]:.3f}**" for k in cols) + " |")
        spk = d.get("per_speaker_diff") or {}
        if spk:
            print(f"\nspeakers whose mean angry score after the opening is above their mean neutral score: "
                  f"{sum(v > 0 for v in spk.values())}/{len(spk)}")


if __name__ == "__main__":
    main(sys.argv[1:])
