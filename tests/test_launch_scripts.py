"""tpu_scripts/*: every launcher's --dry-run prints exactly the gcloud / sbatch / srun commands."""
from __future__ import annotations

import os
import shlex
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(PROJECT="my-proj", ZONE="us-central2-b", ACCELERATOR_TYPE="v4-32", TPU_NAME="asr-pod",
           RUNTIME_VERSION="tpu-ubuntu2204-base", CONFIG="experiments/demo_ctc.py:root=/data",
           WORKDIR="gs://bucket/runs/demo")
TPU = "--project=my-proj --zone=us-central2-b"
TRAIN = ("python3 -m mlasr.train --config=experiments/demo_ctc.py:root=/data "
         "--workdir=gs://bucket/runs/demo --distributed")


def dry_run(script: str, *args: str, **env) -> list[str]:
  proc = subprocess.run(["bash", os.path.join("tpu_scripts", script), "--dry-run", *args],
                        cwd=ROOT, env={**os.environ, **ENV, **env}, capture_output=True,
                        text=True, timeout=30, check=False)
  assert proc.returncode == 0, proc.stderr
  return proc.stdout.splitlines()


def test_create_uses_accelerator_zone_and_runtime():
  assert dry_run("create.sh") == [
      f"gcloud compute tpus tpu-vm create asr-pod {TPU} --accelerator-type=v4-32 "
      "--version=tpu-ubuntu2204-base"]
  assert dry_run("create.sh", ACCELERATOR_TYPE="v5litepod-64", RUNTIME_VERSION="v2-alpha-tpuv5-lite",
                 SPOT="1") == [
      f"gcloud compute tpus tpu-vm create asr-pod {TPU} --accelerator-type=v5litepod-64 "
      "--version=v2-alpha-tpuv5-lite --spot"]


def test_setup_installs_on_all_workers():
  lines = dry_run("setup.sh")
  assert lines[0].startswith("git -C ") and lines[0].endswith("HEAD")
  assert lines[1] == ("gcloud compute tpus tpu-vm scp /tmp/mlasr-src.tar.gz "
                      f"'asr-pod:~/mlasr-src.tar.gz' {TPU} --worker=all")
  cmd = shlex.split(lines[2])
  assert cmd[:9] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "asr-pod", "--project=my-proj",
                     "--zone=us-central2-b", "--worker=all"]
  assert cmd[9] == "--command" and 'pip install -U "jax[tpu]"' in cmd[10]
  assert "pip install -e ~/mlasr" in cmd[10]
  pinned = shlex.split(dry_run("setup.sh", PIP_SPEC="mlasr==0.1.0")[0])
  assert 'pip install "mlasr==0.1.0"' in pinned[10] and "--worker=all" in pinned


def test_run_starts_mlasr_train_on_all_workers():
  (line,) = dry_run("run.sh", "--config.total_steps=100")
  cmd = shlex.split(line)
  assert cmd[:10] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "asr-pod", "--project=my-proj",
                      "--zone=us-central2-b", "--worker=all", "--command"]
  assert cmd[10] == (f"cd ~ && MLASR_DISTRIBUTED=1 nohup {TRAIN} --config.total_steps=100 "
                     "> $HOME/mlasr_train.log 2>&1 &")


def test_run_refuses_a_local_workdir_on_a_pod():
  proc = subprocess.run(["bash", "tpu_scripts/run.sh", "--dry-run"], cwd=ROOT,
                        env=dict(os.environ, **dict(ENV, WORKDIR="/tmp/x")), capture_output=True,
                        text=True, timeout=30, check=False)
  assert proc.returncode == 2 and "gs://" in proc.stderr


@pytest.mark.parametrize("script,expected", [
    ("tail.sh", f"gcloud compute tpus tpu-vm ssh asr-pod {TPU} --worker=0 --command "
                "'tail -n 200 -F $HOME/mlasr_train.log'"),
    ("stop.sh", f"gcloud compute tpus tpu-vm ssh asr-pod {TPU} --worker=all --command "
                "'pkill -INT -f \"python3 -m mlasr.train\" || true'"),
    ("delete.sh", f"gcloud compute tpus tpu-vm delete asr-pod {TPU} --quiet"),
])
def test_tail_stop_delete(script, expected):
  assert dry_run(script) == [expected]


def test_missing_settings_are_named():
  env = {k: v for k, v in os.environ.items() if k not in ENV}
  proc = subprocess.run(["bash", "tpu_scripts/create.sh", "--dry-run"], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=30, check=False)
  assert proc.returncode == 2 and "set PROJECT" in proc.stderr


