"""The CNN member's export (training/audio/train_anger_cnn.py): nets of either shape and head, and a mean of
several nets, load in the service's AngerCnn and give torch's logits."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.audio.anger_cnn import AngerCnn
from pipelines.audio.logmel import N_MEL, WINDOW_FRAMES
from training.audio.loco_cnn import Net
from training.audio.train_anger_cnn import MeanNet, export, load_member


@pytest.mark.parametrize(("arch", "head"), [("1d", "binary"), ("2d", "softmax"), ("1d", "aux")])
def test_export_gives_torch_logits(tmp_path, arch, head):
    torch.manual_seed(0)
    net = Net(8, head, arch).eval()
    export(net, tmp_path / "cnn.onnx")
    x = np.random.default_rng(0).normal(0.0, 5.0, (5, WINDOW_FRAMES, N_MEL)).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    got = AngerCnn.load(tmp_path / "cnn.onnx")._sess.run(None, {"log_mel": x})[0]
    assert got.shape == (5,) and np.allclose(ref, got, atol=1e-4)


def test_mean_of_saved_nets_is_one_member(tmp_path):
    torch.manual_seed(0)
    a, b = Net(8, "softmax", "1d").eval(), Net(8, "binary", "2d").eval()
    torch.save(b.state_dict(), tmp_path / "b.pt")
    both = MeanNet([a, load_member([str(tmp_path / "b.pt"), "2d", "binary", "8"])]).eval()
    export(both, tmp_path / "cnn.onnx")
    x = np.random.default_rng(1).normal(0.0, 5.0, (3, WINDOW_FRAMES, N_MEL)).astype(np.float32)
    with torch.no_grad():
        ref = (a(torch.from_numpy(x)) + b(torch.from_numpy(x))).numpy() / 2
    got = AngerCnn.load(tmp_path / "cnn.onnx")._sess.run(None, {"log_mel": x})[0]
    assert np.allclose(ref, got, atol=1e-4)


def test_member_with_its_norm_loads_as_saved(tmp_path):
    torch.manual_seed(0)
    cmn = Net(8, "binary", "1d", "cmn").eval()
    torch.save(cmn.state_dict(), tmp_path / "cmn.pt")
    x = torch.from_numpy(np.random.default_rng(2).normal(0.0, 5.0, (3, WINDOW_FRAMES, N_MEL)).astype(np.float32))
    got = load_member([str(tmp_path / "cmn.pt"), "1d", "binary", "8", "cmn"])
    plain = load_member([str(tmp_path / "cmn.pt"), "1d", "binary", "8"])  # same weights, no normalisation
    with torch.no_grad():
        assert torch.allclose(got(x), cmn(x), atol=1e-5)
        # a spectral tilt moves the plain net's logits, not the cmn net's: the norm is part of the member
        tilt = torch.linspace(-3.0, 3.0, N_MEL)
        assert torch.allclose(got(x + tilt), got(x), atol=1e-4)
        assert not torch.allclose(plain(x + tilt), plain(x), atol=1e-3)
    with pytest.raises(ValueError, match="NET_PT ARCH HEAD CH"):
        load_member([str(tmp_path / "cmn.pt"), "1d", "binary"])


def test_keep_calibration_swaps_the_net_only(tmp_path):
    import json

    from training.audio.train_anger_cnn import keep_calibration

    spec = {"cnn": {"file": "old.onnx", "weight": 1.0, "calib_cold": [0.3, 0.2], "calib_opened": [0.4, 0.1]},
            "training": {"cnn": {"args": {"epochs": 20}}}}
    path = tmp_path / "model.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    keep_calibration(path, "/nets/emodb.pt")
    got = json.loads(path.read_text(encoding="utf-8"))
    assert got["cnn"] == {**spec["cnn"], "file": "cnn.onnx"}
    assert got["training"]["cnn"]["args"] == {"epochs": 20} and "/nets/emodb.pt" in got["training"]["cnn"]["net_from"]
    path.write_text(json.dumps({"training": {}}), encoding="utf-8")
    with pytest.raises(ValueError, match="no cnn block"):
        keep_calibration(path, "x.pt")


def test_keep_calibration_with_a_folds_cue_networks(tmp_path):
    import json

    from training.audio.train_anger_cnn import keep_calibration

    cnn = {"file": "old.onnx", "weight": 1.0, "calib_cold": [0.3, 0.2], "calib_opened": [0.4, 0.1]}
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"format": "f", "models": {"absolute": {"calib": [1, 0]}}, "blend_absolute": 0.3,
                                "cnn": cnn, "training": {"trainer": "full"}}), encoding="utf-8")
    fold = tmp_path / "emodb.json"
    fold.write_text(json.dumps({"format": "f", "min_speech_s": 0.15, "models": {"absolute": {"calib": [2, 1]}},
                                "blend_absolute": 0.3, "training": {"fold_without": "emodb"}}), encoding="utf-8")
    keep_calibration(path, "/nets/emodb.pt", fold)
    got = json.loads(path.read_text(encoding="utf-8"))
    # the cue networks are the fold's, the CNN member's calibration and the training record stay the artifact's
    assert got["models"] == {"absolute": {"calib": [2, 1]}} and got["min_speech_s"] == 0.15
    assert got["cnn"] == {**cnn, "file": "cnn.onnx"}
    assert got["training"]["trainer"] == "full" and got["training"]["cue_nets_from"] == str(fold)
