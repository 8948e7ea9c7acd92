"""Customer acoustic anger on the escalating sample calls: mean score over the calm opening turns vs the angry end.

Streams the customer channel in 1 s chunks with the speaker baseline (as the service does), scores every chunk
with the shipped acoustic model and with its cue networks alone (the ``cnn`` block removed), and prints the mean
over the first three and the last three customer turns of ``call_escalating_8k`` (espeak) and
``call_escalating_neural_8k`` (neural TTS).  Synthetic voices: a wiring and direction check, not accuracy.

    OMP_NUM_THREADS=1 .venv/bin/python bench/sample_call_acoustic.py
"""
from __future__ import annotations

import json

import numpy as np
import soundfile as sf

from pipelines.audio.anger_model import AcousticAngerModel
from pipelines.audio.baseline import SpeakerBaseline
from pipelines.audio.stream import SpeakerStream
from pipelines.settings import REPO_ROOT, Settings

CALLS = (("call_escalating_8k", "call_escalating_8k.wav"), ("call_escalating_neural_8k", "call_escalating_neural_8k.flac"))


def main() -> None:
    samples = REPO_ROOT / "sample_audio"
    settings = Settings()
    path = settings.models_dir / "acoustic-anger" / "model.json"
    models = {"cue networks": AcousticAngerModel.load(path, cnn=False), "shipped": AcousticAngerModel.load(path)}
    for name, audio in CALLS:
        meta = json.loads((samples / f"{name}.json").read_text(encoding="utf-8"))
        x, sr = sf.read(str(samples / audio), dtype="float64", always_2d=True)
        x = x[:, meta["channels"]["customer"]]
        turns = [t for t in meta["turns"] if t["role"] == "customer"]
        for label, m in models.items():
            st, b, scores = SpeakerStream(sr), SpeakerBaseline(settings.analysis.baseline_seconds), []
            for i in range(0, len(x), sr):
                f = st.process(x[i : i + sr])
                b.update(f)
                scores.append((i / sr + 0.5, m.score(f, b.delta(f))))

            def during(ts, scores=scores):
                return [s for t, s in scores if s is not None and any(u["start"] <= t <= u["end"] + 0.5 for u in ts)]

            print(f"{name} ({label}): calm turns {np.mean(during(turns[:3])):.3f}, "
                  f"angry turns {np.mean(during(turns[-3:])):.3f}")


if __name__ == "__main__":
    main()