def test_slurm_submit_and_sbatch_lines():
  (submit,) = dry_run("slurm_submit.sh", "--partition=gpu", WORKDIR="/shared/runs/demo")
  assert submit == ("sbatch --nodes=2 --ntasks-per-node=8 --gpus-per-node=8 "
                    "--export=ALL,CONFIG=experiments/demo_ctc.py:root=/data,"
                    "WORKDIR=/shared/runs/demo,GPUS_PER_NODE=8 --partition=gpu "
                    "tpu_scripts/slurm_train.sbatch")
  lines = dry_run("slurm_train.sbatch", "--config.total_steps=100", WORKDIR="/shared/runs/demo")
  assert lines == [
      'COORDINATOR_HOST=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -1)',
      "export MLASR_DISTRIBUTED=1 MLASR_COORDINATOR=$COORDINATOR_HOST:12355 "
      "MLASR_NUM_PROCESSES=$SLURM_NTASKS",
      "srun --ntasks-per-node=8 --kill-on-bad-exit=1 bash -c 'export "
      "MLASR_PROCESS_ID=$SLURM_PROCID CUDA_VISIBLE_DEVICES=$SLURM_LOCALID; exec "
      "python3 -m mlasr.train --config=experiments/demo_ctc.py:root=/data "
      "--workdir=/shared/runs/demo --distributed --config.total_steps=100'"]


BEAM_ENV = dict(ROOT="/mnt/cv", DATA_DIR="/mnt/tfds", DATASETS="commonvoice:en commonvoice:hi",
                WORKERS="4")
CONVERT = ("python3 -m mlasr.data.tfds_builder /mnt/cv /mnt/tfds commonvoice:en commonvoice:hi "
           "--beam_runner={runner} '--beam_options={options}' --chunk_size=256")


@pytest.mark.parametrize("runner,env,beam_runner,options", [
    ("direct", {}, "DirectRunner",
     "--direct_num_workers=4 --direct_running_mode=multi_processing"),
    ("dataflow", dict(REGION="us-central1", TEMP_LOCATION="gs://bucket/tmp",
                      SDK_CONTAINER_IMAGE="gcr.io/my-proj/mlasr:1", USER="me"), "DataflowRunner",
     "--project=my-proj --region=us-central1 --temp_location=gs://bucket/tmp "
     "--sdk_container_image=gcr.io/my-proj/mlasr:1 --experiments=use_runner_v2 "
     "--machine_type=n2-standard-4 --max_num_workers=4 --job_name=mlasr-convert-me"),
    ("flink", dict(FLINK_MASTER="flink-jm:8081"), "FlinkRunner",
     "--flink_master=flink-jm:8081 --parallelism=4 --environment_type=EXTERNAL "
     "--environment_config=localhost:50000"),
    ("spark", dict(SPARK_MASTER="spark://spark-m:7077"), "SparkRunner",
     "--spark_master_url=spark://spark-m:7077 --parallelism=4 --environment_type=EXTERNAL "
     "--environment_config=localhost:50000"),
])
def test_beam_convert_commands(runner, env, beam_runner, options):
  assert dry_run("beam_convert.sh", RUNNER=runner, **BEAM_ENV, **env) == [
      CONVERT.format(runner=beam_runner, options=options)]
  # Every option is one Beam knows (an unknown one is dropped with a warning, not refused).
  from apache_beam.options import pipeline_options  # pylint: disable=import-outside-toplevel
  parsed = pipeline_options.PipelineOptions(shlex.split(options))
  assert (set(parsed.get_all_options(drop_default=True, retain_unknown_options=True))
          == set(parsed.get_all_options(drop_default=True)))
  assert len(parsed.get_all_options(drop_default=True)) == len(shlex.split(options))


def test_beam_convert_names_what_is_missing():
  for env, missing in ((dict(RUNNER="dataflow", **BEAM_ENV), "REGION"),
                       (dict(RUNNER="flink", **BEAM_ENV), "FLINK_MASTER"),
                       (dict(RUNNER="spark", **BEAM_ENV), "SPARK_MASTER"),
                       (dict(RUNNER="direct"), "ROOT")):
    proc = subprocess.run(["bash", "tpu_scripts/beam_convert.sh", "--dry-run"], cwd=ROOT,
                          env={**{k: v for k, v in os.environ.items() if k not in ENV},
                               "PROJECT": "my-proj", **env},
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 2 and f"set {missing}" in proc.stderr, (env, proc.stderr)
  proc = subprocess.run(["bash", "tpu_scripts/beam_convert.sh", "--dry-run"], cwd=ROOT,
                        env={**os.environ, **BEAM_ENV, "RUNNER": "yarn"}, capture_output=True,
                        text=True, timeout=30, check=False)
  assert proc.returncode == 2 and "RUNNER=yarn; use direct, dataflow, flink or spark" in proc.stderr
