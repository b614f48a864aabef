#!/usr/bin/env bash
# HuBERT pretraining vs from-scratch CTC in the low-resource setting, end to end:
#   paper benchmark -> MFCC k-means (K=100) -> HuBERT iteration 1 -> layer k-means (K=500) ->
#   iteration 2 -> multilingual CTC fine-tuning on the 10-minute and 1-hour subsets (ML-SUPERB
#   multilingual track), pretrained and from scratch with the same architecture and budget ->
#   per-language test CER with 95% CIs and a paired bootstrap.
# Every step is skipped when its output exists, so a rerun resumes. Scale with env variables:
#   PRESET=paper|demo  PRETRAIN_STEPS  FINETUNE_STEPS  FINETUNE_LR  FREEZE_STEPS  LAYERS  IT2_LAYER
set -euo pipefail
cd "$(dirname "$0")/../.."
PRESET=${PRESET:-paper}
DATA=${DATA:-$HOME/mlasr_data}/$PRESET
RUNS=${RUNS:-$HOME/mlasr_runs}/hubert_lowres_$PRESET
PRETRAIN_STEPS=${PRETRAIN_STEPS:-500}
FINETUNE_STEPS=${FINETUNE_STEPS:-500}
# 300 steps at lr 1e-3 left both inits on the CTC blank plateau (loss ~4.1) in a measured run.
FINETUNE_LR=${FINETUNE_LR:-2e-3}
FREEZE_STEPS=${FREEZE_STEPS:-$(( FINETUNE_STEPS / 10 ))}
LAYERS=${LAYERS:-6}
IT2_LAYER=${IT2_LAYER:-4}
LANGS="commonvoice:en commonvoice:it commonvoice:ca commonvoice:ru commonvoice:hi commonvoice:mr commonvoice:te voxpopuli:cs voxpopuli:fi"
SOURCES=$(echo $LANGS | tr ' ' '+')
with_split() { for d in $LANGS; do printf "%s:%s," "$d" "$1"; done | sed 's/,$//'; }
TRAIN=$(with_split train); DEV=$(with_split dev)
mkdir -p "$RUNS"
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start ))s] $*"; }

stamp "benchmark ($PRESET)"
python -m data_prep.synth_benchmark --preset "$PRESET" --out "$DATA"
python -m mlasr.data.tfds_builder "$DATA" "$DATA/tfds" $LANGS --num_workers 2

stamp "iteration 1 targets: MFCC k-means"
# Each step is skipped once the file it writes last exists (features.json, fit.json, and
# diagnostics.md, written when every label shard is done); an interrupted dump_labels resumes
# shard by shard.
[ -f "$RUNS/feats_it1/features.json" ] || \
  python -m data_prep.extract_features --data_dir "$DATA/tfds" --datasets "$TRAIN" \
      --features mfcc --fraction 0.1 --out "$RUNS/feats_it1"
[ -f "$RUNS/km_it1/fit.json" ] || \
  python -m data_prep.fit_kmeans --features "$RUNS/feats_it1" --out "$RUNS/km_it1" --k 100
[ -f "$RUNS/labels_it1/diagnostics.md" ] || \
  python -m data_prep.dump_labels --data_dir "$DATA/tfds" --datasets "$TRAIN,$DEV" \
      --kmeans "$RUNS/km_it1" --out "$RUNS/labels_it1"
stamp "iteration 1 pretraining"
python -m mlasr.train --config "experiments/hubert_pretrain.py:root=$DATA,labels=$RUNS/labels_it1,label_rate=100,steps=$PRETRAIN_STEPS,layers=$LAYERS" \
    --config.eval_every=$(( PRETRAIN_STEPS / 2 )) --workdir "$RUNS/hubert_it1"

stamp "iteration 2 targets: layer $IT2_LAYER k-means"
[ -f "$RUNS/feats_it2/features.json" ] || \
  python -m data_prep.extract_features --data_dir "$DATA/tfds" --datasets "$TRAIN" \
      --features "layer:$IT2_LAYER" --workdir "$RUNS/hubert_it1" --fraction 0.1 --out "$RUNS/feats_it2"
[ -f "$RUNS/km_it2/fit.json" ] || \
  python -m data_prep.fit_kmeans --features "$RUNS/feats_it2" --out "$RUNS/km_it2" --k 500
[ -f "$RUNS/labels_it2/diagnostics.md" ] || \
  python -m data_prep.dump_labels --data_dir "$DATA/tfds" --datasets "$TRAIN,$DEV" \
      --kmeans "$RUNS/km_it2" --out "$RUNS/labels_it2"
it2_rate=$(python -c "import json; print(json.load(open('$RUNS/labels_it2/meta.json'))['label_rate'])")
stamp "iteration 2 pretraining"
python -m mlasr.train --config "experiments/hubert_pretrain.py:root=$DATA,labels=$RUNS/labels_it2,label_rate=$it2_rate,steps=$PRETRAIN_STEPS,layers=$LAYERS" \
    --config.eval_every=$(( PRETRAIN_STEPS / 2 )) --workdir "$RUNS/hubert_it2"

for track in 10min 1h; do
  for init in pretrained scratch; do
    from=""; [ "$init" = pretrained ] && from="$RUNS/hubert_it2"
    stamp "fine-tune $init on train_$track"
    python -m mlasr.train --config "experiments/ctc_finetune.py:root=$DATA,sources=$SOURCES,split=train_$track,init_from=$from,steps=$FINETUNE_STEPS,lr=$FINETUNE_LR,freeze_steps=$FREEZE_STEPS,layers=$LAYERS" \
        --workdir "$RUNS/${init}_$track"
    [ -f "$RUNS/${init}_$track/eval_test/per_utt.tsv" ] || \
      python -m mlasr.evaluate --workdir "$RUNS/${init}_$track" --split test
  done
done

stamp "comparison"
python papers/hubert_lowres/compare.py --runs "$RUNS" --split test --out "$RUNS/table.md"
stamp "done: $RUNS/table.md"
