"""QA reports carry no personal data from a transcript sidecar (issue 17 item 12)."""
from __future__ import annotations

import json
import shutil

from pipelines.batch.records import CallJob, ScoreOptions
from pipelines.batch.scorer import Scorer
from tests.conftest import SAMPLE_AUDIO

SECRETS = ("13812345678", "137.1234.5678", "11010519491231002X", "6222 0212 3456 7890")


def test_qa_report_masks_sidecar_transcripts(models, tmp_path):
    wav = tmp_path / "call.wav"
    shutil.copy(SAMPLE_AUDIO / "call_escalating_8k.wav", wav)
    doc = json.loads((SAMPLE_AUDIO / "call_escalating_8k.json").read_text(encoding="utf-8"))
    doc["turns"][3]["text"] = "我电话13812345678，备用137.1234.5678，身份证11010519491231002X。"
    doc["turns"][11]["text"] = "卡号6222 0212 3456 7890扣了钱，我要投诉！再不解决我就打12315！"
    sidecar = tmp_path / "call.json"
    sidecar.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    out = Scorer(models, ScoreOptions(asr="off")).score(CallJob(path=str(wav), name="call", sidecar=str(sidecar)))
    assert out.record.status == "ok", out.record.error
    for text in (out.json_text, out.html_text):
        assert text and "[手机号]" in text and "[身份证]" in text and "[银行卡]" in text
        for secret in SECRETS:
            assert secret not in text
    payload = json.loads(out.json_text)
    turn = next(u for u in payload["utterances"] if "[银行卡]" in u["text"])
    assert "12315" in {h["term"] for h in turn["keywords"]}  # the words are still there ...
    assert all("start" not in h for h in turn["keywords"])  # ... without offsets into the changed text
    assert "<mark" in out.html_text
