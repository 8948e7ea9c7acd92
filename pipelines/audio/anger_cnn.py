"""The acoustic anger model's CNN member: a small 1-D CNN over 1 s of 8 kHz log-mel (onnxruntime).

Input: a chunk's log-mel frames (:attr:`~pipelines.audio.stream.ChunkFeatures.log_mel`), cut into 1 s windows and
gain-normalised by :func:`pipelines.audio.logmel.cnn_windows` (a chunk shorter than 1 s is padded to one window;
windows without speech are skipped).  Output: the mean raw logit of anger over the chunk's windows, which
:class:`~pipelines.audio.anger_model.AcousticAngerModel` adds to the cue networks' raw logit before its
calibration.  Three conv layers over time with the 40 mel bands as channels, mean + max pooling, a linear head
(``training/audio/train_anger_cnn.py`` trains and exports it; see ``models/acoustic-anger/MODEL_CARD.md``).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

from pipelines.audio.logmel import N_MEL, WINDOW_FRAMES, cnn_windows
from pipelines.errors import ModelNotAvailableError

logger = logging.getLogger("nuqi.audio.anger_cnn")


class AngerCnn:
    """Load once (:meth:`load`); :meth:`logit` is thread-safe (onnxruntime sessions are)."""

    def __init__(self, session: ort.InferenceSession, path: Path | None = None) -> None:
        self._sess = session
        self.path = path
        shape = session.get_inputs()[0].shape
        if len(shape) != 3 or shape[1] != WINDOW_FRAMES or shape[2] != N_MEL:
            raise ModelNotAvailableError(f"anger CNN {path}: input shape {shape}, expected [n, {WINDOW_FRAMES}, {N_MEL}]")
        self._in = session.get_inputs()[0].name

    @classmethod
    def load(cls, path: Path) -> "AngerCnn":
        path = Path(path)
        if not path.is_file():
            raise ModelNotAvailableError(f"anger CNN not found at {path}; run python -m training.audio.train_anger_cnn")
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        try:
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # corrupt file
            raise ModelNotAvailableError(f"anger CNN at {path} failed to load: {exc}") from exc
        return cls(sess, path)

    def logit(self, log_mel: np.ndarray | None) -> float | None:
        """Mean raw anger logit of the 1 s windows with speech in ``log_mel`` ((frames, 40) dB); None if none."""
        if log_mel is None or len(log_mel) == 0:
            return None
        w = cnn_windows(log_mel)
        if not len(w):
            return None
        return float(np.mean(self._sess.run(None, {self._in: w})[0]))
