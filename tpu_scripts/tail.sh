#!/usr/bin/env bash
# Follows the training log of one worker (WORKER, default 0: the one that writes metrics),
# from its last TAIL_LINES lines (not LINES: shells and terminals set that to the screen height).
source "$(dirname "$0")/common.sh"
require PROJECT ZONE
run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --project="$PROJECT" --zone="$ZONE" \
  --worker="${WORKER:-0}" --command "tail -n ${TAIL_LINES:-200} -F $LOG_FILE"
