"""The CNN member's input: the stream's per-chunk log-mel equals the whole-signal log-mel training used, and the
CNN member scores real speech."""
from __future__ import annotations

import numpy as np
import pytest
import soxr
from helpers_audio import emodb, stream

from pipelines.audio import logmel
from pipelines.audio.anger_cnn import AngerCnn
from pipelines.audio.stream import MEL_OFF
from pipelines.errors import ModelNotAvailableError
from pipelines.settings import Settings


def test_stream_log_mel_matches_the_training_framing(data_dir):
    """8 kHz EmoDB speech in 20 ms and 1 s chunks: the concatenated chunk frames are the frames of
    ``logmel.log_mel`` over the signal (shifted by the stream's frame offset), within the DC blocker's effect."""
    x16 = emodb(data_dir, "03a01Wa")
    x = soxr.resample(x16, 16000, 8000)
    ref = logmel.log_mel(x[MEL_OFF:])
    for chunk_s in (0.02, 1.0):
        got = np.concatenate([f.log_mel for f in stream(x, 8000, chunk_s) if f.log_mel is not None])
        n = min(len(got), len(ref))
        assert n >= len(ref) - 5
        loud = ref[:n].max(axis=1) > ref[:n].max() - 40  # frames with speech-level energy
        assert np.median(np.abs(got[:n][loud] - ref[:n][loud])) < 0.1


def test_cnn_windows_gate_and_normalise():
    rng = np.random.default_rng(0)
    silence = np.full((100, logmel.N_MEL), -100.0)
    assert logmel.cnn_windows(silence).shape == (0, logmel.WINDOW_FRAMES, logmel.N_MEL)
    speech = logmel.log_mel(0.1 * rng.standard_normal(8000))
    w = logmel.cnn_windows(speech)
    assert w.shape == (1, logmel.WINDOW_FRAMES, logmel.N_MEL)
    # gain-invariant: 20 dB louder gives the same window
    assert np.allclose(logmel.cnn_windows(speech + 20.0), w, atol=1e-4)
    assert logmel.cnn_windows(speech[:40]).shape[0] == 1  # shorter than 1 s: padded to one window


def test_cnn_member_scores_angry_speech_above_neutral(data_dir):
    """The shipped member, alone, on one EmoDB speaker's angry vs neutral sentences at 8 kHz (same texts), as the
    service streams them.  EmoDB is in the member's training data, so this checks the served wiring (stream
    frames → windows → ONNX), not accuracy: held-out figures are in bench/RESULTS_anger_loco.md."""
    cnn = AngerCnn.load(Settings().models_dir / "acoustic-anger" / "cnn.onnx")

    def score(name):
        x = soxr.resample(emodb(data_dir, name), 16000, 8000)
        v = [cnn.logit(f.log_mel) for f in stream(x, 8000)]
        return np.mean([u for u in v if u is not None])

    angry = [score(n) for n in ("03a01Wa", "03a02Wb", "03a04Wc")]
    neutral = [score(n) for n in ("03a01Nc", "03a02Nc", "03a04Nc")]
    assert np.mean(angry) > np.mean(neutral)


def test_missing_cnn_raises(tmp_path):
    with pytest.raises(ModelNotAvailableError):
        AngerCnn.load(tmp_path / "cnn.onnx")
    (tmp_path / "cnn.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelNotAvailableError):
        AngerCnn.load(tmp_path / "cnn.onnx")
