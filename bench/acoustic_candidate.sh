#!/usr/bin/env bash
# Check a candidate CNN member of the acoustic anger model through the served path, in a copy of the models.
#
#   bench/acoustic_candidate.sh DIR NET_PT ARCH HEAD CH LOCO_JSON V2_JSON [EPOCHS]
#
# DIR: a new folder (e.g. /tmp/models-2d); NET_PT: the net of `loco_cnn --save-net` (the Taiwan fold's net, trained
# on all seven emotion corpora) or of `train_anger_cnn --save-net`; LOCO_JSON: that configuration's out-of-fold file
# (`loco_cnn --out` or `--merge`); V2_JSON: `loco --out` of the v2 reference.  DIR gets links to every shipped
# model except acoustic-anger, which gets the shipped model.json plus the candidate's cnn.onnx and calibration
# (`train_anger_cnn --load-net`).  Then, served with NUQI_MODELS_DIR=DIR: Taiwan (8 kHz / clean), the sample
# calls, the audio-only fusion streams (EmoDB + the held-out Mandarin calm stream) and the audio tests.
# Run the same checks on the shipped models (DIR = models) in the same hour to compare.  ≈ 8 min on one thread.
set -euo pipefail
dir=$1 net=$2 arch=$3 head=$4 ch=$5 loco_json=$6 v2_json=$7 epochs=${8:-20}
py=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=1 PYTHONPATH=.
if [ "$dir" != models ]; then
  mkdir -p "$dir/acoustic-anger"
  for m in models/*/; do
    name=$(basename "$m")
    [ "$name" = acoustic-anger ] || ln -sfn "$PWD/$m" "$dir/$name"
  done
  cp models/acoustic-anger/model.json "$dir/acoustic-anger/model.json"
  $py -m training.audio.train_anger_cnn --load-net "$net" --arch "$arch" --head "$head" --ch "$ch" --epochs "$epochs" \
      --loco "$loco_json" --v2 "$v2_json" --out "$dir/acoustic-anger"
fi
export NUQI_MODELS_DIR=$dir
$py bench/served_taiwan.py
$py bench/sample_call_acoustic.py
$py -m training.fusion.eval_audio_calls --params models/fusion/params.json --json "/tmp/audio_calls_$(basename "$dir").json"
$py -m pytest -q -p no:cacheprovider --basetemp="/tmp/pt-candidate-$$" tests/pipelines/audio
