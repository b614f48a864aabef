# Shared by the tpu_scripts/*.sh launchers: settings from the environment and --dry-run.
#
#   PROJECT           GCP project                         (required)
#   ZONE              e.g. us-central2-b (v4), us-west4-a (v5e)       (required)
#   ACCELERATOR_TYPE  e.g. v4-32, v5litepod-64                          (required for create)
#   TPU_NAME          name of the TPU VM slice            (default mlasr-$USER)
#   RUNTIME_VERSION   TPU VM image, e.g. tpu-ubuntu2204-base (v4) or v2-alpha-tpuv5-lite (v5e)
#   WORKDIR           gs://bucket/runs/<name>: checkpoints, metrics and results (run.sh)
#   CONFIG            experiments/<name>.py[:args] (run.sh)
#   PIP_SPEC          what setup.sh installs on every worker (default: this checkout, copied)
#   JAX_SPEC          default "jax[tpu]"
#
# Every script accepts --dry-run (or DRY_RUN=1): it prints the exact commands, one per line,
# instead of running them. Other arguments are passed on (run.sh: to mlasr.train).
set -euo pipefail

DRY_RUN="${DRY_RUN:-0}"
ARGS=()
for arg in "$@"; do
  if [[ "$arg" == "--dry-run" ]]; then DRY_RUN=1; else ARGS+=("$arg"); fi
done
TPU_NAME="${TPU_NAME:-mlasr-${USER:-user}}"
RUNTIME_VERSION="${RUNTIME_VERSION:-tpu-ubuntu2204-base}"
JAX_SPEC="${JAX_SPEC:-jax[tpu]}"
LOG_FILE="${LOG_FILE:-\$HOME/mlasr_train.log}"

require() {
  local name
  for name in "$@"; do
    if [[ -z "${!name:-}" ]]; then
      echo "error: set $name (see tpu_scripts/common.sh for what each variable means)" >&2
      exit 2
    fi
  done
}

# Shell-quote one argument only when it needs it, so dry-run output reads like a command.
quote() {
  if [[ "$1" =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

run() {
  if [[ "$DRY_RUN" == 1 ]]; then
    local first=1 a
    for a in "$@"; do
      [[ $first == 1 ]] || printf ' '
      quote "$a"
      first=0
    done
    printf '\n'
  else
    "$@"
  fi
}

