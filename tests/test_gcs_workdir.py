"""`--workdir gs://...` trains, resumes and evaluates on a bucket (a local GCS emulator).

docs/scaling.md and tpu_scripts/run.sh put pod runs in gs:// folders. Here a tiny CTC run is
trained with `--workdir gs://bkt/run` by real `python -m mlasr.train` processes against
gcp-storage-emulator: stopped after its step-2 checkpoint (train.run's stop_at_step, as a
preemption would), resumed to the end by a second process, then scored by
`python -m mlasr.evaluate`. The bucket, read back over the emulator's own JSON API (not
through the code under test), must hold config.json, the tokenizer, both checkpoints,
metrics.jsonl with each step once and equal to an uninterrupted local run's, TensorBoard
events and eval_test/results.json; and no local folder named `gs:` (what os.makedirs /
os.path.abspath make of `gs://b/x`) may appear. Data stay local: a gs:// data root is refused
with an error that says to mount the bucket with gcsfuse.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import jax
import pytest

from mlasr import config_lib
from mlasr.data import inputs
from test_train import TINY_SHAPES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUCKET = "bkt"
STEPS, STOP_AT = 4, 2
TIMEOUT_S = 300  # per process; generous for a loaded 2-core machine

# train.run(stop_at_step=...) behind mlasr.train's own flags: the preemption-like stop of
# tests/test_train.py, in a process of its own.
_STOPPING_TRAIN = """
from absl import app, flags
from mlasr import train
flags.DEFINE_integer("stop_at_step", None, "train.run's stop_at_step")
def main(argv):
  del argv
  train.run(flags.FLAGS.config, flags.FLAGS.workdir, stop_at_step=flags.FLAGS.stop_at_step)
if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir", "stop_at_step"])
  app.run(main)
"""


# gcp-storage-emulator answers media downloads without the x-goog-generation header that
# real GCS sends, and TensorStore's GCS driver (Orbax's OCDBT manifest reads) refuses a read
# without it ("Malformed StorageGeneration"). The emulator is started with its download
# handler wrapped to add it (before `server` builds its routing table from the handler).
_EMULATOR = """
import sys
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects
_download = objects.download
def download(request, response, storage, *args, **kwargs):
  _download(request, response, storage, *args, **kwargs)
  try:
    obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
  except NotFound:
    return
  response["x-goog-generation"] = str(obj["generation"])
  response["x-goog-metageneration"] = str(obj.get("metageneration") or 1)
objects.download = download
from gcp_storage_emulator.__main__ import main
main(sys.argv[1:])
"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.fixture
def gcs_emulator(tmp_path):
  """http://localhost:PORT of an in-memory GCS emulator holding the empty bucket `bkt`."""
  pytest.importorskip("gcsfs")  # epath's gs:// backend without TensorFlow
  pytest.importorskip("gcp_storage_emulator")  # the test extra of pyproject.toml
  port = _free_port()
  log = open(tmp_path / "emulator.log", "w", encoding="utf-8")  # pylint: disable=consider-using-with
  proc = subprocess.Popen(
      [sys.executable, "-c", _EMULATOR, "start", "--host", "localhost", "--port", str(port),
       "--in-memory", "--default-bucket", BUCKET, "--quiet"],
      stdout=log, stderr=subprocess.STDOUT)
  try:
    deadline = time.time() + 60
    while True:
      assert proc.poll() is None, (tmp_path / "emulator.log").read_text()
      try:
        socket.create_connection(("localhost", port), 0.2).close()
        break
      except OSError:
        assert time.time() < deadline, "the GCS emulator did not start"
        time.sleep(0.1)
    yield f"http://localhost:{port}"
  finally:
    proc.terminate()
    try:
      proc.wait(10)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()
    log.close()


def _objects(host: str, prefix: str) -> list[str]:
  """Object names under `prefix` in the bucket (the JSON API's objects.list)."""
  names, token = [], ""
  while True:
    query = urllib.parse.urlencode(dict(prefix=prefix, **({"pageToken": token} if token else {})))
    with urllib.request.urlopen(f"{host}/storage/v1/b/{BUCKET}/o?{query}") as r:
      page = json.load(r)
    names += [item["name"] for item in page.get("items", [])]
    if not (token := page.get("nextPageToken")):
      return sorted(names)


def _download(host: str, name: str) -> bytes:
  with urllib.request.urlopen(f"{host}/download/storage/v1/b/{BUCKET}/o/"
                              f"{urllib.parse.quote(name, safe='')}?alt=media") as r:
    return r.read()


