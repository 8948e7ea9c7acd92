"""Train the acoustic anger model's CNN member (``models/acoustic-anger/cnn.onnx``) and add it to ``model.json``.

1. The net of :mod:`training.audio.loco_cnn` (ch 64, 20 epochs, tel8k + clean renderings of the seven emotion
   corpora, never Taiwan; v2's sample weights), trained once on all of them; exported to ONNX (input ``log_mel``
   [n, 100, 40] gain-normalised windows of :func:`pipelines.audio.logmel.cnn_windows`, output ``logit`` [n]) and
   checked against torch.
2. Calibration of the sum (v2 raw logit + ``weight`` × CNN raw logit), cold and opened, by Platt on the
   leave-one-corpus-out out-of-fold sums of ``loco_cnn --out`` (the per-clip CNN logits) and of the v2
   reference run (``loco --out``), weighted as v2's calibration (corpora equal, angry = non-angry), with v2's
   ``prior_shift``.  Clip level: the v2 part is the logit of the clip's mean chunk score, the CNN part the mean
   logit of its windows (cold: the first two), as in the LOCO figures.
3. ``model.json`` gets ``cnn`` = {file, weight, calib_cold, calib_opened} and a training record.

    OMP_NUM_THREADS=1 python -m training.audio.train_anger_cnn --loco /tmp/anger-res/cnn_served_e20_clean_c64_seed1.json \\
        --v2 /tmp/anger-res/v2_tel8k_open20.json
"""
from __future__ import annotations

import argparse
import json
import logging
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from pipelines.audio.anger_model import AcousticAngerModel
from pipelines.audio.logmel import N_MEL, WINDOW_FRAMES
from pipelines.settings import get_settings
from training.audio import corpora, mel_cache
from training.audio.loco_cnn import (
    ARCHS,
    COLD,
    HEADS,
    NORMS,
    SHARE,
    Net,
    corpus_weights,
    mean_logits,
    share_arg,
    train,
    training_windows,
)
from training.audio.train_anger_loco import _balanced, ece, platt

logger = logging.getLogger("nuqi.training.train_anger_cnn")


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return float(np.log(p / (1 - p)))


def export(net, path: Path) -> None:
    net.eval()
    x = torch.zeros((2, WINDOW_FRAMES, N_MEL))
    torch.onnx.export(net, (x,), str(path), input_names=["log_mel"], output_names=["logit"],
                      dynamic_axes={"log_mel": {0: "n"}, "logit": {0: "n"}}, opset_version=17, dynamo=False)


