"""The Ray path: a local Ray instance, 2 actors that load the models once, results in the same outputs."""
from __future__ import annotations

import shutil

import pytest
from helpers_batch import read_summary

from pipelines.batch.score import run_batch
from pipelines.settings import Settings
from tests.conftest import SAMPLE_AUDIO

pytest.importorskip("ray", reason="ray not installed (pip install 'nuqi[ray]')")


def test_ray_local_scores_like_the_local_runner(models, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("customer_angry_16k.wav", "customer_calm_16k.wav"):
        shutil.copy(SAMPLE_AUDIO / name, src / name)
    (src / "broken.wav").write_bytes(b"RIFF\x00\x00")
    res = run_batch([src], tmp_path / "ray_out", settings=Settings(), workers=2, ray_address="local", asr="off")
    assert res.progress.scored == 3 and res.progress.failed == 1
    by_name = {r.call: r for r in res.records}
    assert by_name["broken"].status == "error" and by_name["broken"].error
    assert "nuqi-ray-" not in by_name["broken"].error  # the worker's temp copy is not what the user sees
    header, rows = read_summary(tmp_path / "ray_out" / "summary.csv")
    assert len(rows) == 3 and rows[0]["file"] == str(src / "broken.wav")
    for name in ("customer_angry_16k", "customer_calm_16k"):
        assert (tmp_path / "ray_out" / "calls" / f"{name}.json").is_file()
        assert (tmp_path / "ray_out" / "calls" / f"{name}.html").is_file()
    # same pipeline, same numbers as scoring in this process
    local = run_batch([src / "customer_angry_16k.wav"], tmp_path / "local_out", models=models, asr="off").records[0]
    remote = by_name["customer_angry_16k"]
    assert remote.file == str(src / "customer_angry_16k.wav")
    for key in ("duration_s", "peak_stage", "max_anger_customer", "anger_seconds_customer", "silence_pct",
                "speech_rate_customer", "alert_count"):
        assert getattr(remote, key) == getattr(local, key), key
    # resume works the same way (and needs no Ray instance when everything is done)
    (src / "broken.wav").unlink()
    again = run_batch([src], tmp_path / "ray_out", settings=Settings(), workers=2, ray_address="local", asr="off")
    assert again.progress.skipped == 2 and again.progress.scored == 0