# tests/test_train.py's load_experiment recipe (TINY_SHAPES, 1.5/3 s buckets of 6 s, one log
# line a step) applied to the demo config, as an experiment file for the command line that
# every process below reads. (It cannot import test_train: that imports mlasr.train, whose
# flags `python -m mlasr.train` defines already.)
_CONFIG_PY = """
import importlib.util
def get_config(arg=None):
  spec = importlib.util.spec_from_file_location("experiment", {demo!r})
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(None)
  config.data.root = {root!r}
  config.data.sources = {sources!r}
  config.data.train_split = "train"  # the small corpus has no ML-SUPERB subsets of 1 h
  config.data.bucket_seconds = (1.5, 3.0)
  config.data.batch_seconds = 6.0
  config.data.prepare_workers = 1
  config.model.encoder.update({shapes!r})
  # The session's cache (conftest.py), shared by the processes: only the first compiles.
  config.compilation_cache = {cache!r}
  config.total_steps, config.log_every, config.eval_every = {steps}, 1, 0
  config.checkpoint_every = 100
  config.keep_checkpoints = {steps}  # the step-2 resume point stays on the bucket
  return config
"""


def _train_args(tmp_path, root, sources) -> list[str]:
  path = tmp_path / "tiny_ctc.py"
  path.write_text(_CONFIG_PY.format(
      demo=os.path.join(ROOT, "experiments", "demo_ctc.py"), root=root, sources=tuple(sources),
      shapes=TINY_SHAPES, cache=jax.config.jax_compilation_cache_dir or str(
          tmp_path / "jax_cache"), steps=STEPS), encoding="utf-8")
  return [f"--config={path}", "--alsologtostderr"]


def _run(args: list[str], env: dict, cwd, log_path) -> str:
  """Runs `python <args>` to completion; returns its output (asserting it exited 0)."""
  with open(log_path, "w", encoding="utf-8") as log:
    code = subprocess.run([sys.executable] + args, cwd=cwd, env=env, stdout=log,
                          stderr=subprocess.STDOUT, timeout=TIMEOUT_S, check=False).returncode
  text = open(log_path, encoding="utf-8").read()
  assert code == 0, f"{' '.join(args[:3])} exited {code}:\n{text[-6000:]}"
  return text


def _metrics(text: str) -> list[dict]:
  """metrics.jsonl rows without what depends on the wall clock."""
  rows = [json.loads(line) for line in text.splitlines()]
  return [{k: v for k, v in r.items() if k not in ("time", "audio_seconds_per_second",
                                                   "steps_per_second")} for r in rows]


def _gs_folders(tmp_path, *parents) -> list[str]:
  """Folders named `gs:` (what os.makedirs(os.path.abspath("gs://b/x")) makes) anywhere
  under `tmp_path` and directly in `parents`."""
  found = [os.path.join(d, "gs:") for d in parents if os.path.exists(os.path.join(d, "gs:"))]
  for dirpath, dirnames, _ in os.walk(tmp_path):
    found += [os.path.join(dirpath, d) for d in dirnames if d == "gs:"]
  return found


