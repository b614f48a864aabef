"""Pretraining -> CTC surgery, reading params from a checkpoint, freezing, fine-tuning masks."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mlasr import checkpoint as ckpt_lib, config_lib
from mlasr import optim
from mlasr.models import ctc, hubert_pretrain, surgery

TINY = dict(preset="tiny", frontend="waveform", d_model=32, num_layers=1, num_heads=2,
            ffn_dim=64, pos_conv_kernel=8, pos_conv_groups=4, conv_dim=(16,) * 7,
            conv_module_kernel=3)


def config(task="ctc", **model_fields):
  """base_config(task) with the tiny encoder; dict values update that block of config.model."""
  c = config_lib.base_config(task)
  c.model.encoder = dict(TINY)
  if task == "hubert":
    c.model.final_dim = 8
  else:
    c.model.final_dropout = 0.0
  for k, v in model_fields.items():
    if isinstance(v, dict):
      c.model[k].update(v)
    else:
      c.model[k] = v
  return c


def pure(model):
  return nnx.to_pure_dict(nnx.state(model, nnx.Param))


@pytest.fixture(scope="module")
def pretrained():
  model = hubert_pretrain.build(config("hubert"), 10, nnx.Rngs(params=1, dropout=2))
  return jax.tree.map(np.asarray, pure(model))


def test_pretrained_encoder_arrives_unchanged_and_head_is_fresh(pretrained):
  model = ctc.build(config(), 7, nnx.Rngs(params=0, dropout=1))
  fresh = surgery.flatten(pure(ctc.build(config(), 7, nnx.Rngs(params=0, dropout=1))))
  logs = []
  report = surgery.load_pretrained_encoder(model, pretrained, log=logs.append)
  got, want = surgery.flatten(pure(model)), surgery.flatten(pretrained)
  for name in report.loaded:
    np.testing.assert_array_equal(np.asarray(got[name]), want[name], err_msg=name)
  assert set(report.loaded) == {n for n in got if n.startswith("encoder/")}
  assert not np.array_equal(np.asarray(got["encoder/projection/kernel"]),
                            np.asarray(fresh["encoder/projection/kernel"]))
  # The CTC head keeps its (lecun-normal, zero-bias) initialisation.
  assert report.initialised == ["head/bias", "head/kernel"]
  np.testing.assert_array_equal(np.asarray(got["head/kernel"]), np.asarray(fresh["head/kernel"]))
  assert np.std(np.asarray(got["head/kernel"])) > 0.05
  assert set(report.dropped) == {"final_proj/kernel", "final_proj/bias", "label_embs/0"}
  assert report.unused == ["encoder/mask_embedding"]  # no fine-tuning masking configured
  assert "label_embs/0" in logs[0] and "head/kernel" in logs[0]


def test_mismatches_raise_listing_every_key(pretrained):
  wide = ctc.build(config(encoder=dict(ffn_dim=96)), 7, nnx.Rngs(params=0, dropout=1))
  with pytest.raises(ValueError) as err:
    surgery.load_pretrained_encoder(wide, pretrained)
  message = str(err.value)
  assert "encoder/layers/0/feed_forward/intermediate/kernel: checkpoint (32, 64) vs model " \
         "(32, 96)" in message
  assert "encoder/layers/0/feed_forward/output/kernel" in message
  loaded = {"a": {"x": np.zeros(2), "extra": np.zeros(1)}, "b": np.zeros(3)}
  inited = {"a": {"x": np.ones(2), "new": np.ones(1)}, "b": np.ones(3), "head": np.ones(2)}
  with pytest.raises(ValueError) as err:
    surgery.merge_params(loaded, inited)
  assert " - a/new" in str(err.value) and " - head" in str(err.value)
  assert " + a/extra" in str(err.value)
  merged = surgery.merge_params(loaded, inited, dont_load=["a/new", "a/extra", "head"])
  np.testing.assert_array_equal(merged["a"]["x"], 0)
  np.testing.assert_array_equal(merged["head"], 1)


def test_read_params_from_a_pretraining_checkpoint(tmp_path):
  model = hubert_pretrain.build(config("hubert"), 10, nnx.Rngs(params=3, dropout=4))
  optimizer = nnx.Optimizer(model, optax.adamw(1e-3), wrt=nnx.Param)
  checkpointer = ckpt_lib.Checkpointer(str(tmp_path))
  checkpointer.save(7, ckpt_lib.train_state(model, optimizer), {"iter": 0}, {"step": 7})
  checkpointer.wait()
  checkpointer.close()
  params = ckpt_lib.read_params(str(tmp_path))
  got, want = surgery.flatten(params), surgery.flatten(pure(model))
  assert got.keys() == want.keys()
  for name in want:
    np.testing.assert_array_equal(got[name], np.asarray(want[name]))
  target = ctc.build(config(), 5, nnx.Rngs(params=0, dropout=1))
  assert len(surgery.load_pretrained_encoder(target, params).loaded) > 10


def test_freezing_frontend_always_and_encoder_for_n_updates(tmp_path):
  model = ctc.build(config(), 7, nnx.Rngs(params=0, dropout=1))
  tx = optim.apply_freeze(optax.adamw(1e-2, weight_decay=0.1),
                          [("encoder/frontend/.*", -1), ("encoder/.*", 3)])
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  opt_names = surgery.flatten(nnx.to_pure_dict(nnx.state(optimizer)))
  frontend_state = [v for n, v in opt_names.items() if "frontend" in n]
  assert frontend_state and all(np.size(v) == 0 for v in frontend_state)  # no state held
  audio = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3200)), jnp.float32)

  @nnx.jit
  def step(model, optimizer):
    grads = nnx.grad(lambda m: jnp.mean(jnp.square(m(audio, None, deterministic=True)[0])))(
        model)
    optimizer.update(model, grads)

  def snapshot():
    return {k: np.array(v) for k, v in surgery.flatten(pure(model)).items()}

  history = [snapshot()]
  for _ in range(5):
    step(model, optimizer)
    history.append(snapshot())
  names = history[0].keys()
  frontend = [n for n in names if n.startswith("encoder/frontend/")]
  encoder = [n for n in names if n.startswith("encoder/") and n not in frontend]
  assert frontend and encoder
  for snap in history[1:]:
    for n in frontend:
      np.testing.assert_array_equal(snap[n], history[0][n], err_msg=n)  # bit-identical
  for n in encoder:
    np.testing.assert_array_equal(history[3][n], history[0][n], err_msg=n)
  assert any(not np.array_equal(history[4][n], history[3][n]) for n in encoder)  # update 4
  assert not np.array_equal(history[1]["head/kernel"], history[0]["head/kernel"])
  # The wrapped optimizer state checkpoints and restores the way train.py does it.
  checkpointer = ckpt_lib.Checkpointer(str(tmp_path))
  state = ckpt_lib.train_state(model, optimizer)
  checkpointer.save(5, state, {"iter": 0}, {"step": 5})
  checkpointer.wait()
  restored, _, _ = checkpointer.restore(5, ckpt_lib.abstract_like(state))
  checkpointer.close()
  ckpt_lib.load_train_state(model, optimizer, restored)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_finetune_masking_is_off_by_default_and_follows_the_dropout_stream():
  assert ctc.finetune_masking_config(config().model) is None
  assert not hasattr(ctc.build(config(), 5, nnx.Rngs(params=0, dropout=1)), "mask_rngs")
  cfg = config(finetune_masking=dict(mask_prob=0.5, mask_length=2, min_masks=1))
  model = ctc.build(cfg, 5, nnx.Rngs(params=0, dropout=1))
  assert model.uses_mask_embedding
  audio_mask = jnp.ones((2, 3200), jnp.int32)
  masks = []
  for seed in (1, 1, 2):
    nnx.reseed(model, dropout=seed)
    masks.append(np.asarray(ctc.finetune_masks(model.finetune_masking, model.mask_rngs(),
                                               model.encoder, audio_mask)["time_mask"]))
  np.testing.assert_array_equal(masks[0], masks[1])
  assert not np.array_equal(masks[0], masks[2]) and 0 < masks[0].mean() < 0.9
  channel_cfg = config(finetune_masking=dict(mask_channel_prob=0.5, mask_channel_length=8))
  model = ctc.build(channel_cfg, 5, nnx.Rngs(params=0, dropout=1))
  mask = ctc.finetune_masks(model.finetune_masking, jax.random.key(0), model.encoder,
                            audio_mask)["channel_mask"]
  assert mask.shape == (2, 32) and 0 < float(mask.mean()) < 1
