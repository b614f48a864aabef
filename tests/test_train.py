"""End-to-end: every experiment config trains a step; a resumed run equals an uninterrupted one."""
import glob
import json
import os

from flax import nnx
import jax
import numpy as np
import pytest

from mlasr import checkpoint as ckpt_lib
from mlasr import config_lib, evaluate, train
from mlasr.data import inputs

EXPERIMENTS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "experiments",
                                            "*.py")))

def experiment(name: str) -> str:
  return next(p for p in EXPERIMENTS if os.path.basename(p) == name)


# Every experiment with its defaults, plus the presets an experiment switches between.
EXPERIMENT_CASES = [(p, "") for p in EXPERIMENTS] + [(experiment("ctc_hubert.py"),
                                                       "preset=large")]


# Small widths keep every architecture's structure but compile and run in seconds.
TINY_SHAPES = dict(d_model=32, num_layers=1, num_heads=2, ffn_dim=64, pos_conv_kernel=8,
                   pos_conv_groups=4, conv_dim=(16,) * 7)


def load_experiment(path: str, root: str, sources: tuple[str, ...], arg: str = ""):
  import importlib.util  # pylint: disable=import-outside-toplevel
  spec = importlib.util.spec_from_file_location("experiment", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg or None)
  config.data.root = root
  config.data.sources = sources
  config.data.train_split = "train"  # the small corpus has no ML-SUPERB subsets of 1 h
  config.data.bucket_seconds = (1.5, 3.0)
  config.data.batch_seconds = 6.0
  config.model.encoder.update(TINY_SHAPES)
  config.compilation_cache = ""
  config.total_steps, config.log_every, config.eval_every = 2, 1, 0
  config.checkpoint_every = 100
  return config


@pytest.mark.parametrize("path,arg", EXPERIMENT_CASES, ids=[
    os.path.basename(p) + (f":{a}" if a else "") for p, a in EXPERIMENT_CASES])
def test_experiment_config_trains(path, arg, small_corpus, tmp_path):
  root, sources = small_corpus
  config = load_experiment(path, root, sources, arg)
  if config.task == "hubert":  # BEST-RQ targets need no k-means labels (tested below)
    config.model.targets = "bestrq"
    config.model.bestrq.codebook_size = 64
  dev = train.run(config, str(tmp_path))
  assert all(np.isfinite(v) for v in dev.values()) and dev
  assert os.path.exists(tmp_path / "sampling_weights_sources.json")  # both sampling levels
  lines = open(tmp_path / "metrics.jsonl").read().splitlines()
  assert len(lines) == 3  # two train steps logged + the final dev eval
  saved = config_lib.load_config(str(tmp_path))
  assert saved.to_json_best_effort(sort_keys=True) == config.to_json_best_effort(sort_keys=True)


def final_params(workdir, step=None):
  _, _, model, step = evaluate.restore_model(str(workdir), step)
  return step, jax.tree.leaves(nnx.state(model, nnx.Param))


def _with_dropout(config):
  """Dropout on (the demo recipe has it off), so the resume tests cover its masks too."""
  config.model.encoder.update(dropout=0.1, attention_dropout=0.1, feat_proj_dropout=0.1)
  config.model.final_dropout = 0.1


def test_learning_curves_end_at_the_runs_own_dev_numbers(small_corpus, tmp_path):
  """evaluators.curves decodes every kept checkpoint; its last point is train.py's final dev
  evaluation of the same parameters, language by language."""
  from mlasr.evaluators import curves  # pylint: disable=import-outside-toplevel
  root, sources = small_corpus
  config = load_experiment(experiment("demo_ctc.py"), root, sources)
  config.total_steps, config.checkpoint_every, config.keep_checkpoints = 3, 1, 5
  dev = train.run(config, str(tmp_path))
  result = curves.run(str(tmp_path), "dev")
  assert [p["step"] for p in result["points"]] == [1, 2, 3]
  last = result["points"][-1]
  assert last["cer"] == {k.split("/", 1)[1]: v for k, v in dev.items() if k.startswith("dev_cer/")}
  assert last["train_loss"] == _train_losses(tmp_path)[-1][1]
  hours = [p["audio_hours"] for p in result["points"]]
  assert 0 < hours[0] < hours[1] < hours[2]
  assert result["points"][0]["cer"] != last["cer"]  # three different models were decoded
  for name in ("curves.json", "curves.md", "curves.png"):
    assert (tmp_path / "curves_dev" / name).stat().st_size > 0


