"""Training metrics to `<workdir>/metrics.jsonl` (one JSON object per line) and TensorBoard.

A local workdir gets each line appended and flushed as it is written, and TensorBoard events
under `<workdir>/tensorboard/`. A gs:// workdir (fileio.is_remote) cannot be appended to, and
tensorboardX would need a second GCS client (google-cloud-storage) beside epath's, so there:
- metrics.jsonl is kept in memory (what an earlier, resumed-from run wrote, read back at the
  start, plus this run's lines) and the whole object is rewritten at most every
  `upload_every_s` seconds, at every `flush()` (train.py flushes before each checkpoint, so
  the bucket holds every line up to the step a resume starts from) and at `close()`;
- TensorBoard events are written to a local temporary folder and copied (whole event files,
  same names) to `<workdir>/tensorboard/` at the same moments.
A process killed without warning loses at most the lines of its last `upload_every_s` seconds
after its last checkpoint, which a resume re-logs anyway.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

from mlasr import fileio

METRICS_FILE = "metrics.jsonl"  # one JSON object per logged step, in the run folder


class MetricsWriter:
  """Writes scalars from the main process only; other processes get a no-op writer."""

  def __init__(self, workdir: str, enabled: bool = True, upload_every_s: float = 30.0):
    self.workdir = workdir
    self.enabled = enabled
    self.remote = fileio.is_remote(workdir)
    self.upload_every_s = upload_every_s
    self._jsonl_path = fileio.join(workdir, METRICS_FILE)
    self._jsonl = self._lines = self._tb = self._tb_dir = None
    self._uploaded = time.time()
    if not enabled:
      return
    if self.remote:
      self._lines = [fileio.read_text(self._jsonl_path)] if fileio.exists(
          self._jsonl_path) else []
      self._tb_dir = tempfile.mkdtemp(prefix="mlasr_tensorboard_")  # copied to the bucket
    else:
      self._jsonl = open(self._jsonl_path, "a")  # pylint: disable=consider-using-with
    try:
      from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
      self._tb = SummaryWriter(self._tb_dir or os.path.join(workdir, "tensorboard"))
    except ImportError:  # TensorBoard output is optional; the JSONL file is not.
      self._tb = None

  def write_scalars(self, step: int, scalars: dict):
    if not self.enabled:
      return
    record = dict(step=int(step), time=time.time(), **{k: float(v) for k, v in scalars.items()})
    if self.remote:
      self._lines.append(json.dumps(record) + "\n")
    else:
      self._jsonl.write(json.dumps(record) + "\n")
      self._jsonl.flush()
    if self._tb is not None:
      for key, value in scalars.items():
        self._tb.add_scalar(key, float(value), int(step))
    if self.remote and time.time() - self._uploaded >= self.upload_every_s:
      self.flush()

  def write_json(self, name: str, obj):
    if self.enabled:
      with fileio.open(fileio.join(self.workdir, name), "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)

  def flush(self):
    """Makes everything written so far durable in the workdir (on a bucket: uploads it)."""
    if not self.enabled:
      return
    if self._tb is not None:
      self._tb.flush()
    if not self.remote:
      return
    fileio.write_text(self._jsonl_path, "".join(self._lines))
    if self._tb_dir is not None and os.path.isdir(self._tb_dir):
      for name in sorted(os.listdir(self._tb_dir)):
        local = os.path.join(self._tb_dir, name)
        if os.path.isfile(local):
          with open(local, "rb") as f:
            fileio.write_bytes(fileio.join(self.workdir, "tensorboard", name), f.read())
    self._uploaded = time.time()

  def close(self):
    if self._tb is not None:
      self._tb.close()  # writes what it still holds to the (local) event file
      self._tb = None
    if self.remote and self.enabled:
      self.flush()  # metrics.jsonl and the closed event files to the bucket
      shutil.rmtree(self._tb_dir, ignore_errors=True)
      self.enabled = False  # a second close() uploads nothing
    if self._jsonl:
      self._jsonl.close()
      self._jsonl = None
