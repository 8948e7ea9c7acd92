"""Emotional-speech corpora under ``<data_dir>/speech`` as one list of :class:`Clip` (labels normalised).

Emotion names are unified (anger→angry, happiness→happy, sadness→sad).  ``calm`` marks clips that may
form a speaker's calm opening (neutral; RAVDESS also ``calm``).  The Taiwan Mandarin set has valence
classes (negative / natural / positive) and no speaker ids; the URDU set's speaker ids are not usable
for splits or openings (ids are numbered per emotion folder, see its SOURCE.md).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

EMOTION_CORPORA = ("emodb", "nemo-polish", "ased-amharic", "ravdess-speech", "savee", "korean-emotiontts", "urdu-tv")
TW = "tw-mandarin-valence"
ALL = EMOTION_CORPORA + (TW,)
# corpora whose speaker ids identify one person across emotions (openings and leave-speaker-out are possible)
SPEAKER_CORPORA = ("emodb", "nemo-polish", "ased-amharic", "ravdess-speech", "savee", "korean-emotiontts")
_NORM = {"anger": "angry", "happiness": "happy", "sadness": "sad", "fearful": "fear"}


@dataclass(frozen=True)
class Clip:
    id: str  # "<corpus>/<path>"
    corpus: str
    path: Path
    emotion: str  # unified emotion, or the TW valence class
    speaker: str  # "<corpus>:<speaker>" ("" where speakers are unknown)
    calm: bool  # may form a calm opening (neutral / calm)

    @property
    def angry(self) -> bool:
        return self.emotion == "angry"


def load(root: Path, corpora: tuple[str, ...] = ALL) -> list[Clip]:
    out: list[Clip] = []
    for c in corpora:
        with open(root / c / "manifest.csv", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                if c == TW:
                    emo, spk = r["valence_class"], ""
                else:
                    emo = _NORM.get(r["emotion"], r["emotion"])
                    spk = f"{c}:{r['speaker']}" if c in SPEAKER_CORPORA else ""
                out.append(Clip(f"{c}/{r['path']}", c, root / c / r["path"], emo, spk, emo in ("neutral", "calm")))
    return out
