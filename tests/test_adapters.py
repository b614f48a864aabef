"""Per-language adapters and heads: per-example selection, freezing, isolation, export/import."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mlasr import config_lib, evaluate, optim
from mlasr.models import adapters, ctc, encoder as encoder_lib, surgery
from mlasr.steps import make_update_step
from mlasr.tasks import ctc as ctc_task

ENC = encoder_lib.get_config("tiny", num_layers=2, d_model=32, num_heads=2, ffn_dim=64,
                        pos_conv_kernel=8, pos_conv_groups=4, conv_module_kernel=5,
                        layer_norm_first=True, dropout=0.0, attention_dropout=0.0,
                        feat_proj_dropout=0.0)
VOCAB = 12


def _model(langs, seed=0, head="per_language", bottleneck=4, blocks=None):
  mask = np.ones([len(langs), VOCAB], bool)
  rows = np.arange(len(langs))
  mask[rows, VOCAB - 1 - rows % 3] = False  # languages differ in their outputs
  model = ctc.CTCModel(ENC, VOCAB, 0.0, rngs=nnx.Rngs(params=seed, dropout=seed + 1),
                       langs=langs, adapter_bottleneck=bottleneck, adapter_blocks=blocks,
                       head=head, output_mask=mask)
  # A new adapter is the identity (zero up-projection); perturb every language's weights so
  # that selecting the wrong one would show.
  state = nnx.state(model, nnx.Param)
  flat = surgery.flatten(nnx.to_pure_dict(state))
  rng = np.random.default_rng(seed + 7)
  flat = {k: (v + rng.normal(0, 0.3, np.shape(v)).astype(np.float32)
              if k.startswith(("adapters/", "heads/")) else v) for k, v in flat.items()}
  surgery.assign_params(model, surgery.unflatten_like(nnx.to_pure_dict(state), flat))
  return model


def _batch(lang_ids, seed=0, seconds=(1.0, 0.6, 0.8, 0.5)):
  rng = np.random.default_rng(seed)
  n = len(lang_ids)
  audio = rng.normal(0, 0.3, [n, 16000]).astype(np.float32)
  audio_mask = np.zeros([n, 16000], np.int32)
  for i in range(n):
    audio_mask[i, :int(16000 * seconds[i % len(seconds)])] = 1
  labels = rng.integers(1, VOCAB - 3, [n, 4]).astype(np.int32)
  return dict(audio=audio * audio_mask, audio_mask=audio_mask, labels=labels,
              label_mask=np.ones_like(labels), example_mask=np.ones([n], np.int32),
              lang_id=np.asarray(lang_ids, np.int32))


def _logits(model, batch):
  return np.asarray(model(batch["audio"], batch["audio_mask"], deterministic=True,
                          lang_id=jnp.asarray(batch["lang_id"]))[0])


def test_mixed_language_batch_equals_each_example_alone():
  langs = ("en", "ru", "hi")
  model = _model(langs)
  batch = _batch([2, 0, 1, 0])
  mixed = _logits(model, batch)
  frames = np.asarray(model.encoder.frame_lengths(batch["audio_mask"].sum(-1)))
  for i in range(4):
    alone = {k: v[i:i + 1] for k, v in batch.items()}
    single = _logits(model, alone)[0]
    np.testing.assert_allclose(mixed[i, :frames[i]], single[:frames[i]], atol=2e-5)
    # Another language's adapter and head give other logits: selection is per example.
    other = _logits(model, dict(alone, lang_id=(alone["lang_id"] + 1) % 3))[0]
    assert np.abs(other[:frames[i]] - single[:frames[i]]).max() > 1e-2
  # Output masks: a language's masked ids get MASKED_LOGIT.
  assert (mixed[1, :, VOCAB - 1] == ctc.MASKED_LOGIT).all()  # en: id 11 masked
  assert (mixed[2, :, VOCAB - 2] == ctc.MASKED_LOGIT).all()  # ru: id 10 masked
  assert (mixed[1, :, VOCAB - 2] != ctc.MASKED_LOGIT).all()


def test_adapters_only_on_chosen_blocks_and_identity_at_init():
  plain = ctc.CTCModel(ENC, VOCAB, 0.0, rngs=nnx.Rngs(params=3, dropout=4))
  fresh = ctc.CTCModel(ENC, VOCAB, 0.0, rngs=nnx.Rngs(params=3, dropout=4), langs=("en", "ru"),
                       adapter_bottleneck=4, adapter_blocks=(1,))
  names = surgery.flatten(nnx.to_pure_dict(nnx.state(fresh, nnx.Param)))
  assert sorted({n.split("/")[4] for n in names if n.startswith("adapters/")}) == ["0"]
  assert len(fresh.adapters.per_lang["en"].layers) == 1
  # Same encoder/head init (adapter params are drawn after them), zero up-projection:
  # a fresh adapter model computes exactly what the plain model does.
  enc_plain = nnx.to_pure_dict(nnx.state(plain.encoder, nnx.Param))
  nnx.update(fresh.encoder, nnx.state(plain.encoder, nnx.Param))
  nnx.update(fresh.head, nnx.state(plain.head, nnx.Param))
  batch = _batch([0, 1])
  np.testing.assert_allclose(_logits(fresh, batch), np.asarray(
      plain(batch["audio"], batch["audio_mask"], deterministic=True)[0]), atol=1e-6)
  assert enc_plain  # the encoder has parameters
  with pytest.raises(ValueError, match="adapter blocks"):
    ctc.CTCModel(ENC, VOCAB, 0.0, rngs=nnx.Rngs(0), langs=("en",), adapter_bottleneck=4,
                 adapter_blocks=(5,))
  with pytest.raises(ValueError, match="pass lang_id"):
    fresh(batch["audio"], batch["audio_mask"], deterministic=True)


def _train(model, freeze_rules, batches, steps=3, lr=1e-2):
  cfg = config_lib.base_config().optim
  cfg.update(schedule="constant", lr=lr, clip_norm=1.0, weight_decay=0.1, freeze=freeze_rules)
  tx, schedule = optim.make_optimizer(cfg, steps)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  graphdef, state = nnx.split((model, optimizer))
  step_fn = jax.jit(make_update_step(graphdef, ctc_task, schedule, seed=0))
  for step in range(steps):
    state, _ = step_fn(state, batches[step % len(batches)], step)
  model, optimizer = nnx.merge(graphdef, state)
  return model, optimizer


def _flat_params(model):
  return {k: np.asarray(v) for k, v in
          surgery.flatten(nnx.to_pure_dict(nnx.state(model, nnx.Param))).items()}


def test_frozen_encoder_is_bit_identical_and_has_no_optimizer_state():
  langs = ("en", "ru", "hi")
  model = _model(langs)
  before = _flat_params(model)
  rules = ((r"encoder/.*", -1),)
  model, optimizer = _train(model, rules, [_batch([0, 1, 2, 1])])
  after = _flat_params(model)
  trainable = [k for k in before if not k.startswith("encoder/")]
  for k in before:
    if k.startswith("encoder/"):
      assert np.array_equal(before[k], after[k]), k
  assert all(not np.array_equal(before[k], after[k]) for k in trainable
             if "layer_norm" not in k or k.startswith("adapters/"))
  # AdamW moments exist only for the trained leaves: 2 x their size, nothing for the encoder.
  opt_leaves = [x for x in jax.tree.leaves(nnx.to_pure_dict(nnx.state(optimizer)))
                if hasattr(x, "size") and np.ndim(x) > 0]
  assert sum(x.size for x in opt_leaves) == 2 * sum(before[k].size for k in trainable)


def test_adding_or_retraining_a_language_leaves_the_others_bit_identical(tmp_path):
  old = _model(("en", "ru"), seed=1)
  en_batch = _batch([0, 0, 0], seed=5)
  en_before = _logits(old, en_batch)
  # Grow the model by one language: every old parameter arrives unchanged, hi is new.
  grown = _model(("en", "ru", "hi"), seed=2)
  report = surgery.load_matching(grown, nnx.to_pure_dict(nnx.state(old, nnx.Param)))
  assert report.initialised and all("/hi/" in n for n in report.initialised)
  np.testing.assert_array_equal(_logits(grown, en_batch), en_before)
  # Train hi only, on batches that also hold en and ru examples: only hi's leaves move.
  mixed = [_batch([2, 0, 1, 2], seed=s) for s in range(3)]
  before = _flat_params(grown)
  grown, _ = _train(grown, adapters.freeze_all_but(["hi"]), mixed, steps=4)
  after = _flat_params(grown)
  moved = sorted(k for k in before if not np.array_equal(before[k], after[k]))
  assert moved and all("/per_lang/hi/" in k for k in moved)
  np.testing.assert_array_equal(_logits(grown, en_batch), en_before)
  # Retraining ru leaves en and hi bit-identical too.
  hi_batch = _batch([2, 2], seed=9)
  hi_before = _logits(grown, hi_batch)
  grown, _ = _train(grown, adapters.freeze_all_but(["ru"]), mixed, steps=2)
  np.testing.assert_array_equal(_logits(grown, en_batch), en_before)
  np.testing.assert_array_equal(_logits(grown, hi_batch), hi_before)


def test_export_import_swap_without_recompiling(tmp_path):
  langs = ("en", "ru", "hi")
  trained, other = _model(langs, seed=1), _model(langs, seed=2)
  nnx.update(other.encoder, nnx.state(trained.encoder, nnx.Param))  # one shared base model
  info = adapters.export_language(_flat_params(trained), "ru", str(tmp_path / "ru.safetensors"),
                                  meta=dict(bottleneck=4))
  ru_names = [k for k in _flat_params(trained) if "/per_lang/ru/" in k]
  assert info["num_params"] == sum(_flat_params(trained)[k].size for k in ru_names)
  assert info["bytes"] < 4 * info["num_params"] + 4096  # float32 + a small header
  graphdef, state = nnx.split(other)
  predict = jax.jit(lambda st, b: ctc_task.predict(nnx.merge(graphdef, st), b))
  batch = _batch([1, 1, 0])
  predict(state, batch)
  assert predict._cache_size() == 1  # pylint: disable=protected-access
  # Loading the file changes only ru's leaves, in place.
  before = _flat_params(other)
  assert evaluate.load_adapter(other, info["path"]) == "ru"
  after = _flat_params(other)
  for k in before:
    expect = _flat_params(trained)[k] if k in ru_names else before[k]
    np.testing.assert_array_equal(after[k], expect)
  # The compiled step serves the swapped weights: same graph, same shapes, no recompile.
  swapped_graphdef, swapped = nnx.split(other)
  assert swapped_graphdef == graphdef
  tokens, _ = predict(swapped, batch)
  assert predict._cache_size() == 1  # pylint: disable=protected-access
  expected, _ = ctc_task.predict(trained, batch)
  np.testing.assert_array_equal(np.asarray(tokens)[:2], np.asarray(expected)[:2])
  np.testing.assert_array_equal(_logits(other, batch)[:2], _logits(trained, batch)[:2])
  # Into another language's slot, and a clear error when the file does not fit.
  assert evaluate.load_adapter(other, info["path"], lang="hi") == "hi"
  small = _model(langs, seed=3, bottleneck=2)
  with pytest.raises(ValueError, match="shape"):
    evaluate.load_adapter(small, info["path"])
  with pytest.raises(KeyError, match="No adapter parameters"):
    adapters.export_language(_flat_params(small), "xx", str(tmp_path / "xx.safetensors"))
  assert os.path.getsize(info["path"]) == info["bytes"]
