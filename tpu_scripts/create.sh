#!/usr/bin/env bash
# Creates the TPU VM slice: PROJECT ZONE ACCELERATOR_TYPE [TPU_NAME RUNTIME_VERSION SPOT=1].
#   PROJECT=p ZONE=us-central2-b ACCELERATOR_TYPE=v4-32 tpu_scripts/create.sh [--dry-run]
source "$(dirname "$0")/common.sh"
require PROJECT ZONE ACCELERATOR_TYPE
extra=()
[[ "${SPOT:-0}" == 1 ]] && extra+=(--spot)
run gcloud compute tpus tpu-vm create "$TPU_NAME" --project="$PROJECT" --zone="$ZONE" \
  --accelerator-type="$ACCELERATOR_TYPE" --version="$RUNTIME_VERSION" "${extra[@]}" "${ARGS[@]}"
