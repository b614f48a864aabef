#!/usr/bin/env bash
# Stops training on every worker (the slice keeps running; checkpoints stay in WORKDIR).
source "$(dirname "$0")/common.sh"
require PROJECT ZONE
run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --project="$PROJECT" --zone="$ZONE" \
  --worker=all --command "pkill -INT -f \"python3 -m mlasr.train\" || true"
