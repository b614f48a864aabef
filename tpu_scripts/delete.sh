#!/usr/bin/env bash
# Deletes the TPU VM slice (billing stops). Checkpoints in the gs:// WORKDIR are kept.
source "$(dirname "$0")/common.sh"
require PROJECT ZONE
run gcloud compute tpus tpu-vm delete "$TPU_NAME" --project="$PROJECT" --zone="$ZONE" --quiet
