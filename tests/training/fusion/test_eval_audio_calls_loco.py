"""Out-of-sample audio-only streams on the speaker corpora: how they are built, and one SAVEE speaker end to end."""
from __future__ import annotations

from dataclasses import replace

import pytest
import soundfile as sf

from training.audio import corpora
from training.fusion.eval_audio_calls_loco import BODIES, BODY_S, OPENING_S, fold_dirs_arg, score, streams, table


@pytest.fixture(scope="module")
def savee(data_dir):
    return corpora.load(data_dir / "speech", ("savee",))


def test_streams_open_calm_and_keep_bodies_apart(savee):
    items = streams(savee)
    assert items == streams(savee)  # seeded
    speakers = {c.speaker for c in savee}
    assert {s.speaker for s in items} == speakers and {s.body for s in items} == set(BODIES)
    by_path = {c.path: c for c in savee}
    for s in items:
        opening = [by_path[p] for p in s.opening]
        assert all(c.calm and c.speaker == s.speaker for c in opening)
        # the opening stops once it holds OPENING_S s (or two thirds of the speaker's calm clips)
        assert sum(sf.info(p).duration for p in s.opening[:-1]) < OPENING_S
        body = [by_path[p] for p in s.clips]
        assert all(c.emotion in BODIES[s.body] and c.speaker == s.speaker for c in body)
        assert not set(s.clips) & set(s.opening)
        assert sum(sf.info(p).duration for p in s.clips[:-1]) < BODY_S


def test_angry_body_scores_above_calm_body(savee, models):
    reg = replace(models, settings=models.settings.updated(baseline_seconds=8.0))
    spk = sorted({c.speaker for c in savee})[0]
    items = [s for s in streams([c for c in savee if c.speaker == spk]) if s.body in ("anger", "calm")]
    got = {r.body: r for r in score(items, reg)}
    assert got["anger"].peak_fused > got["calm"].peak_fused
    assert got["anger"].p90_acoustic > got["calm"].p90_acoustic
    md = table(list(got.values()), "shipped")
    assert md.count("| shipped | savee |") == 2 and md.count("**pooled**") == 2


def test_fold_dirs_name_speaker_corpora():
    assert fold_dirs_arg(["emodb=/tmp/x"])["emodb"].name == "x"
    with pytest.raises(SystemExit, match="urdu-tv"):
        fold_dirs_arg(["urdu-tv=/tmp/x"])
    with pytest.raises(SystemExit, match="CORPUS=DIR"):
        fold_dirs_arg(["emodb"])
