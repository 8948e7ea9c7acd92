"""Syllable-nucleus counts vs EmoDB's hand-labelled syllables (labsilb)."""
from __future__ import annotations

import pytest

from helpers_audio import at_rate, emodb
from training.audio.eval_rate import read_labsilb, run_clip

# test-split clips (speakers 12-16: not used to tune the detector) whose speech ends before 2 s
CLIPS = ["13a01Nb", "14a02Nc", "14a04Wb", "13a07Na", "12a01Wc", "13b10Wa"]


@pytest.mark.parametrize("sr", [16000, 8000])
def test_syllable_count_close_to_labels(data_dir, sr):
    det = tru = 0
    for name in CLIPS:
        segs = read_labsilb(data_dir / "speech" / "emodb" / "labsilb" / f"{name}.labsilb")
        syl = [s for s in segs if s[2] != "."]
        n_true = len(syl)
        assert syl[-1][1] < 1.95, name
        n_det, speech_s = run_clip(at_rate(emodb(data_dir, name), sr), sr)
        assert abs(n_det - n_true) <= max(3, 0.4 * n_true), (name, n_det, n_true)
        assert 0.5 < speech_s < 2.2
        det += n_det
        tru += n_true
    assert abs(det - tru) / tru < 0.2
