#!/usr/bin/env bash
# Audio-only alerts out of sample on all six speaker corpora (training/fusion/eval_audio_calls_loco.py): each
# corpus is scored by the member's fold net that never heard it, with the member's artifact calibration.
#
#   bench/acoustic_loco_streams.sh FROM OUT NETS ARCH HEAD CH LABEL [CUE_FOLDS]
#
# FROM: a models folder holding the member's full artifact (`models` for the shipped one, or a folder of
# bench/acoustic_candidate.sh); NETS: the folder of `loco_cnn --save-nets` for the same configuration (needs
# <corpus>.pt for the six speaker corpora); OUT: a new folder, one models folder per corpus (links to FROM's other
# models, FROM's model.json, the fold net exported as cnn.onnx with the calibration kept).  ≈ 4 min on one thread.
# CUE_FOLDS (optional): the folder of `train_anger_loco --save-folds`: the v2 cue networks are then the fold's too
# (fully out of sample); without it they are FROM's (trained on every corpus).
# NORM (env): the nets' `loco_cnn --norm`.  MEMBER_NETS (env) "NETS2 ARCH HEAD CH NORM": a second configuration's
# `--save-nets` folder; each fold's member is then the mean of the two fold nets' logits.
set -euo pipefail
from=$1 out=$2 nets=$3 arch=$4 head=$5 ch=$6 label=$7 cue_folds=${8:-}
py=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=1 PYTHONPATH=.
pairs=()
for corpus in emodb nemo-polish ased-amharic ravdess-speech savee korean-emotiontts; do
  dir=$out/$corpus
  if [ -n "${MEMBER_NETS:-}" ]; then
    read -r nets2 rest <<< "$MEMBER_NETS"
    export MEMBER="$nets2/$corpus.pt $rest"
  fi
  bench/acoustic_fold_models.sh "$from" "$dir" "$nets/$corpus.pt" "$arch" "$head" "$ch" \
      ${cue_folds:+"$cue_folds/$corpus.json"}
  pairs+=("$corpus=$dir")
done
$py -m training.fusion.eval_audio_calls_loco --fold-dirs "${pairs[@]}" --label "$label" \
    --json "$out/streams.json" | tee "$out/streams.md"
