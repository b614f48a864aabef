#!/usr/bin/env bash
# Submits slurm_train.sbatch: NODES (default 2) x GPUS_PER_NODE (default 8), one task per GPU.
#   CONFIG=experiments/x.py:root=/data WORKDIR=/shared/runs/x NODES=2 \
#     tpu_scripts/slurm_submit.sh [--partition=gpu ...] [--dry-run]
# Extra arguments go to sbatch.
source "$(dirname "$0")/common.sh"
require CONFIG WORKDIR
NODES="${NODES:-2}"
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
run sbatch --nodes="$NODES" --ntasks-per-node="$GPUS_PER_NODE" --gpus-per-node="$GPUS_PER_NODE" \
  --export="ALL,CONFIG=$CONFIG,WORKDIR=$WORKDIR,GPUS_PER_NODE=$GPUS_PER_NODE" "${ARGS[@]}" \
  "$(dirname "$0")/slurm_train.sbatch"
