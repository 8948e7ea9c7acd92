#!/usr/bin/env bash
# The audio-only EmoDB streams with a CNN member that never heard EmoDB (out of sample), for a fair comparison of
# two members: both the shipped nets and candidates are trained on EmoDB, so the in-sample streams of
# `eval_audio_calls` favour the net that fits its training corpora more tightly.
#
#   bench/acoustic_emodb_out.sh FROM DIR NET_PT ARCH HEAD CH
#
# FROM: a models folder whose acoustic-anger holds the member's full artifact (`models` for the shipped one, or a
# folder of bench/acoustic_candidate.sh); NET_PT: the same configuration's EmoDB-fold net (`loco_cnn --held emodb
# --save-nets D` → D/emodb.pt); DIR: a new folder.  DIR gets links to FROM's other models and FROM's
# acoustic-anger/model.json with the fold net exported as cnn.onnx, calibration kept (`train_anger_cnn
# --keep-calibration`).  The v2 cue networks stay the served ones (in sample for 9 of the 10 EmoDB speakers).
set -euo pipefail
from=$1 dir=$2 net=$3 arch=$4 head=$5 ch=$6
py=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=1 PYTHONPATH=.
bench/acoustic_fold_models.sh "$from" "$dir" "$net" "$arch" "$head" "$ch"
NUQI_MODELS_DIR=$dir $py -m training.fusion.eval_audio_calls --params models/fusion/params.json \
    --json "/tmp/audio_calls_$(basename "$dir").json"
