"""Checkpoints are atomic: a process SIGKILLed in the middle of a save leaves the previous one."""
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np

from mlasr import checkpoint as ckpt_lib

WRITER = textwrap.dedent("""
    import sys, numpy as np
    from mlasr import checkpoint as ckpt_lib
    ckpt = ckpt_lib.Checkpointer(sys.argv[1])
    small = {"w": np.full((4,), 1.0, np.float32)}
    ckpt.save(1, small, {"pos": 1}, {"step": 1})
    ckpt.wait()
    print("saved 1", flush=True)
    # A large second checkpoint, so the parent can kill us while it is being written.
    big = {"w": np.random.default_rng(0).normal(size=(64, 1024, 1024)).astype(np.float32)}
    ckpt.save(2, big, {"pos": 2}, {"step": 2})
    ckpt.wait()
    print("saved 2", flush=True)
""")


def test_kill_during_save_leaves_previous_checkpoint(tmp_path):
  proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE,
                          text=True)
  assert proc.stdout.readline().strip() == "saved 1"
  ckpt_dir = tmp_path / "checkpoints"
  deadline = time.time() + 60
  while not any(p.name.startswith("2.") for p in ckpt_dir.iterdir()):  # tmp dir of step 2
    assert time.time() < deadline, "second save never started"
    time.sleep(0.01)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (ckpt_dir / "2").exists(), "step 2 finished before the kill; make it bigger"
  ckpt = ckpt_lib.Checkpointer(str(tmp_path))
  assert ckpt.latest_step() == 1
  state, data, meta = ckpt.restore(1, {"w": np.zeros((4,), np.float32)})
  np.testing.assert_array_equal(np.asarray(state["w"]), np.ones(4, np.float32))
  assert data == {"pos": 1} and meta == {"step": 1}
  # And training can go on: the next save at step 2 succeeds over the debris.
  ckpt.save(2, {"w": np.zeros((4,), np.float32)}, {"pos": 2}, {"step": 2})
  ckpt.wait()
  assert ckpt.latest_step() == 2
  ckpt.close()


def test_best_checkpoint_keeps_the_lowest_metric(tmp_path):
  ckpt = ckpt_lib.Checkpointer(str(tmp_path))
  for step, cer in [(1, 0.5), (2, 0.3), (3, 0.4)]:
    ckpt.save_best(step, {"w": np.full((2,), float(step), np.float32)}, {"dev_cer/macro": cer})
  ckpt.wait()
  assert ckpt.best.all_steps() == [2]
  ckpt.close()
