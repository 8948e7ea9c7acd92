"""Served-path model comparison (training/text/compare_models.py) on a slice of the real text data and the
shipped text-emotion model."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from pipelines.settings import get_settings
from pipelines.text.emotion import TextEmotionModel
from training.text.compare_models import calib_figures, ensemble, main, wins
from training.text.train_emotion import served_log_probs


@pytest.fixture(scope="module")
def shipped_dir():
    return get_settings().models_dir / "text-emotion"


@pytest.fixture(scope="module")
def small_text_root(tmp_path_factory, data_dir):
    """The real corpora cut to their first lines, in the layout ``calib_and_smp_dev`` reads."""
    src, root = data_dir / "text", tmp_path_factory.mktemp("text")
    for sub in ("smp2020-ewect", "nlpcc2013-weibo", "cped-valid"):
        (root / sub).mkdir()
    for name in ("usual_train.jsonl", "virus_train.jsonl"):
        lines = (src / "smp2020-ewect" / name).read_text(encoding="utf-8").splitlines()[:400]
        (root / "smp2020-ewect" / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    for name in ("usual_eval_labeled.json", "virus_eval_labeled.json"):
        rows = json.loads((src / "smp2020-ewect" / name).read_text(encoding="utf-8"))[:30]
        (root / "smp2020-ewect" / name).write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    lines = (src / "nlpcc2013-weibo" / "Nlpcc2013Train.csv").read_text(encoding="utf-8-sig").splitlines()[:300]
    (root / "nlpcc2013-weibo" / "Nlpcc2013Train.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    lines = (src / "cped-valid" / "valid_split.csv").read_text(encoding="utf-8-sig").splitlines()[:60]
    (root / "cped-valid" / "valid_split.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_ensemble_of_a_model_with_itself_is_the_model(shipped_dir):
    model = TextEmotionModel.load(shipped_dir)
    lp = served_log_probs(model, ["你们这是什么破服务，气死我了！", "谢谢你，问题解决了", "我等了三个小时还没人管"])
    np.testing.assert_allclose(np.exp(lp).sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(ensemble([lp, lp]), lp, atol=1e-5)
    assert lp[0].argmax() == 0  # angry


def test_calib_figures_and_the_selection_rule():
    lp = np.log(np.array([[0.7, 0.1, 0.1, 0.05, 0.03, 0.02], [0.1, 0.6, 0.1, 0.1, 0.05, 0.05],
                          [0.5, 0.1, 0.2, 0.1, 0.05, 0.05]]))
    f = calib_figures(lp, [0, 1, 2])
    assert f["anger_f1"] == pytest.approx(2 / 3, abs=1e-4)
    assert 0 < f["nll"] and 0 <= f["ece"] <= 1
    ref = {"macro_f1": 0.70, "anger_f1": 0.77}
    assert wins({"macro_f1": 0.70, "anger_f1": 0.78}, ref)
    assert not wins({"macro_f1": 0.72, "anger_f1": 0.76}, ref)
    assert not wins({"macro_f1": 0.69, "anger_f1": 0.80}, ref)


def test_compare_two_copies_of_the_shipped_model_end_to_end(shipped_dir, small_text_root, tmp_path):
    shutil.copytree(shipped_dir, tmp_path / "copy")
    out = tmp_path / "cmp.json"
    assert main([str(shipped_dir), str(tmp_path / "copy"), "--dev",
                 "--data-dir", str(small_text_root), "--out", str(out)]) == 0
    res = json.loads(out.read_text(encoding="utf-8"))
    shipped, copy = str(shipped_dir), str(tmp_path / "copy")
    assert res["n_calib"] > 20
    assert res["calib"][shipped] == res["calib"][copy] == res["calib"]["ensemble"]
    assert res["wins_on_calib"] == {copy: True, "ensemble": True}
    assert set(res["dev"]) == {"smp_usual_eval", "smp_virus_eval", "cped_valid"}
    for figures in res["dev"].values():
        assert figures[shipped] == figures[copy]
    assert res["dev"]["cped_valid"][shipped]["n"] > 40
