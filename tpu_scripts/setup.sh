#!/usr/bin/env bash
# Installs JAX for TPU and mlasr on every worker of the slice.
# Default: this checkout (git archive of HEAD) is copied to all workers and pip-installed;
# set PIP_SPEC (e.g. "git+https://github.com/ORG/mlasr@v0.1.0") to install from elsewhere.
source "$(dirname "$0")/common.sh"
require PROJECT ZONE
ssh_all=(gcloud compute tpus tpu-vm ssh "$TPU_NAME" --project="$PROJECT" --zone="$ZONE"
         --worker=all)
if [[ -z "${PIP_SPEC:-}" ]]; then
  archive=/tmp/mlasr-src.tar.gz
  run git -C "$(dirname "$0")/.." archive --format=tar.gz --prefix=mlasr/ -o "$archive" HEAD
  run gcloud compute tpus tpu-vm scp "$archive" "$TPU_NAME:~/mlasr-src.tar.gz" \
    --project="$PROJECT" --zone="$ZONE" --worker=all
  install="rm -rf ~/mlasr && tar xzf ~/mlasr-src.tar.gz -C ~ && pip install -U \"$JAX_SPEC\" && pip install -e ~/mlasr"
else
  install="pip install -U \"$JAX_SPEC\" && pip install \"$PIP_SPEC\""
fi
run "${ssh_all[@]}" --command "$install && python3 -c \"import jax, mlasr; print(jax.device_count(), jax.local_device_count())\""
