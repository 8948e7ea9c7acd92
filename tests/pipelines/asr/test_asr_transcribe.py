"""`nuqi transcribe`: committed recordings and real read Mandarin (AISHELL sample) through the real engine."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from pipelines.asr.filters import character_error_rate
from pipelines.asr.transcribe import transcribe_file
from pipelines.errors import InputError
from pipelines.settings import Settings

REPO = Path(__file__).resolve().parents[3]
CALM = REPO / "sample_audio" / "customer_calm_16k.wav"
CALM_TEXT = "你好，我想查询一下订单什么时候能到，麻烦你帮我看一下，谢谢。"
ESCALATING = REPO / "sample_audio" / "call_escalating_8k.wav"
AISHELL = Settings().data_dir / "speech" / "aishell-sample-dev"


def test_transcribes_committed_recording(engine) -> None:
    out = transcribe_file(engine, CALM)
    assert out["file"] == str(CALM) and out["sample_rate"] == 16000 and out["channel"] == 0
    assert character_error_rate(CALM_TEXT, out["text"]) < 0.5, out["text"]
    assert out["segments"] and out["text"] == "".join(s["text"] for s in out["segments"])
    for s in out["segments"]:
        assert 0.0 <= s["start"] < s["end"] <= out["duration_s"] + 0.05
        assert 0.0 < s["confidence"] <= 1.0
    json.dumps(out, ensure_ascii=False)  # JSON-ready


def test_stereo_needs_a_channel_and_the_customer_channel_has_the_complaint(engine) -> None:
    with pytest.raises(InputError, match="--channel"):
        transcribe_file(engine, ESCALATING)
    with pytest.raises(InputError, match="channel 2 does not exist"):
        transcribe_file(engine, ESCALATING, channel=2)
    out = transcribe_file(engine, ESCALATING, channel=1)
    assert out["sample_rate"] == 8000 and out["channel"] == 1
    assert out["segments"][0]["start"] > 4.0  # the customer's first turn starts at 5.56 s


@pytest.mark.skipif(not (AISHELL / "manifest.csv").is_file(), reason="AISHELL sample not in the data dir")
@pytest.mark.parametrize("rate", [16000, 8000])
def test_real_read_mandarin(engine, tmp_path: Path, rate: int) -> None:
    """Two real AISHELL news sentences, as files at 16 kHz and at 8 kHz: most characters right."""
    with open(AISHELL / "manifest.csv", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["path"].endswith(("W0320.wav", "W0409.wav"))]
    assert len(rows) == 2
    for row in rows:
        audio, sr = sf.read(AISHELL / row["path"], dtype="float32")
        if rate != sr:
            audio = soxr.resample(audio, sr, rate).astype(np.float32)
        path = tmp_path / f"{Path(row['path']).stem}_{rate}.wav"
        sf.write(path, audio, rate, subtype="PCM_16")
        out = transcribe_file(engine, path)
        assert character_error_rate(row["text"], out["text"]) < 0.35, (row["text"], out["text"])


def test_cli_prints_one_json_object_per_file(assembled_model_dir: Path, monkeypatch, capsys) -> None:
    from app import cli
    from pipelines.settings import get_settings

    monkeypatch.setenv("NUQI_ASR_MODEL_DIR", str(assembled_model_dir))
    get_settings.cache_clear()
    try:
        rc = cli.main(["transcribe", str(CALM), str(REPO / "sample_audio" / "missing.wav")])
    finally:
        get_settings.cache_clear()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rc == 1 and len(lines) == 2
    assert lines[0]["file"] == str(CALM) and lines[0]["text"] and lines[0]["segments"]
    assert lines[1]["error"]["code"] == "audio_decode_error"