@pytest.mark.slow
def test_train_resume_evaluate_on_a_bucket(small_corpus, gcs_emulator, tmp_path):
  root, sources = small_corpus
  data = config_lib.base_config().data
  data.root, data.sources, data.train_split = root, sources, "train"
  inputs.prepare_sources(data)  # once here, not by every process below
  cwd = tmp_path / "cwd"  # where a relative `gs:/bkt/run` of abspath("gs://...") would land
  cwd.mkdir()
  env = dict(os.environ, JAX_PLATFORMS="cpu", STORAGE_EMULATOR_HOST=gcs_emulator,
             TENSORSTORE_GCS_HTTP_URL=gcs_emulator, GOOGLE_CLOUD_PROJECT="test",
             # this checkout, whichever mlasr the environment has installed
             PYTHONPATH=os.pathsep.join([ROOT] + [p for p in [os.environ.get("PYTHONPATH")]
                                                  if p]))
  args = _train_args(tmp_path, root, sources)
  workdir = f"gs://{BUCKET}/run"

  straight = tmp_path / "straight"
  _run(["-m", "mlasr.train", f"--workdir={straight}"] + args, env, cwd, tmp_path / "straight.log")
  (tmp_path / "stop.py").write_text(_STOPPING_TRAIN, encoding="utf-8")
  log = _run([str(tmp_path / "stop.py"), f"--workdir={workdir}", f"--stop_at_step={STOP_AT}"]
             + args, env, cwd, tmp_path / "1_stop.log")
  assert f"Stopping at step {STOP_AT} (stop_at_step)" in log, log[-6000:]
  stored = _objects(gcs_emulator, "run/")
  assert "run/config.json" in stored and "run/tokenizer/tokenizer.json" in stored, stored
  assert any(n.startswith(f"run/checkpoints/{STOP_AT}/") for n in stored), stored
  assert [r["step"] for r in _metrics(_download(gcs_emulator, "run/metrics.jsonl").decode())
          ] == list(range(1, STOP_AT + 1))

  log = _run(["-m", "mlasr.train", f"--workdir={workdir}"] + args, env, cwd,
             tmp_path / "2_resume.log")
  assert f"Resumed from {workdir}/checkpoints at step {STOP_AT}" in log, log[-6000:]
  stored = _objects(gcs_emulator, "run/")
  assert any(n.startswith(f"run/checkpoints/{STEPS}/") for n in stored), stored
  assert any(n.startswith("run/best/") for n in stored), stored
  assert [n for n in stored if n.startswith("run/tensorboard/events.out.tfevents.")], stored
  assert "run/sampling_weights.json" in stored and "run/model_info.json" in stored, stored
  # Each step once (steps 1-4, then the final dev evaluation at step 4), the same numbers as
  # an uninterrupted local run: the resume continued exactly from the bucket's checkpoint.
  resumed = _metrics(_download(gcs_emulator, "run/metrics.jsonl").decode())
  assert [r["step"] for r in resumed] == list(range(1, STEPS + 1)) + [STEPS]
  assert resumed == _metrics((straight / "metrics.jsonl").read_text(encoding="utf-8"))

  log = _run(["-m", "mlasr.evaluate", f"--workdir={workdir}", "--split=test", "--n_boot=10",
              "--alsologtostderr"], env, cwd, tmp_path / "3_evaluate.log")
  assert f"Results written to {workdir}/eval_test" in log, log[-6000:]
  results = json.loads(_download(gcs_emulator, "run/eval_test/results.json"))
  assert results["meta"]["workdir"] == workdir and results["meta"]["step"] == STEPS
  assert sorted(results["languages"]) == ["hi", "it", "ru"]
  stored = _objects(gcs_emulator, "run/eval_test/")
  for name in ("results.md", "cer_by_lang.png", "per_utt.tsv", "ref.trn", "hyp.char.trn",
               "errors.json", "config.json"):
    assert f"run/eval_test/{name}" in stored, stored
  assert _download(gcs_emulator, "run/eval_test/cer_by_lang.png").startswith(b"\x89PNG")

  for name in ("1_stop.log", "2_resume.log", "3_evaluate.log"):
    # gcsfs's credential-less bucket-type probe warning stays out of the terminal.
    assert "Could not determine bucket type" not in (tmp_path / name).read_text(), name
  assert not _gs_folders(tmp_path, cwd, ROOT, os.getcwd()), _gs_folders(
      tmp_path, cwd, ROOT, os.getcwd())


@pytest.mark.parametrize("setting", ["root", "data_dir"])
def test_bucket_data_paths_are_refused(setting, small_corpus, tmp_path):
  """A gs:// data root or TFDS dir fails before any work, saying to mount it with gcsfuse."""
  from mlasr import train  # pylint: disable=import-outside-toplevel
  root, sources = small_corpus
  config = config_lib.base_config()
  config.data.root, config.data.sources = root, sources
  config.data[setting] = "gs://bkt/data"
  with pytest.raises(ValueError, match=rf"config\.data\.{setting}='gs://bkt/data'.*gcsfuse"):
    train.run(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()  # refused before the workdir was even made
  with pytest.raises(ValueError, match="gcsfuse"):
    inputs.data_dir(config.data)


def test_remote_paths_stay_remote():
  """No gs:// path is ever abspath'ed / expanduser'ed into `<cwd>/gs:/...`."""
  from mlasr import checkpoint as ckpt_lib, fileio  # pylint: disable=import-outside-toplevel
  assert fileio.is_remote("gs://b/x") and not fileio.is_remote("gs:/b/x")
  assert not fileio.is_remote("runs/x") and not fileio.is_remote("/tmp/x")
  assert fileio.absolute("gs://b/x", expanduser=True) == "gs://b/x"
  assert fileio.absolute("runs/x") == os.path.abspath("runs/x")
  assert ckpt_lib.checkpoint_dir("gs://b/run") == "gs://b/run/checkpoints"
  assert ckpt_lib.checkpoint_dir("gs://b/run", "best") == "gs://b/run/best"
  with pytest.raises(ValueError, match="not supported on a bucket"):
    fileio.open("gs://b/run/metrics.jsonl", "a")  # objects are written whole


def test_bucket_label_dirs_are_refused():
  """HuBERT's k-means labels are array_record shards too: local or a gcsfuse mount."""
  from mlasr.tasks import hubert  # pylint: disable=import-outside-toplevel
  config = config_lib.base_config("hubert")
  config.model.labels_dir = "gs://bkt/labels"
  with pytest.raises(ValueError, match=r"config\.model\.labels_dir='gs://bkt/labels'.*gcsfuse"):
    hubert.setup(config, "gs://bkt/run")
