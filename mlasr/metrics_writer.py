"""Training metrics to `<workdir>/metrics.jsonl` (one JSON object per line) and TensorBoard."""
from __future__ import annotations

import json
import os
import time


class MetricsWriter:
  """Writes scalars from the main process only; other processes get a no-op writer."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.workdir = workdir
    self.enabled = enabled
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a") if enabled else None
    self._tb = None
    if enabled:
      try:
        from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
        self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
      except ImportError:  # TensorBoard output is optional; the JSONL file is not.
        self._tb = None

  def write_scalars(self, step: int, scalars: dict):
    if not self.enabled:
      return
    record = dict(step=int(step), time=time.time(), **{k: float(v) for k, v in scalars.items()})
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      for key, value in scalars.items():
        self._tb.add_scalar(key, float(value), int(step))

  def write_json(self, name: str, obj):
    if self.enabled:
      with open(os.path.join(self.workdir, name), "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)

  def close(self):
    if self._jsonl:
      self._jsonl.close()
    if self._tb is not None:
      self._tb.close()
