"""End-to-end: every experiment config trains a step; a resumed run equals an uninterrupted one."""
import glob
import os

from flax import nnx
import jax
import numpy as np
import pytest

from mlasr import checkpoint as ckpt_lib
from mlasr import config_lib, evaluate, train

EXPERIMENTS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "experiments",
                                            "*.py")))

# Small widths keep every architecture's structure but compile and run in seconds.
TINY_SHAPES = dict(d_model=32, num_layers=1, num_heads=2, ffn_dim=64, pos_conv_kernel=8,
                   pos_conv_groups=4, conv_dim=(16,) * 7)


def load_experiment(path: str, root: str, sources: tuple[str, ...]):
  import importlib.util  # pylint: disable=import-outside-toplevel
  spec = importlib.util.spec_from_file_location("experiment", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.data.root = root
  config.data.sources = sources
  config.data.bucket_seconds = (1.5, 3.0)
  config.data.batch_seconds = 6.0
  config.model.encoder.update(TINY_SHAPES)
  config.compilation_cache = ""
  config.total_steps, config.log_every, config.eval_every = 2, 1, 0
  config.checkpoint_every = 100
  return config


@pytest.mark.parametrize("path", EXPERIMENTS, ids=os.path.basename)
def test_experiment_config_trains(path, small_corpus, tmp_path):
  root, sources = small_corpus
  config = load_experiment(path, root, sources)
  dev = train.run(config, str(tmp_path))
  assert np.isfinite(dev["dev_cer/macro"])
  lines = open(tmp_path / "metrics.jsonl").read().splitlines()
  assert len(lines) == 3  # two train steps logged + the final dev eval
  saved = config_lib.load_config(str(tmp_path))
  assert saved.to_json_best_effort(sort_keys=True) == config.to_json_best_effort(sort_keys=True)


def final_params(workdir, step=None):
  _, _, model, step = evaluate.restore_model(str(workdir), step)
  return step, jax.tree.leaves(nnx.state(model, nnx.Param))


def test_resume_is_bit_identical(small_corpus, tmp_path):
  root, sources = small_corpus
  config = load_experiment(EXPERIMENTS[0], root, sources)
  config.total_steps = 4
  train.run(config, str(tmp_path / "straight"))
  train.run(config, str(tmp_path / "resumed"), stop_at_step=2)  # "preempted" after step 2
  assert ckpt_lib.Checkpointer(str(tmp_path / "resumed")).latest_step() == 2
  train.run(config, str(tmp_path / "resumed"))
  step_a, params_a = final_params(tmp_path / "straight")
  step_b, params_b = final_params(tmp_path / "resumed")
  assert step_a == step_b == 4
  for a, b in zip(params_a, params_b):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # And the run really trained: parameters moved away from the step-2 checkpoint.
  _, params_2 = final_params(tmp_path / "resumed", step=2)
  assert any(not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(params_2, params_b))


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
  import test_tfds_pipeline  # pylint: disable=import-outside-toplevel
  root = str(tmp_path_factory.mktemp("corpus"))
  test_tfds_pipeline._make_corpus(root)  # pylint: disable=protected-access
  return root, ("commonvoice:hi", "commonvoice:ru", "voxpopuli:it")
