#!/usr/bin/env bash
# The recipe walk (docs/recipe_walk.md): the demo recipe on the probe setting (4 languages,
# clean espeak-ng speech), then one change at a time towards the demo setting. Each row is a
# run of mlasr.train with overrides and its dev CER at the end; finished rows are skipped.
#   bash papers/recipe_walk/reproduce.sh [ROW ...]      (default: every row)
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-$HOME/mlasr_data}
RUNS=${RUNS:-$HOME/mlasr_runs}/recipe_walk
PROBE_SOURCES="commonvoice:en+commonvoice:hi+commonvoice:ru+commonvoice:de"
STEPS=${STEPS:-475}   # ~12.8 h of audio at 120 s per batch: the probe's budget
mkdir -p "$RUNS"

row() {  # row NAME PRESET SOURCES [CONFIG_ARGS [--config.x=y ...]]
  local name=$1 preset=$2 sources=$3 args=${4:-}; shift 3; [ $# -gt 0 ] && shift
  [ -f "$RUNS/$name/done" ] && { echo "$name: done"; return; }
  python -m data_prep.synth_benchmark --preset "$preset" --out "$DATA/$preset" >/dev/null
  local start=$(date +%s)
  python -m mlasr.train --config "experiments/demo_ctc.py:root=$DATA/$preset,sources=$sources,steps=$STEPS${args:+,$args}" \
      --workdir "$RUNS/$name" "$@"
  echo $(( $(date +%s) - start )) > "$RUNS/$name/train_seconds"
  touch "$RUNS/$name/done"
}

declare -A ROWS
ROWS[r0_demo_recipe]="probe $PROBE_SOURCES"
ROWS[r1_no_dropout]="probe $PROBE_SOURCES dropout=0"
ROWS[r2_4_layers]="probe $PROBE_SOURCES dropout=0,layers=4"
ROWS[r3_no_pos_conv]="probe $PROBE_SOURCES dropout=0,layers=4,pos_conv=0"
ORDER="r0_demo_recipe r1_no_dropout r2_4_layers r3_no_pos_conv"

for name in ${@:-$ORDER}; do
  row "$name" ${ROWS[$name]}
done
python papers/recipe_walk/table.py $(for n in $ORDER; do [ -d "$RUNS/$n" ] && echo "$RUNS/$n"; done) \
    --out "$RUNS/table.md"