def _train_losses(workdir) -> list[tuple[int, float]]:
  rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def test_resume_is_bit_identical_with_augmentation(small_corpus, tmp_path, monkeypatch):
  """Stopped after step 2 and resumed, with dropout and every augmenter on (speed, noise,
  babble, reverberation, channel, SpecAugment). Resume without augmentation, from real
  signals and on a bucket, is tests/test_preemption.py's and tests/test_gcs_workdir.py's."""
  root, sources = small_corpus
  config = load_experiment(experiment("demo_ctc.py"), root, sources)
  config.total_steps = 4
  config.data.augment.update(speed_factors=(0.9, 1.0, 1.1), noise_prob=0.5, babble_prob=0.5,
                             reverb_prob=0.5, channel_prob=0.5, simulated_rirs=8)
  config.model.encoder.update(specaug_freq_masks=2, specaug_time_mask_rate=0.1)
  _with_dropout(config)
  # Training and every process that restores the run use the run's compilation cache (the
  # session's own cache stays in force: enable_compilation_cache keeps a dir already set).
  config.compilation_cache = str(tmp_path / "jax_cache")
  cache_calls = []
  monkeypatch.setattr(config_lib, "enable_compilation_cache", cache_calls.append)
  train.run(config, str(tmp_path / "straight"))
  train.run(config, str(tmp_path / "resumed"), stop_at_step=2)  # "preempted" after step 2
  assert ckpt_lib.Checkpointer(str(tmp_path / "resumed")).latest_step() == 2
  train.run(config, str(tmp_path / "resumed"))
  # Same batches and masks, step by step (a data-side mismatch shows here first) ...
  assert _train_losses(tmp_path / "straight") == _train_losses(tmp_path / "resumed")
  # ... and the same final parameters, read from the step-4 checkpoint of each run.
  step_a, params_a = final_params(tmp_path / "straight")
  step_b, params_b = final_params(tmp_path / "resumed")
  assert step_a == step_b == 4
  for a, b in zip(params_a, params_b):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # And the run really trained: parameters moved away from the step-2 checkpoint.
  _, params_2 = final_params(tmp_path / "resumed", step=2)
  assert any(not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(params_2, params_b))
  assert cache_calls == [config.compilation_cache] * 6  # 3 train.run + 3 restore_model
  # Augmentation changed what was trained on: one step without it has another loss.
  plain = load_experiment(experiment("demo_ctc.py"), root, sources)
  plain.total_steps = 1
  _with_dropout(plain)
  train.run(plain, str(tmp_path / "plain"))
  assert _train_losses(tmp_path / "plain")[0] != _train_losses(tmp_path / "straight")[0]


def test_pretrain_with_kmeans_labels_then_finetune_from_it(small_corpus, tmp_path):
  """MFCC -> k-means -> labels -> HuBERT steps -> init_from surgery -> CTC steps."""
  from data_prep import dump_labels, extract_features, fit_kmeans  # pylint: disable=import-outside-toplevel
  root, sources = small_corpus
  pretrain = load_experiment(experiment("hubert_pretrain.py"), root, sources)
  inputs.prepare_sources(pretrain.data)
  data_dir = inputs.data_dir(pretrain.data)
  datasets = [(c, l, s) for c, l in (x.split(":") for x in sources) for s in ("train", "dev")]
  extract_features.extract(data_dir, datasets[::2], extract_features.FeatureSpec("mfcc"),
                           str(tmp_path / "feats"))
  fit_kmeans.fit(str(tmp_path / "feats"), str(tmp_path / "km"), k=8, batch_size=256, seed=0)
  dump_labels.dump(data_dir, datasets, str(tmp_path / "km"), str(tmp_path / "labels"))
  pretrain.model.labels_dir = str(tmp_path / "labels")
  pretrain.model.label_rate = 100.0
  dev = train.run(pretrain, str(tmp_path / "pretrain"))
  assert np.isfinite(dev["dev/loss"]) and 0.0 <= dev["dev/acc_masked"] <= 1.0

  finetune = load_experiment(experiment("ctc_finetune.py"), root, sources)
  finetune.init_from = str(tmp_path / "pretrain")
  # As the recipe: front end frozen for good (no optimizer state; the log-mel front end has
  # no parameters, so the feature LayerNorm stands in), the rest through these 2 steps.
  finetune.optim.freeze = (("encoder/(frontend|feature_layer_norm)/.*", -1),
                           ("encoder/.*", 100))
  train.run(finetune, str(tmp_path / "finetune"))
  from mlasr.models import surgery  # pylint: disable=import-outside-toplevel
  pretrained = surgery.flatten(ckpt_lib.read_params(str(tmp_path / "pretrain")))
  tuned = surgery.flatten(ckpt_lib.read_params(str(tmp_path / "finetune")))
  encoder_keys = [k for k in tuned if k.startswith("encoder")]
  assert encoder_keys and all(np.array_equal(tuned[k], pretrained[k]) for k in encoder_keys)
  assert not any(k.startswith("head") for k in pretrained)  # the CTC head is new



