"""Update-step mechanics without the data pipeline: accumulation equals a big batch; NaN guard."""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mlasr import config_lib, optim, train
from mlasr.models import ctc as ctc_model
from mlasr.tasks import ctc as ctc_task

VOCAB = 12


def tiny_config():
  config = config_lib.base_config()
  config.model.encoder = dict(preset="tiny", d_model=32, num_layers=1, num_heads=2, ffn_dim=64,
                              pos_conv_kernel=8, pos_conv_groups=4, dropout=0.0,
                              attention_dropout=0.0, feat_proj_dropout=0.0)
  config.model.final_dropout = 0.0
  config.optim.update(schedule="constant", lr=1e-3, warmup_steps=0, weight_decay=0.01,
                      clip_norm=0.0)
  return config


def make_state(config):
  model = ctc_model.build(config, VOCAB, nnx.Rngs(params=0, dropout=1))
  tx, schedule = optim.make_optimizer(config.optim, 10)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  graphdef, state = nnx.split((model, optimizer))
  return graphdef, state, schedule


def random_batch(seed, batch=2, samples=16000, labels=6):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(samples // 2, samples + 1, size=batch)
  audio_mask = (np.arange(samples)[None] < lengths[:, None]).astype(np.int32)
  label_len = rng.integers(2, labels + 1, size=batch)
  label_mask = (np.arange(labels)[None] < label_len[:, None]).astype(np.int32)
  return dict(audio=(rng.normal(size=(batch, samples)) * 0.1 * audio_mask).astype(np.float32),
              audio_mask=audio_mask,
              labels=(rng.integers(1, VOCAB, size=(batch, labels)) * label_mask).astype(np.int32),
              label_mask=label_mask, lang_id=np.zeros(batch, np.int32),
              example_mask=np.ones(batch, np.int32))


def params_of(graphdef, state):
  model, _ = nnx.merge(graphdef, state)
  return jax.tree.leaves(nnx.state(model, nnx.Param))


def test_gradient_accumulation_equals_big_batch():
  config = tiny_config()
  graphdef, state, schedule = make_state(config)
  a, b = random_batch(0), random_batch(1)
  big = {k: np.concatenate([a[k], b[k]]) for k in a}
  update = jax.jit(train.make_update_step(graphdef, ctc_task, schedule, 0))
  grad_step, apply_step = map(jax.jit, train.make_accumulation_steps(graphdef, ctc_task,
                                                                     schedule, 0))
  state_big, metrics_big = update(jax.tree.map(jnp.copy, state), big, 0)
  grads_a, m_a = grad_step(state, a, 0, 0)
  grads_b, m_b = grad_step(state, b, 0, 1)
  grads_big, m_big = grad_step(state, big, 0, 0)
  weight = m_a["loss_weight"] + m_b["loss_weight"]
  assert int(weight) == int(m_big["loss_weight"])
  # Same gradient, to fp32 summation-order noise relative to the gradient's overall scale
  # (per-leaf scales would not do: the key bias's true gradient is 0, softmax is shift-invariant).
  scale = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads_big))
  for g_acc, g_big in zip(jax.tree.leaves(jax.tree.map(jnp.add, grads_a, grads_b)),
                          jax.tree.leaves(grads_big)):
    np.testing.assert_allclose(np.asarray(g_acc) / scale, np.asarray(g_big) / scale, atol=1e-5)
  state_acc, metrics_acc = apply_step(state, jax.tree.map(jnp.add, grads_a, grads_b), weight, 0)
  np.testing.assert_allclose(float(metrics_acc["grad_norm"]), float(metrics_big["grad_norm"]),
                             rtol=1e-5)
  # The accumulated loss, weighted by tokens, is the big batch's loss.
  weighted = (float(m_a["loss"]) * float(m_a["loss_weight"]) +
              float(m_b["loss"]) * float(m_b["loss_weight"]))
  np.testing.assert_allclose(weighted / float(m_a["loss_weight"] + m_b["loss_weight"]),
                             float(metrics_big["loss"]), rtol=1e-5)


def test_nonfinite_gradients_skip_the_step_and_are_counted():
  config = tiny_config()
  graphdef, state, schedule = make_state(config)
  update = jax.jit(train.make_update_step(graphdef, ctc_task, schedule, 0))
  before = [np.asarray(p) for p in params_of(graphdef, state)]
  bad = random_batch(0)
  bad["audio"][0, 100] = np.nan
  state, metrics = update(state, bad, 0)
  assert int(metrics["nonfinite_in_a_row"]) == 1
  for p0, p1 in zip(before, params_of(graphdef, state)):
    np.testing.assert_array_equal(p0, np.asarray(p1))
  state, metrics = update(state, bad, 1)
  assert int(metrics["nonfinite_in_a_row"]) == 2
  state, metrics = update(state, random_batch(1), 2)  # a good step resets the count
  assert int(metrics["nonfinite_in_a_row"]) == 0
  assert any(not np.array_equal(p0, np.asarray(p1))
             for p0, p1 in zip(before, params_of(graphdef, state)))


def test_remat_and_bf16_keep_gradients():
  """Activation checkpointing changes memory, not math; bf16 compute stays close to fp32."""
  batch = random_batch(2)
  grads = {}
  for name, overrides in [("plain", {}), ("remat", dict(remat="full")),
                          ("bf16", dict(dtype="bfloat16"))]:
    config = tiny_config()
    config.model.encoder.update(overrides)
    model = ctc_model.build(config, VOCAB, nnx.Rngs(params=0, dropout=1))
    grads[name] = jax.tree.leaves(nnx.grad(lambda m: ctc_task.loss_fn(m, batch)[0])(model))
    assert all(g.dtype == jnp.float32 for g in grads[name])  # fp32 master weights
  scale = max(float(jnp.max(jnp.abs(g))) for g in grads["plain"])
  for a, b in zip(grads["plain"], grads["remat"]):
    np.testing.assert_allclose(np.asarray(b) / scale, np.asarray(a) / scale, atol=1e-5)
  cos = sum(float(jnp.vdot(a, b)) for a, b in zip(grads["plain"], grads["bf16"])) / (
      np.sqrt(sum(float(jnp.vdot(a, a)) for a in grads["plain"])) *
      np.sqrt(sum(float(jnp.vdot(b, b)) for b in grads["bf16"])))
  assert cos > 0.98, cos
