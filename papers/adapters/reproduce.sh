#!/usr/bin/env bash
# Per-language adapters (MMS) vs full fine-tuning vs a shared head on a frozen encoder, on the
# 1-hour track of every language, all from the same pretrained encoder; plus shared
# SentencePiece vs per-language character vocabularies, LID, and automatic vs oracle language.
#   needs: papers/hubert_lowres/reproduce.sh done (benchmark + iteration-2 encoder, and its
#   `pretrained_1h` run, which is the full fine-tuning row here).
# Every step is skipped when its output exists, so a rerun resumes. Knobs (env):
#   PRESET=paper  STEPS=500  LAYERS=6  BOTTLENECK=16  VOCAB=1000 (211 characters in the 1 h text)
#   FROZEN_LR=1e-2 (adapters and shared head; chosen on dev over 2e-3 and 5e-3, see README)
#   AUTO_LID=lid_finetuned (or lid)
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
FROZEN_LR=${FROZEN_LR:-1e-2}
AUTO_LID=${AUTO_LID:-lid_finetuned}  # which LID run picks the adapter for --adapter_lang auto
ENCODER=$PRE/hubert_it2
[ -d "$ENCODER/checkpoints" ] || { echo "no pretrained encoder at $ENCODER: run papers/hubert_lowres/reproduce.sh first" >&2; exit 1; }
mkdir -p "$RUNS"
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start ))s] $*"; }
common="root=$DATA,split=train_1h,init_from=$ENCODER,steps=$STEPS,layers=$LAYERS,bottleneck=$BOTTLENECK,vocab=$VOCAB"

# Trains one run from an experiments/ config (skipped when done), records its wall time and
# scores it on test (CER for CTC runs, accuracy + confusion matrix for LID runs).
train_and_score() {  # name experiment-config
  stamp "train $1 ($2)"
  local t0; t0=$(date +%s)
  python -m mlasr.train --config "experiments/$2" --workdir "$RUNS/$1"
  [ -f "$RUNS/$1/train_seconds" ] || echo $(( $(date +%s) - t0 )) > "$RUNS/$1/train_seconds"
  [ -f "$RUNS/$1/eval_test/results.json" ] || [ -f "$RUNS/$1/eval_test/lid.json" ] || \
    python -m mlasr.evaluate --workdir "$RUNS/$1" --split test
}

# Frozen-encoder systems train few parameters from zero (adapter up-projections, heads): they
# take a higher learning rate than full fine-tuning's 2e-3.
frozen="$common,lr=$FROZEN_LR"
train_and_score adapters_char "ctc_adapters.py:$frozen,mode=adapters,tokenizer=char_per_lang"
train_and_score shared_head "ctc_adapters.py:$frozen,mode=shared_head,tokenizer=char"
# Shared SentencePiece vs per-language characters: with adapters, and with full fine-tuning
# (whose character row is papers/hubert_lowres' pretrained_1h, same freeze and steps).
train_and_score adapters_spm "ctc_adapters.py:$frozen,mode=adapters,tokenizer=sentencepiece"
train_and_score full_spm \
  "ctc_adapters.py:$common,mode=full,tokenizer=sentencepiece,freeze_steps=$(( STEPS / 10 ))"

# LID: a probe on the frozen encoder (its defaults: 2000 steps at lr 1e-2), and the encoder
# fine-tuned for LID with the ASR fine-tuning budget, as MMS's LID models are.
lid="lid.py:root=$DATA,split=train_1h,init_from=$ENCODER,layers=$LAYERS"
train_and_score lid "$lid"
train_and_score lid_finetuned "$lid,train_encoder=1,steps=$STEPS,lr=2e-3"
stamp "adapters with the language picked by $AUTO_LID"
[ -f "$RUNS/adapters_char/eval_test_auto/results.json" ] || \
  python -m mlasr.evaluate --workdir "$RUNS/adapters_char" --split test --adapter_lang auto \
      --lid_workdir "$RUNS/$AUTO_LID"

stamp "table"
python papers/adapters/table.py --runs "$RUNS" --full "$PRE/pretrained_1h" --out "$RUNS/table.md"
stamp "done: $RUNS/table.md"
