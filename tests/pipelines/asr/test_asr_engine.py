"""WhisperEngine on real audio: synthetic espeak-ng Mandarin, silence, noise, tones."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipelines.asr.engine import AsrEngine, Segment, WhisperEngine
from pipelines.asr.filters import character_error_rate as _cer
from pipelines.errors import InputError, InvalidAudioContentError, ModelNotAvailableError

TEXT = "我们的客服是全天在线的，周末也可以联系。"  # CER 0.22 (16 kHz) / 0.11 (8 kHz) when written
REPO = Path(__file__).resolve().parents[3]
CER_BOUND = 0.5  # generous: espeak speech is hard for Whisper base (bench/RESULTS_asr.md)


def _padded(audio: np.ndarray, rate: int, lead_s: float = 1.0, tail_s: float = 0.5) -> np.ndarray:
    return np.concatenate([np.zeros(int(lead_s * rate), np.float32), audio.astype(np.float32),
                           np.zeros(int(tail_s * rate), np.float32)])


def test_engine_satisfies_protocol(engine: WhisperEngine) -> None:
    assert isinstance(engine, AsrEngine)


@pytest.mark.parametrize("rate", [16000, 8000])
def test_transcribes_synthetic_mandarin(engine: WhisperEngine, synth, rate: int) -> None:
    audio = _padded(synth.synthesize(TEXT, rate_wpm=165, pitch=50, amplitude=100, sample_rate=rate), rate)
    segments = engine.transcribe(audio, rate)
    assert segments and all(isinstance(s, Segment) for s in segments)
    text = "".join(s.text for s in segments)
    assert _cer(TEXT, text) < CER_BOUND, text
    # timestamps are in the input's time base: speech starts after the 1 s lead-in
    duration = audio.size / rate
    assert 0.5 <= segments[0].start < segments[-1].end <= duration + 0.05


def test_int16_input_is_accepted(engine: WhisperEngine, synth) -> None:
    audio = _padded(synth.synthesize(TEXT, rate_wpm=165, pitch=50, amplitude=100, sample_rate=8000), 8000)
    pcm = np.clip(audio * 32767, -32768, 32767).astype(np.int16)
    text = "".join(s.text for s in engine.transcribe(pcm, 8000))
    assert _cer(TEXT, text) < CER_BOUND, text


@pytest.mark.parametrize("rate", [8000, 16000])
def test_silence_and_noise_give_no_segments(engine: WhisperEngine, rate: int) -> None:
    rng = np.random.default_rng(0)
    n = 6 * rate
    t = np.arange(n) / rate
    signals = {
        "zeros": np.zeros(n, np.float32),
        "white noise": (rng.standard_normal(n) * 0.1).astype(np.float32),
        "450 Hz dial tone": (0.25 * np.sin(2 * np.pi * 450 * t)).astype(np.float32),
        "empty": np.zeros(0, np.float32),
    }
    for name, audio in signals.items():
        assert engine.transcribe(audio, rate) == [], name


def test_bad_input_is_refused(engine: WhisperEngine) -> None:
    with pytest.raises(InputError):
        engine.transcribe(np.zeros((2, 8000), np.float32), 8000)
    with pytest.raises(InvalidAudioContentError):
        engine.transcribe(np.full(8000, np.nan, np.float32), 8000)
    with pytest.raises(InputError):
        engine.transcribe(np.zeros(8000, np.float32), 0)


def test_missing_model_dir_raises_model_not_available(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailableError, match="model_assembly"):
        WhisperEngine.load(tmp_path / "nowhere")


def test_same_audio_gives_same_transcript(engine: WhisperEngine, synth) -> None:
    # A committed recording (byte-identical on every machine) must give a transcript, and the
    # same one twice.
    calm, rate = sf.read(REPO / "sample_audio" / "customer_calm_16k.wav", dtype="float32")
    first = engine.transcribe(calm, rate)
    assert first
    assert engine.transcribe(calm, rate) == first
    # A clip Whisper base finds hard: with the sampling fallback (temperature 0.2 … 1.0) three
    # runs gave three different transcripts; beam search alone must repeat itself exactly.
    # Whether it passes the hallucination filters depends on the CPU's int8 kernels (empty on
    # the CI machine, a transcript here), so only the repeat is asserted.
    audio = _padded(synth.synthesize("上次说好的退款到现在都没到账！", rate_wpm=230, pitch=62,
                                      amplitude=130, sample_rate=8000), 8000)
    assert engine.transcribe(audio, 8000) == engine.transcribe(audio, 8000)
