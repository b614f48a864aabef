#!/usr/bin/env bash
# Converts (corpus, lang) datasets to TFDS array_record on Apache Beam
# (python -m mlasr.data.tfds_builder ... --beam_runner ...); docs/beam_conversion.md.
#
#   RUNNER        direct | dataflow | flink | spark                       (default direct)
#   ROOT          corpus root (ROOT/commonvoice/<lang>/...), a path every worker sees (required)
#   DATA_DIR      TFDS data dir, the same on every worker                  (required)
#   DATASETS      space-separated corpus:lang, e.g. "commonvoice:en"      (required)
#   WORKERS       direct: SDK worker processes (default: the cores); flink/spark: parallelism;
#                 dataflow: max_num_workers                                  (default 2)
#   CHUNK_SIZE    clips per work chunk, the unit of work and of resumption (default 256)
#   dataflow:     PROJECT, REGION, TEMP_LOCATION (gs://...), SDK_CONTAINER_IMAGE (required),
#                 MACHINE_TYPE (default n2-standard-4)
#   flink:        FLINK_MASTER (host:port of the JobManager's REST endpoint, required)
#   spark:        SPARK_MASTER (spark://host:7077, required)
#   flink/spark:  ENVIRONMENT_CONFIG: the SDK worker pool every node runs
#                 (python -m apache_beam.runners.worker.worker_pool_main --service_port=50000;
#                 default localhost:50000)
#
# --dry-run (or DRY_RUN=1) prints the command instead of running it; other arguments are
# passed on to mlasr.data.tfds_builder.
source "$(dirname "$0")/common.sh"

RUNNER="${RUNNER:-direct}"
require ROOT DATA_DIR DATASETS
CHUNK_SIZE="${CHUNK_SIZE:-256}"
case "$RUNNER" in
  direct)
    WORKERS="${WORKERS:-$(nproc)}"
    BEAM_RUNNER=DirectRunner
    OPTIONS="--direct_num_workers=$WORKERS --direct_running_mode=multi_processing"
    ;;
  dataflow)
    require PROJECT REGION TEMP_LOCATION SDK_CONTAINER_IMAGE
    BEAM_RUNNER=DataflowRunner
    OPTIONS="--project=$PROJECT --region=$REGION --temp_location=$TEMP_LOCATION"
    OPTIONS+=" --sdk_container_image=$SDK_CONTAINER_IMAGE --experiments=use_runner_v2"
    OPTIONS+=" --machine_type=${MACHINE_TYPE:-n2-standard-4} --max_num_workers=${WORKERS:-2}"
    OPTIONS+=" --job_name=mlasr-convert-${USER:-user}"
    ;;
  flink)
    require FLINK_MASTER
    BEAM_RUNNER=FlinkRunner
    OPTIONS="--flink_master=$FLINK_MASTER --parallelism=${WORKERS:-2}"
    OPTIONS+=" --environment_type=EXTERNAL --environment_config=${ENVIRONMENT_CONFIG:-localhost:50000}"
    ;;
  spark)
    require SPARK_MASTER
    BEAM_RUNNER=SparkRunner
    OPTIONS="--spark_master_url=$SPARK_MASTER --parallelism=${WORKERS:-2}"
    OPTIONS+=" --environment_type=EXTERNAL --environment_config=${ENVIRONMENT_CONFIG:-localhost:50000}"
    ;;
  *)
    echo "error: RUNNER=$RUNNER; use direct, dataflow, flink or spark" >&2
    exit 2
    ;;
esac
read -r -a SETS <<< "$DATASETS"
run python3 -m mlasr.data.tfds_builder "$ROOT" "$DATA_DIR" "${SETS[@]}" \
  --beam_runner="$BEAM_RUNNER" --beam_options="$OPTIONS" --chunk_size="$CHUNK_SIZE" \
  ${ARGS[@]+"${ARGS[@]}"}