class MeanNet(torch.nn.Module):
    """Several trained nets as one member: the mean of their anger logits per window (one ONNX graph)."""

    def __init__(self, nets: list) -> None:
        super().__init__()
        self.nets = torch.nn.ModuleList(nets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([n(x) for n in self.nets]).mean(dim=0)


def load_member(spec: list[str]) -> Net:
    """``--member NET.pt ARCH HEAD CH [NORM]``: a net saved by ``--save-net`` (or ``loco_cnn --save-nets``) of
    another run; NORM as ``loco_cnn --norm`` (default ``none``)."""
    if len(spec) not in (4, 5):
        raise ValueError(f"a member is NET_PT ARCH HEAD CH [NORM], not {' '.join(spec)!r}")
    path, arch, head, ch = spec[:4]
    net = Net(int(ch), head, arch, spec[4] if len(spec) == 5 else "none")
    net.load_state_dict(torch.load(path))
    return net.eval()


def calibration(loco_oof: dict, v2_oof: dict, clips: dict, weight: float) -> dict:
    """Platt (a, b) of v2 raw + weight x CNN, cold and opened, on the out-of-fold clip scores of the emotion corpora."""
    out = {}
    for mode in ("cold", "opened"):
        xs, ys, cs = [], [], []
        for cid, d in loco_oof.items():
            c = clips[cid]
            p = (v2_oof.get(cid) or {}).get(mode)
            if c.corpus == corpora.TW or p is None or not d.get("logits"):
                continue
            cnn = float(np.mean(d["logits"][:COLD] if mode == "cold" else d["logits"]))
            xs.append(_logit(p) + weight * cnn)
            ys.append(int(c.emotion == "angry"))
            cs.append(c.corpus)
        x, y, cc = np.array(xs), np.array(ys), np.array(cs)
        w = _balanced(y, cc)
        a, b = platt(x, y, w)
        p = 1 / (1 + np.exp(-(a * x + b)))
        out[mode] = {"platt": [a, b], "clips": int(len(x)), "ece_balanced_all": round(ece(p, y, w), 4),
                     "ece_balanced_per_corpus": {k: round(ece(p[cc == k], y[cc == k], w[cc == k]), 4)
                                                 for k in np.unique(cc)}}
    return out


CUE_NET_KEYS = ("format", "min_speech_s", "models", "blend_absolute")


def keep_calibration(spec_path: Path, net_from: str, cue_nets: Path | None = None) -> None:
    """``model.json`` after only ``cnn.onnx`` was replaced: the member's calibration stays, the record says where
    the net came from.  ``cue_nets``: a fold's cue networks (``train_anger_loco --save-folds``) replace the v2 part
    too, so that the whole acoustic model never heard the fold's corpus."""
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    if "cnn" not in spec:
        raise ValueError(f"{spec_path} has no cnn block whose calibration could be kept")
    spec["cnn"]["file"] = "cnn.onnx"
    spec.setdefault("training", {}).setdefault("cnn", {})["net_from"] = f"{net_from} (exported with the artifact's calibration kept)"
    if cue_nets is not None:
        fold = json.loads(cue_nets.read_text(encoding="utf-8"))
        spec.update({k: fold[k] for k in CUE_NET_KEYS if k in fold})
        spec["training"]["cue_nets_from"] = str(cue_nets)
    spec_path.write_text(json.dumps(spec, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--loco", type=Path, nargs="+",
                    help="loco_cnn --out JSON (out-of-fold CNN logits per clip); with --member, one per net in the "
                         "same order (the net of these flags first): their mean logits are calibrated")
    ap.add_argument("--v2", type=Path, help="loco --out JSON of the v2 configuration (out-of-fold)")
    ap.add_argument("--epochs", type=int, default=20)  # the shipped member (the first one: 12)
    ap.add_argument("--ch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--share", type=float, nargs=3, default=None, metavar=("ANGRY", "CALM", "OTHER"),
                    help="sample-weight shares inside each corpus (default 0.5 0.3 0.2, as v2 and loco_cnn)")
    ap.add_argument("--head", choices=HEADS, default="binary", help="as loco_cnn --head (the LOCO run chose it)")
    ap.add_argument("--arch", choices=ARCHS, default="1d", help="as loco_cnn --arch")
    ap.add_argument("--norm", choices=NORMS, default="none", help="as loco_cnn --norm")
    ap.add_argument("--weight", type=float, default=1.0, help="CNN logit weight in the sum (fixed before the LOCO run)")
    ap.add_argument("--save-net", type=Path, default=None, help="also save the trained net's torch weights here")
    ap.add_argument("--load-net", type=Path, default=None,
                    help="take the net saved by --save-net (same flags) instead of training it again: calibrate and "
                         "export only (the member can be trained while its LOCO run, which the calibration needs, ends)")
    ap.add_argument("--member", nargs="+", action="append", default=[], metavar="NET_PT ARCH HEAD CH [NORM]",
                    help="add a net saved by another run's --save-net: the exported member is the mean of the nets' "
                         "logits (repeatable; with --keep-calibration, the same fold's nets of the other "
                         "configurations)")
    ap.add_argument("--keep-calibration", action="store_true",
                    help="only export the --load-net net into --out, keeping the cnn calibration its model.json has "
                         "(a LOCO fold's net served with its full artifact's calibration, for an out-of-sample check)")
    ap.add_argument("--cue-nets", type=Path, default=None,
                    help="with --keep-calibration: also replace the cue networks by a fold's (train_anger_loco "
                         "--save-folds DIR → DIR/<corpus>.json)")
    ap.add_argument("--out", type=Path, default=None, help="model folder (default <models_dir>/acoustic-anger)")
    a = ap.parse_args()
    if a.keep_calibration and a.load_net is None:
        ap.error("--keep-calibration exports the --load-net net (and its --member nets)")
    for m in a.member:
        if len(m) not in (4, 5):
            ap.error(f"--member takes NET_PT ARCH HEAD CH [NORM], not {' '.join(m)!r}")
    if a.cue_nets is not None and not a.keep_calibration:
        ap.error("--cue-nets goes with --keep-calibration")
    if not a.keep_calibration and (not a.loco or a.v2 is None):
        ap.error("--loco and --v2 are needed to calibrate the member")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    out = a.out or get_settings().models_dir / "acoustic-anger"
    clips = {c.id: c for c in corpora.load(get_settings().data_dir / "speech")}
    t0 = time.time()
    if a.keep_calibration:  # export only: a few windows check the export (all of them take minutes to load)
        x = training_windows(clips, mel_cache.load("tel8k", (corpora.EMOTION_CORPORA[0],)))[0]
    else:
        x, rc, rg, re_ = training_windows(clips, mel_cache.load("tel8k"),
                                          mel_cache.load("clean", corpora.EMOTION_CORPORA))
    share = share_arg(a.share)
    if a.load_net:
        net = Net(a.ch, a.head, a.arch, a.norm)
        net.load_state_dict(torch.load(a.load_net))
        net.eval()
        logger.info("net of the same flags loaded from %s (not retrained)", a.load_net)
    else:
        net = train(x, (rg == "angry").astype(np.float32), corpus_weights(rc, rg, share), a.epochs, a.seed, a.ch,
                    a.head, re_, a.arch, a.norm)
        logger.info("trained on %d windows in %.0f s", len(x), time.time() - t0)
    if a.save_net:
        torch.save(net.state_dict(), a.save_net)
    if a.member:
        if not a.keep_calibration and len(a.loco) != 1 + len(a.member):
            raise SystemExit("--loco needs one out-of-fold file per net (this run's first, then each --member)")
        net = MeanNet([net] + [load_member(m) for m in a.member]).eval()
    export(net, out / "cnn.onnx")
    with torch.no_grad():
        ref = net(torch.from_numpy(x[:64])).numpy()
    from pipelines.audio.anger_cnn import AngerCnn

    got = AngerCnn.load(out / "cnn.onnx")._sess.run(None, {"log_mel": x[:64]})[0]
    if not np.allclose(ref, got, atol=1e-4):
        raise SystemExit(f"ONNX export differs from torch (max {np.abs(ref - got).max():.2g})")
    spec_path = out / "model.json"
    if a.keep_calibration:
        keep_calibration(spec_path, " + ".join([str(a.load_net)] + [m[0] for m in a.member]), a.cue_nets)
        AcousticAngerModel.load(spec_path)
        logger.info("exported %s into %s with the calibration kept", a.load_net, out)
        return
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    oof = mean_logits([json.loads(f.read_text())["oof"] for f in a.loco])
    cal = calibration(oof, json.loads(a.v2.read_text())["oof"], clips, a.weight)
    spec["cnn"] = {"file": "cnn.onnx", "weight": a.weight, "calib_cold": cal["cold"]["platt"],
                   "calib_opened": cal["opened"]["platt"]}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    spec["training"]["cnn"] = {
        "trainer": "python -m training.audio.train_anger_cnn",
        "args": {"epochs": a.epochs, "ch": a.ch, "seed": a.seed, "head": a.head, "arch": a.arch, "norm": a.norm,
                 "net_from": str(a.load_net) if a.load_net else "trained in this run", "weight": a.weight,
                 "share": share or SHARE, "loco": [str(f) for f in a.loco], "v2": str(a.v2),
                 "members": [" ".join(m) for m in a.member]},
        "code_commit": commit, "windows": int(len(x)), "renderings": ["tel8k", "clean"],
        "corpora": list(corpora.EMOTION_CORPORA), "calibration": cal,
    }
    spec_path.write_text(json.dumps(spec, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    AcousticAngerModel.load(spec_path)  # loads with the member
    logger.info("wrote %s and %s (calibration %s)", out / "cnn.onnx", spec_path,
                {k: [round(v, 3) for v in c["platt"]] for k, c in cal.items()})


if __name__ == "__main__":
    main()
