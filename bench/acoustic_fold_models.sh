#!/usr/bin/env bash
# A models folder whose acoustic member is a LOCO fold's net: links to FROM's other models, FROM's
# acoustic-anger/model.json, and NET_PT exported as cnn.onnx with FROM's calibration kept
# (`train_anger_cnn --keep-calibration`).  Used by acoustic_emodb_out.sh and acoustic_loco_streams.sh.
# CUE_NETS (optional): the same fold's cue networks (`train_anger_loco --save-folds DIR` → DIR/<corpus>.json), so
# that the whole acoustic model, not only its CNN member, never heard the corpus.
#
# NORM (env, optional): the net's `loco_cnn --norm`.  MEMBER (env, optional): "NET_PT ARCH HEAD CH NORM" of a second
# net of the same fold; the exported member is then the mean of the two nets' logits (`train_anger_cnn --member`).
#
#   bench/acoustic_fold_models.sh FROM DIR NET_PT ARCH HEAD CH [CUE_NETS]
set -euo pipefail
from=$1 dir=$2 net=$3 arch=$4 head=$5 ch=$6 cue=${7:-}
py=${PY:-.venv/bin/python}
mkdir -p "$dir/acoustic-anger"
for m in "$from"/*/; do
  name=$(basename "$m")
  [ "$name" = acoustic-anger ] || ln -sfn "$(cd "$m" && pwd -P)" "$dir/$name"
done
cp "$from/acoustic-anger/model.json" "$dir/acoustic-anger/model.json"
OMP_NUM_THREADS=1 PYTHONPATH=. $py -m training.audio.train_anger_cnn --load-net "$net" --arch "$arch" --head "$head" \
    --ch "$ch" --norm "${NORM:-none}" ${MEMBER:+--member $MEMBER} --keep-calibration ${cue:+--cue-nets "$cue"} \
    --out "$dir/acoustic-anger"
