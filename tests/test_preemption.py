"""Exact resume after preemption, with real `python -m mlasr.train` processes and signals.

One run goes straight through. Another is sent SIGTERM once it has checkpointed step 2 (it
must save, log why it stopped and exit 0, as on a TPU/GPU preemption notice), is restarted
and SIGKILLed at a random later step (no warning: a lost host, OOM killer), and is restarted
again to the end. Its final parameters must equal the straight run's bit for bit, which holds
only if the checkpoint carries the parameters, optimizer state, step and data-iterator
position, and dropout/masking randomness is a function of (seed, step).
"""
from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np

from mlasr import checkpoint as ckpt_lib
from mlasr import config_lib
from mlasr.data import inputs
from mlasr.models import surgery

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 8
TERM_AFTER_STEP = 2
TIMEOUT_S = 300  # per process; generous for a loaded 2-core machine, never hit when healthy


def _command(root: str, sources: tuple[str, ...], workdir: str, cache: str) -> list[str]:
  """The README's command line, shrunk: 1 encoder block, short buckets, a checkpoint a step."""
  return [
      sys.executable, "-m", "mlasr.train",
      f"--config=experiments/demo_ctc.py:root={root},sources={'+'.join(sources)},"
      f"steps={STEPS},layers=1",
      f"--workdir={workdir}",
      "--config.checkpoint_every=1", "--config.log_every=1",
      "--config.data.train_split=train",  # the small corpus has no ML-SUPERB 1 h subsets
      "--config.data.bucket_seconds=(1.5, 3.0)", "--config.data.batch_seconds=6.0",
      "--config.data.prepare_workers=1",
      f"--config.keep_checkpoints={STEPS + 1}",  # the first resume point is read at the end
      # Shared by every process here, so restarts load the step from the cache as real
      # restarts do (and are faster).
      f"--config.compilation_cache={cache}",
      "--alsologtostderr",
  ]


class _Run:
  """One training process writing its log to `<workdir>/<name>.log`."""

  def __init__(self, command: list[str], workdir: str, name: str):
    os.makedirs(workdir, exist_ok=True)
    self.workdir, self.log_path = workdir, os.path.join(workdir, f"{name}.log")
    self._log = open(self.log_path, "w", encoding="utf-8")
    self.proc = subprocess.Popen(command, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                 env=dict(os.environ, JAX_PLATFORMS="cpu"))

  def log(self) -> str:
    with open(self.log_path, encoding="utf-8") as f:
      return f.read()

  def latest_checkpoint(self) -> int:
    """Highest finished checkpoint step (orbax renames `<step>.orbax-checkpoint-tmp-*`)."""
    directory = os.path.join(self.workdir, "checkpoints")
    steps = [int(n) for n in os.listdir(directory) if n.isdigit()] if os.path.isdir(
        directory) else []
    return max(steps, default=0)

  def wait_for_checkpoint(self, step: int):
    deadline = time.time() + TIMEOUT_S
    while self.latest_checkpoint() < step:
      assert self.proc.poll() is None, f"exited {self.proc.returncode}:\n{self.log()[-5000:]}"
      assert time.time() < deadline, f"no checkpoint {step} yet:\n{self.log()[-5000:]}"
      time.sleep(0.01)

  def wait(self) -> int:
    try:
      code = self.proc.wait(timeout=TIMEOUT_S)
    finally:
      if self.proc.poll() is None:
        self.proc.kill()
      self._log.close()
    return code


def _logged_step(log: str, pattern: str) -> int:
  """The step number in the log line matching `pattern` (one `(\\d+)` group)."""
  match = re.search(pattern, log)
  assert match, f"no log line matching {pattern!r}:\n{log[-5000:]}"
  return int(match.group(1))


def test_sigterm_then_sigkill_then_resume_is_bit_identical(small_corpus, tmp_path):
  root, sources = small_corpus
  data = config_lib.base_config().data
  data.root, data.sources, data.train_split = root, sources, "train"
  inputs.prepare_sources(data)  # once here, not raced by the processes below
  cache = str(tmp_path / "jax_cache")

  def start(workdir, name):
    return _Run(_command(root, sources, str(workdir), cache), str(workdir), name)

  straight = start(tmp_path / "straight", "run")
  assert straight.wait() == 0, straight.log()[-5000:]
  assert straight.latest_checkpoint() == STEPS

  # Preemption notice: SIGTERM once step 2 is safely on disk.
  work = tmp_path / "preempted"
  run = start(work, "1_sigterm")
  run.wait_for_checkpoint(TERM_AFTER_STEP)
  run.proc.send_signal(signal.SIGTERM)
  assert run.wait() == 0, run.log()[-5000:]
  log = run.log()
  assert f"Received signal {int(signal.SIGTERM)}" in log, log[-5000:]
  stopped = _logged_step(log, r"Stopping at step (\d+) \(SIGTERM\)")
  # It finishes the step in flight and saves exactly there. Eight steps leave room for the
  # SIGKILL phase below even when the signal lands a step or two after checkpoint 2.
  assert run.latest_checkpoint() == stopped
  assert TERM_AFTER_STEP <= stopped <= STEPS - 2, (stopped, log[-5000:])

  # Lost without warning at a random later step, perhaps in the middle of the next save.
  kill_at = random.Random(0).randint(stopped + 1, STEPS - 1)
  run = start(work, "2_sigkill")
  run.wait_for_checkpoint(kill_at)
  run.proc.send_signal(signal.SIGKILL)
  assert run.wait() == -signal.SIGKILL
  assert _logged_step(run.log(), r"Resumed from .* at step (\d+)") == stopped
  resume_from = run.latest_checkpoint()
  assert kill_at <= resume_from < STEPS

  run = start(work, "3_finish")
  assert run.wait() == 0, run.log()[-5000:]
  assert _logged_step(run.log(), r"Resumed from .* at step (\d+)") == resume_from
  assert run.latest_checkpoint() == STEPS

  expected = surgery.flatten(ckpt_lib.read_params(str(tmp_path / "straight")))
  actual = surgery.flatten(ckpt_lib.read_params(str(work)))
  assert expected.keys() == actual.keys() and expected
  for key, value in expected.items():
    np.testing.assert_array_equal(actual[key], value, err_msg=key)
  # Not vacuous: training moved the parameters between the first resume and the end.
  initial = surgery.flatten(ckpt_lib.read_params(str(work), step=resume_from))
  assert any(not np.array_equal(initial[k], actual[k]) for k in actual)
