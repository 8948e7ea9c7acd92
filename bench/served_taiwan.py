"""The served acoustic model on the one Mandarin set, end to end: Taiwan Mandarin negative vs natural clips.

Taiwan was never trained on (neither the cue networks nor the CNN member), so this is a held-out check of the
shipped artifact itself, through the service's own code: every clip rendered as the LOCO benchmark renders it
(``tel8k``: the seeded telephone channel after 3 s of line, as ``training.audio.feature_cache``; ``clean``: as
stored), streamed through ``SpeakerStream`` in 1 s chunks, scored cold by ``AcousticAngerModel`` (mean of the first
two chunks with speech, as ``training.audio.loco``), with the shipped model and with its cue networks alone (the
``cnn`` block removed).  Prints the AUCs.

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python bench/served_taiwan.py      # ≈ 2 min
"""
from __future__ import annotations

import zlib

import numpy as np
from sklearn.metrics import roc_auc_score

from pipelines.audio.anger_model import AcousticAngerModel
from pipelines.audio.stream import SpeakerStream
from pipelines.settings import get_settings
from training.audio import corpora, telephone
from training.audio.feature_cache import LEAD_S, _read, _to8k
from training.audio.loco import COLD_CHUNKS


def render(c: corpora.Clip, condition: str, seed: int = 0) -> tuple[np.ndarray, int]:
    x, sr = _read(c.path)
    if condition != "tel8k":
        return np.concatenate([np.zeros(LEAD_S * sr), x]), sr
    x8 = _to8k(x, sr)
    ch = telephone.channel_for(c.speaker or c.id, seed)
    y = telephone.simulate(np.concatenate([np.zeros(LEAD_S * 8000), x8]), ch, telephone.active_level_db(x8),
                           zlib.crc32(c.id.encode()))
    return y, 8000


def cold(model: AcousticAngerModel, x: np.ndarray, sr: int) -> float | None:
    st = SpeakerStream(sr)
    chunks = [st.process(x[i : i + sr]) for i in range(0, len(x), sr)][LEAD_S:]
    s = [v for v in (model.score(f, None) for f in chunks) if v is not None][:COLD_CHUNKS]
    return float(np.mean(s)) if s else None


def main() -> None:
    s = get_settings()
    path = s.models_dir / "acoustic-anger" / "model.json"
    models = {"shipped (v2 + CNN)": AcousticAngerModel.load(path),
              "cue networks alone (v2)": AcousticAngerModel.load(path, cnn=False)}
    clips = [c for c in corpora.load(s.data_dir / "speech") if c.corpus == corpora.TW and c.emotion in ("negative", "natural")]
    for condition in ("tel8k", "clean"):
        audio = [(c, *render(c, condition)) for c in clips]
        for name, m in models.items():
            sc = [(c.emotion == "negative", cold(m, x, sr)) for c, x, sr in audio]
            y = [a for a, v in sc if v is not None]
            p = [v for a, v in sc if v is not None]
            print(f"{condition}, {name}: negative vs natural AUC {roc_auc_score(y, p):.3f} "
                  f"({sum(y)} negative, {len(y) - sum(y)} natural clips scored)")


if __name__ == "__main__":
    main()
