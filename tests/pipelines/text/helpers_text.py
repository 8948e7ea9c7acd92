"""Shared helpers of the text-model tests (serving and training)."""
from __future__ import annotations

import json
from pathlib import Path

from pipelines.settings import get_settings


def ensemble_config(d: Path) -> Path:
    """The shipped e5 files (linked) and its config.json with an ``ensemble`` block (weight 0.7, T 1.5)."""
    src = get_settings().models_dir / "text-emotion"
    for f in ("tokenizer.json", "model.onnx"):
        (d / f).symlink_to(src / f)
    cfg = json.loads((src / "config.json").read_text(encoding="utf-8"))
    cfg["ensemble"] = {"ngram_weight": 0.7, "temperature": 1.5}
    (d / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return d
