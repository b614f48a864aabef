#!/usr/bin/env bash
# Per-language adapters (MMS) vs full fine-tuning vs a shared head on a frozen encoder, on the
# 1-hour track of every language, all from the same pretrained encoder; plus shared
# SentencePiece vs per-language character vocabularies, LID, and automatic vs oracle language.
#   needs: papers/hubert_lowres/reproduce.sh done (benchmark + iteration-2 encoder, and its
#   `pretrained_1h` run, which is the full fine-tuning row here).
# Every step is skipped when its output exists, so a rerun resumes. Knobs (env):
#   PRESET=paper  STEPS=500  LAYERS=6  BOTTLENECK=16  VOCAB=1000 (211 characters in the 1 h text)
set -euo pipefail
cd "$(dirname "$0")/../.."
PRESET=${PRESET:-paper}
DATA=${DATA:-$HOME/mlasr_data}/$PRESET
PRE=${PRE:-$HOME/mlasr_runs}/hubert_lowres_$PRESET
RUNS=${RUNS:-$HOME/mlasr_runs}/adapters_$PRESET
STEPS=${STEPS:-500}
LAYERS=${LAYERS:-6}
BOTTLENECK=${BOTTLENECK:-16}
VOCAB=${VOCAB:-1000}
ENCODER=$PRE/hubert_it2
[ -d "$ENCODER/checkpoints" ] || { echo "no pretrained encoder at $ENCODER: run papers/hubert_lowres/reproduce.sh first" >&2; exit 1; }
mkdir -p "$RUNS"
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start ))s] $*"; }
common="root=$DATA,split=train_1h,init_from=$ENCODER,steps=$STEPS,layers=$LAYERS,bottleneck=$BOTTLENECK,vocab=$VOCAB"

# Trains one system (skipped when done), records its wall time and scores it on test.
train_and_score() {  # name mode tokenizer
  stamp "train $1 ($2, $3)"
  local t0; t0=$(date +%s)
  python -m mlasr.train --config "experiments/ctc_adapters.py:$common,mode=$2,tokenizer=$3" \
      --workdir "$RUNS/$1"
  [ -f "$RUNS/$1/train_seconds" ] || echo $(( $(date +%s) - t0 )) > "$RUNS/$1/train_seconds"
  [ -f "$RUNS/$1/eval_test/per_utt.tsv" ] || python -m mlasr.evaluate --workdir "$RUNS/$1" --split test
}

train_and_score adapters_char adapters char_per_lang
train_and_score shared_head shared_head char

stamp "language identification (frozen encoder)"
python -m mlasr.train --config "experiments/lid.py:root=$DATA,split=train_1h,init_from=$ENCODER,steps=300,layers=$LAYERS" \
    --workdir "$RUNS/lid"
[ -f "$RUNS/lid/eval_test/lid.json" ] || python -m mlasr.evaluate --workdir "$RUNS/lid" --split test
stamp "adapters with the language picked by LID"
[ -f "$RUNS/adapters_char/eval_test_auto/results.json" ] || \
  python -m mlasr.evaluate --workdir "$RUNS/adapters_char" --split test --adapter_lang auto \
      --lid_workdir "$RUNS/lid"

train_and_score adapters_spm adapters sentencepiece

stamp "table"
python papers/adapters/table.py --runs "$RUNS" --full "$PRE/pretrained_1h" --out "$RUNS/table.md"
stamp "done: $RUNS/table.md"
