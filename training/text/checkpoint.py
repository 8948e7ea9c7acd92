"""Checkpoints and the progress file of a resumable fine-tune (``train_emotion --checkpoint-dir``).

A checkpoint (``<dir>/checkpoint.pt``) holds everything the training loop needs to continue exactly where it
stopped: model weights, AdamW state, the learning-rate schedule's state, the Python / torch / numpy RNG states,
the data-order position (epoch, index of the next batch in that epoch, and the Python RNG state at the start of
the epoch, from which the epoch's batch order is regenerated), the loss EMA, the training seconds spent so far
and a fingerprint of the run's data and settings (a resume with other data or settings is refused).

Files are written atomically: a temporary file in the same folder, flushed and fsynced, then ``os.replace``,
so a run killed while writing leaves the previous checkpoint intact.  ``progress.json`` (same folder) is
rewritten the same way as the run goes: status, step, epoch, loss, elapsed, ETA.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CHECKPOINT = "checkpoint.pt"
PROGRESS = "progress.json"


def atomic_write_bytes(path: Path, write) -> None:
    """``write(fh)`` into a temporary sibling of ``path``, fsync, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def fingerprint(seqs: Sequence[Sequence[int]], labels: Sequence[int], settings: dict[str, Any]) -> str:
    """sha1 of the token ids, labels and the settings that shape the run (data order, schedule, model)."""
    h = hashlib.sha1()
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for s, y in zip(seqs, labels):
        h.update(b"%d:" % int(y))
        h.update(",".join(map(str, s)).encode())
        h.update(b";")
    return h.hexdigest()


def save_checkpoint(ckpt_dir: Path, state: dict[str, Any]) -> Path:
    import torch

    path = Path(ckpt_dir) / CHECKPOINT
    atomic_write_bytes(path, lambda fh: torch.save(state, fh))
    return path


def load_checkpoint(ckpt_dir: Path) -> dict[str, Any]:
    import torch

    path = Path(ckpt_dir) / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint to resume from: {path}")
    # our own file (python RNG state is a tuple, numpy's a dict): full unpickling is needed
    return torch.load(path, map_location="cpu", weights_only=False)


def write_progress(ckpt_dir: Path, **fields: Any) -> None:
    data = {**fields, "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "pid": os.getpid()}
    payload = json.dumps(data, ensure_ascii=False, indent=2).encode()
    atomic_write_bytes(Path(ckpt_dir) / PROGRESS, lambda fh: fh.write(payload))


def read_progress(ckpt_dir: Path) -> dict[str, Any]:
    return json.loads((Path(ckpt_dir) / PROGRESS).read_text(encoding="utf-8"))