def test_add_a_language_to_a_trained_adapter_model(small_corpus, tmp_path):
  """experiments/ctc_adapters.py with add_to: hi/ru stay bit-identical, it is trained,
  and the grown model's evaluation uses it, with the language forced or from the data."""
  root, sources = small_corpus
  base = load_experiment(experiment("ctc_adapters.py"), root, sources[:2])  # hi, ru
  train.run(base, str(tmp_path / "base"))
  import importlib.util  # pylint: disable=import-outside-toplevel
  spec = importlib.util.spec_from_file_location("exp", experiment("ctc_adapters.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  grow = module.get_config(f"root={root},sources={sources[2]},add_to={tmp_path / 'base'}")
  grow.data.update(train_split="train", bucket_seconds=(1.5, 3.0), batch_seconds=6.0)
  grow.model.encoder.update(TINY_SHAPES)
  grow.compilation_cache = ""
  grow.total_steps, grow.log_every, grow.eval_every, grow.checkpoint_every = 2, 1, 0, 100
  assert list(grow.data.langs) == ["hi", "ru", "it"]
  train.run(grow, str(tmp_path / "grown"))
  from mlasr.models import surgery  # pylint: disable=import-outside-toplevel
  before = surgery.flatten(ckpt_lib.read_params(str(tmp_path / "base")))
  after = surgery.flatten(ckpt_lib.read_params(str(tmp_path / "grown")))
  assert set(after) - set(before) and all("/per_lang/it/" in k for k in set(after) - set(before))
  assert all(np.array_equal(before[k], after[k]) for k in before)
  results = evaluate.run(str(tmp_path / "grown"), "test", n_boot=10, adapter_lang="it")
  assert results["meta"]["adapter_lang"] == "it" and set(results["languages"]) == {"it"}


def test_lid_evaluation_and_adapter_lang_auto(small_corpus, tmp_path):
  """An LID run scores itself (accuracy + confusion), and `--adapter_lang auto` decodes each
  test utterance with the adapter that same LID model picks."""
  root, sources = small_corpus
  lid_config = load_experiment(experiment("lid.py"), root, sources)
  train.run(lid_config, str(tmp_path / "lid"))
  lid_result = evaluate.run(str(tmp_path / "lid"), "test")
  assert os.path.exists(tmp_path / "lid" / "eval_test" / "lid.md")
  confusion = np.array(lid_result["confusion"])
  assert confusion.shape == (3, 3) and confusion.sum() == lid_result["num_utterances"] > 0
  assert lid_result["accuracy"] == np.trace(confusion) / confusion.sum()

  asr = load_experiment(experiment("ctc_adapters.py"), root, sources)
  train.run(asr, str(tmp_path / "asr"))
  auto = evaluate.run(str(tmp_path / "asr"), "test", n_boot=10, adapter_lang="auto",
                      lid_workdir=str(tmp_path / "lid"))
  # The languages the ASR run was given are LID's predictions: same confusion matrix.
  np.testing.assert_array_equal(auto["lid"]["confusion"], confusion)
  assert auto["meta"]["adapter_lang"] == "auto"
  # Adapters make the posteriors depend on the language: no identifying it from them.
  with pytest.raises(ValueError, match="cannot identify it.*--lid_workdir"):
    evaluate.run(str(tmp_path / "asr"), "test", adapter_lang="auto")
