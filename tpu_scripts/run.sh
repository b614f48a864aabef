#!/usr/bin/env bash
# Starts training on every worker (one process per host, jax.distributed via --distributed).
#   CONFIG=experiments/demo_ctc.py:root=/tmp/gcsfuse/data WORKDIR=gs://b/runs/x tpu_scripts/run.sh \
#     [--config.total_steps=20000 ...] [--dry-run]
# root: a local path on every worker, e.g. a gcsfuse mount of the bucket (datasets are not read
# from gs://); WORKDIR: a gs:// folder (docs/scaling.md, "Where runs write").
# Output goes to $LOG_FILE on each worker (tail.sh shows it); checkpoints to WORKDIR, so
# re-running this command after a preemption resumes.
source "$(dirname "$0")/common.sh"
require PROJECT ZONE CONFIG WORKDIR
if [[ "$WORKDIR" != gs://* && "${ALLOW_LOCAL_WORKDIR:-0}" != 1 ]]; then
  echo "error: WORKDIR=$WORKDIR is not a gs:// path; workers would each write their own" \
       "copy (set ALLOW_LOCAL_WORKDIR=1 for a one-host slice)" >&2
  exit 2
fi
train="python3 -m mlasr.train --config=$CONFIG --workdir=$WORKDIR --distributed"
for a in "${ARGS[@]}"; do train+=" $(quote "$a")"; done
run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --project="$PROJECT" --zone="$ZONE" \
  --worker=all --command "cd ~ && MLASR_DISTRIBUTED=1 nohup $train > $LOG_FILE 2>&1 &"
