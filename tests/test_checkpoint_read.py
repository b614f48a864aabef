"""mlasr.checkpoint.read_params: latest or best, a subtree if asked, and nothing created."""
import os

import numpy as np
import pytest

from mlasr import checkpoint as ckpt_lib


def _params(v):
  return dict(encoder=dict(w=np.full((2,), v, np.float32)),
              head=dict(b=np.full((3,), v, np.float32)))


def test_read_latest_and_best_and_a_subtree(tmp_path):
  ckpt = ckpt_lib.Checkpointer(str(tmp_path), best_metric="dev/m")
  for step, metric in [(1, 0.5), (2, 0.3), (3, 0.4)]:  # what train.py does at each eval
    ckpt.save(step, dict(params=_params(step), opt=dict(mu=np.zeros(1, np.float32))),
              {"pos": step}, {"step": step})
    ckpt.save_best(step, _params(step), {"dev/m": metric})
  ckpt.wait()
  ckpt.close()
  assert ckpt_lib.latest_step(str(tmp_path)) == 3
  assert ckpt_lib.latest_step(str(tmp_path), "best") == 2  # the lowest metric, only one kept
  latest = ckpt_lib.read_params(str(tmp_path))
  assert set(latest) == {"encoder", "head"} and latest["encoder"]["w"][0] == 3
  assert isinstance(latest["head"]["b"], np.ndarray)
  assert ckpt_lib.read_params(str(tmp_path), 1)["head"]["b"][0] == 1
  best = ckpt_lib.read_params(str(tmp_path), which="best")
  np.testing.assert_array_equal(best["head"]["b"], np.full((3,), 2, np.float32))
  enc = ckpt_lib.read_params(str(tmp_path), which="best", subtree="encoder")
  assert set(enc) == {"w"} and enc["w"][0] == 2
  assert ckpt_lib.read_params(str(tmp_path), subtree="encoder")["w"][0] == 3
  with pytest.raises(ValueError, match="no 'decoder'"):
    ckpt_lib.read_params(str(tmp_path), subtree="decoder")


def test_reading_creates_nothing(tmp_path):
  for which in ckpt_lib.CHECKPOINTS:
    with pytest.raises(FileNotFoundError):
      ckpt_lib.read_params(str(tmp_path), which=which)
    assert ckpt_lib.latest_step(str(tmp_path), which) is None
  with pytest.raises(ValueError, match="latest"):
    ckpt_lib.read_params(str(tmp_path), which="newest")
  # A run with only checkpoints/ (e.g. another run's workdir read for its features).
  ckpt = ckpt_lib.Checkpointer(str(tmp_path / "run"))
  ckpt.save(1, dict(params=_params(1)), {}, {"step": 1})
  ckpt.wait()
  ckpt.close()
  if (tmp_path / "run" / "best").exists():  # the Checkpointer of the run itself made it
    os.rmdir(tmp_path / "run" / "best")
  ckpt_lib.read_params(str(tmp_path / "run"), subtree="encoder")
  with pytest.raises(FileNotFoundError, match="best"):
    ckpt_lib.read_params(str(tmp_path / "run"), which="best")
  assert sorted(os.listdir(tmp_path)) == ["run"]
  assert sorted(os.listdir(tmp_path / "run")) == ["checkpoints"]
