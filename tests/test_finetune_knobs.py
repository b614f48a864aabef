"""Fine-tuning knobs (issue 14 §3): per-group learning rates, layer-wise decay, the CTC head on a
middle layer or a learned weighted sum of layers; each against a direct reference."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mlasr import checkpoint as ckpt_lib, config_lib, optim
from mlasr.models import ctc, encoder as encoder_lib, surgery
from mlasr.tasks import ctc as ctc_task

# Log-mel front end (no parameters) and 3 small blocks: cheap to compile.
TINY = dict(preset="tiny", d_model=16, num_layers=3, num_heads=2, ffn_dim=32,
            pos_conv_kernel=8, pos_conv_groups=4, conv_module_kernel=0, dropout=0.0,
            attention_dropout=0.0, feat_proj_dropout=0.0)
HEAD = config_lib.NEW_PARAMS
AUDIO = np.random.default_rng(0).normal(0, 0.3, (2, 2400)).astype(np.float32)
MASK = np.ones(AUDIO.shape, np.int32)
MASK[1, 1600:] = 0


def config(**model_fields):
  c = config_lib.base_config("ctc")
  c.model.encoder = dict(TINY)
  c.model.final_dropout = 0.0
  c.model.update(model_fields)
  c.optim.update(schedule="constant", lr=1e-3, weight_decay=0.1, clip_norm=0.5)
  return c


def build(c, seed=0):
  return ctc.build(c, 7, nnx.Rngs(params=seed, dropout=seed + 1))


def loss(model):
  logits, frame_mask = model(AUDIO * MASK, MASK, deterministic=True)
  return jnp.sum(jnp.square(logits) * frame_mask[..., None]) / jnp.sum(frame_mask)


def param_loss(model):
  """A cheap loss of every parameter, for the optimizer tests: they need the model's real
  parameter names, not its forward pass. Its gradient, 3 cos(3p + 0.1), varies per element."""
  return sum(jnp.sum(jnp.sin(3 * v[...] + 0.1)) for v in
             jax.tree.leaves(nnx.state(model, nnx.Param), is_leaf=lambda x: isinstance(
                 x, nnx.Variable)))


def flat_params(model):
  return {k: np.array(v) for k, v in surgery.flatten(
      nnx.to_pure_dict(nnx.state(model, nnx.Param))).items()}


@nnx.jit
def step(model, optimizer):
  optimizer.update(model, nnx.grad(param_loss)(model))


def train(model, tx, steps):
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  for _ in range(steps):
    step(model, optimizer)
  return optimizer


# -------------------------------------------------------------------------------------------
# Per-group learning rates.
# -------------------------------------------------------------------------------------------
def test_head_multiplier_equals_two_adamws_applied_by_hand():
  mult = 10.0
  c = config()
  c.optim.lr_multipliers = ((HEAD, mult),)
  model = build(c)
  train(model, optim.make_optimizer(c.optim, 10)[0], 4)

  # The reference: one global-norm clip, then optax.adamw(lr) on the encoder's parameters
  # and optax.adamw(mult * lr) on the head's, each on its own dict.
  ref = build(c)
  graphdef, params, rest = nnx.split(ref, nnx.Param, ...)
  flat = surgery.flatten(nnx.to_pure_dict(params))
  groups = {g: {n: v for n, v in flat.items() if n.startswith("encoder/") == (g == "enc")}
            for g in ("enc", "head")}
  lr = {"enc": 1e-3, "head": 1e-3 * mult}
  txs = {g: optax.adamw(lr[g], b1=0.9, b2=0.98, eps=1e-6, weight_decay=0.1) for g in groups}
  states = {g: txs[g].init(groups[g]) for g in groups}
  template = nnx.to_pure_dict(params)

  def loss_of(flat):
    state = jax.tree.map(lambda x: x, params)  # a State like the model's, these values
    nnx.replace_by_pure_dict(state, surgery.unflatten_like(template, flat))
    return param_loss(nnx.merge(graphdef, state, rest))

  @jax.jit
  def ref_step(groups, states):
    grads = jax.grad(loss_of)({**groups["enc"], **groups["head"]})
    norm = optax.tree.norm(grads)
    grads = jax.tree.map(lambda g: jnp.where(norm < 0.5, g, g / norm * 0.5), grads)
    out_groups, out_states = {}, {}
    for g in groups:
      updates, out_states[g] = txs[g].update({n: grads[n] for n in groups[g]}, states[g],
                                             groups[g])
      out_groups[g] = optax.apply_updates(groups[g], updates)
    return out_groups, out_states

  for _ in range(4):
    groups, states = ref_step(groups, states)
  got = flat_params(model)
  want = {**groups["enc"], **groups["head"]}
  assert got.keys() == want.keys()
  for name in want:
    # Two differently compiled gradient paths: equal to float32 rounding (the update scale
    # itself is exact: test_layer_decay_factors_match_a_table_and_scale_updates_exactly).
    # (atol: the attention key biases' true gradient is 0, so they move by rounding noise.)
    np.testing.assert_allclose(got[name], np.asarray(want[name]), rtol=2e-5, atol=2e-6,
                               err_msg=name)
  start = flat_params(build(c))
  assert not np.array_equal(got["head/kernel"], start["head/kernel"])


def test_defaults_leave_the_optimizer_as_it_was():
  c = config()
  assert c.optim.lr_multipliers == () and c.optim.layer_decay == 1.0
  assert optim.lr_multipliers(c.optim.lr_multipliers, c.optim.layer_decay) is None
  # The same chain (clip, AdamW) as before the knobs existed: same state, same updates.
  old = optax.apply_if_finite(optax.chain(
      optax.clip_by_global_norm(0.5),
      optax.adamw(optim.make_schedule(c.optim, 10), b1=0.9, b2=0.98, eps=1e-6,
                  weight_decay=0.1)), max_consecutive_errors=2**30)
  a, b = build(c), build(c)
  opt_a = train(a, optim.make_optimizer(c.optim, 10)[0], 2)
  opt_b = train(b, old, 2)
  assert (jax.tree.structure(nnx.to_pure_dict(nnx.state(opt_a)))
          == jax.tree.structure(nnx.to_pure_dict(nnx.state(opt_b))))
  for (name, x), y in zip(flat_params(a).items(), flat_params(b).values()):
    np.testing.assert_array_equal(x, y, err_msg=name)


def _decay_table(d, pre_ln):
  """Layer-wise decay factor of each parameter group of a 3-block encoder, written out."""
  return {
      "encoder/frontend/": d ** 4, "encoder/feature_layer_norm/": d ** 4,
      "encoder/projection/": d ** 4, "encoder/mask_embedding": d ** 4,
      "encoder/pos_conv/": d ** 4,
      "encoder/layers/0/": d ** 3, "encoder/layers/1/": d ** 2, "encoder/layers/2/": d ** 1,
      "encoder/layer_norm/": 1.0 if pre_ln else d ** 4,
      "head/": 1.0, "layer_logits": 1.0,
  }


@pytest.mark.parametrize("pre_ln", [False, True])
def test_layer_decay_factors_match_a_table_and_scale_updates_exactly(pre_ln):
  c = config(layer_weights=True)
  c.model.encoder["layer_norm_first"] = pre_ln
  enc = encoder_lib.config_from_fields(c.model.encoder)
  names = list(flat_params(build(c)))
  table = _decay_table(0.5, pre_ln)
  factor_of = optim.lr_multipliers((("encoder/layers/2/.*", 3.0), (HEAD, 10.0)), 0.5, enc)
  assert encoder_lib.layer_depth("frontend/kernels/0", enc) == 0  # a waveform front end
  for name in names:
    prefix = next(p for p in table if name.startswith(p))
    rule = 3.0 if name.startswith("encoder/layers/2/") else 10.0 if prefix in (
        "head/", "layer_logits") else 1.0
    assert factor_of(name) == table[prefix] * rule, name

  # The optimizer's updates: those of plain AdamW times the table (powers of 2: exact).
  c.optim.layer_decay = 0.5
  model = build(c)
  grads = nnx.to_pure_dict(nnx.jit(nnx.grad(param_loss))(model))
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  plain_c = config(layer_weights=True)
  plain, _ = optim.make_optimizer(plain_c.optim, 10)
  decayed, _ = optim.make_optimizer(c.optim, 10, encoder=enc)
  s_plain, s_decay = plain.init(params), decayed.init(params)
  # Jitted: op by op, ~100 leaves x 2 optimizers x 2 updates dispatch for tens of seconds.
  plain_update, decayed_update = jax.jit(plain.update), jax.jit(decayed.update)
  for _ in range(2):  # the second update has Adam moments from the first in it
    u_plain, s_plain = plain_update(grads, s_plain, params)
    u_decay, s_decay = decayed_update(grads, s_decay, params)
  u_plain, u_decay = surgery.flatten(u_plain), surgery.flatten(u_decay)
  for name in names:
    prefix = next(p for p in table if name.startswith(p))
    np.testing.assert_array_equal(np.asarray(u_decay[name]),
                                  np.asarray(u_plain[name]) * np.float32(table[prefix]),
                                  err_msg=name)


def test_knob_errors_name_the_problem():
  enc = encoder_lib.config_from_fields(config().model.encoder)
  with pytest.raises(ValueError, match="needs the encoder's config"):
    optim.lr_multipliers((), 0.8)
  with pytest.raises(ValueError, match="layer_decay=1.5"):
    optim.lr_multipliers((), 1.5, enc)
  with pytest.raises(ValueError, match="must be finite and >= 0"):
    optim.lr_multipliers((("head/.*", -1.0),))
  with pytest.raises(ValueError, match="has no layer depth"):
    encoder_lib.layer_depth("adapter_norm/scale", enc)
  c = config()
  c.optim.lr_multipliers = (("heads/.*", 10.0),)  # a typo: the shared head is head/
  with pytest.raises(ValueError, match=r"'heads/\.\*' matches no trainable parameter"):
    nnx.Optimizer(build(config()), optim.make_optimizer(c.optim, 10)[0], wrt=nnx.Param)


def test_multipliers_compose_with_freezing_and_resume_exactly(tmp_path):
  """Frozen groups stay bit-identical, frozen-for-N groups start at update N, and a run
  checkpointed after 2 updates and restored ends where 4 straight updates do."""
  c = config()
  c.optim.update(lr_multipliers=((HEAD, 8.0),), layer_decay=0.5,
                 freeze=(("encoder/projection/.*", -1), ("encoder/.*", 2)))
  enc = encoder_lib.config_from_fields(c.model.encoder)
  # Reference for the multipliers inside freeze: the plain optimizer with the same freeze
  # rules, run at the multiplied rate per group through optax.multi_transform.
  factor_of = optim.lr_multipliers(c.optim.lr_multipliers, 0.5, enc)
  names = list(flat_params(build(c)))
  factors = sorted({factor_of(n) for n in names})

  def label_fn(tree):
    return jax.tree_util.tree_map_with_path(
        lambda path, _: str(factor_of(optim.param_path(path))), tree)

  inner = optax.chain(optax.clip_by_global_norm(0.5), optax.multi_transform(
      {str(f): optax.adamw(1e-3 * f, b1=0.9, b2=0.98, eps=1e-6, weight_decay=0.1)
       for f in factors}, label_fn))
  reference = optax.apply_if_finite(optim.apply_freeze(inner, c.optim.freeze), 2**30)
  straight, ref = build(c), build(c)
  tx = optim.make_optimizer(c.optim, 10, encoder=enc)[0]
  train(straight, tx, 4)
  train(ref, reference, 4)
  start = flat_params(build(c))
  got, want = flat_params(straight), flat_params(ref)
  for name in names:
    np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    if name.startswith("encoder/projection/"):
      np.testing.assert_array_equal(got[name], start[name], err_msg=name)
  assert not np.array_equal(got["encoder/layers/0/attention/q_kernel"],
                            start["encoder/layers/0/attention/q_kernel"])

  resumed = build(c)
  optimizer = train(resumed, tx, 2)
  checkpointer = ckpt_lib.Checkpointer(str(tmp_path))
  checkpointer.save(2, ckpt_lib.train_state(resumed, optimizer), {"iter": 0}, {"step": 2})
  checkpointer.wait()
  fresh = build(c)
  fresh_opt = nnx.Optimizer(fresh, tx, wrt=nnx.Param)
  saved, _, _ = checkpointer.restore(
      2, ckpt_lib.abstract_like(ckpt_lib.train_state(fresh, fresh_opt)))
  checkpointer.close()
  ckpt_lib.load_train_state(fresh, fresh_opt, saved)
  for _ in range(2):
    step(fresh, fresh_opt)
  for name, value in flat_params(fresh).items():
    np.testing.assert_array_equal(value, got[name], err_msg=name)


# -------------------------------------------------------------------------------------------
# The CTC head on a middle layer or a learned weighted sum of layers.
# -------------------------------------------------------------------------------------------
def _layer_norm(h):
  h = np.asarray(h, np.float64)
  mean = h.mean(-1, keepdims=True)
  return (h - mean) / np.sqrt(h.var(-1, keepdims=True) + 1e-5)


def _head(model, hidden):
  kernel, bias = np.asarray(model.head.kernel[...]), np.asarray(model.head.bias[...])
  return hidden @ kernel + bias


def test_default_head_reads_the_encoder_output_as_before():
  model = build(config())
  assert "layer_logits" not in nnx.to_pure_dict(nnx.state(model, nnx.Param))
  assert model.layer_logits is None and model.head_layer == -1
  logits, _ = model(AUDIO, MASK, deterministic=True)
  out = model.encoder(AUDIO, MASK, deterministic=True)
  assert out.layer_hiddens is None  # the default path asks for no hidden states
  np.testing.assert_array_equal(np.asarray(logits), np.asarray(model.head(out.hidden)))


def test_middle_layer_equals_a_truncated_encoder():
  """head_layer=1 of a 3-block post-LN encoder is the 1-block encoder with the same weights."""
  deep = build(config(head_layer=1))
  shallow = build(config(encoder=dict(TINY, num_layers=1)))
  flat = flat_params(deep)
  ckpt_lib.assign_params(shallow, surgery.unflatten_like(
      nnx.to_pure_dict(nnx.state(shallow, nnx.Param)), flat))
  np.testing.assert_allclose(np.asarray(deep(AUDIO, MASK, deterministic=True)[0]),
                             np.asarray(shallow(AUDIO, MASK, deterministic=True)[0]),
                             rtol=1e-6, atol=1e-6)
  # The blocks above get no gradient; the block read and those below do.
  grads = surgery.flatten(nnx.to_pure_dict(nnx.grad(loss)(deep)))
  assert all(float(np.abs(g).sum()) == 0 for n, g in grads.items()
             if n.startswith(("encoder/layers/1/", "encoder/layers/2/")))
  assert float(np.abs(grads["encoder/layers/0/attention/q_kernel"]).sum()) > 0
  with pytest.raises(ValueError, match="head_layer=4"):
    build(config(head_layer=4))


def test_layer_weights_one_hot_uniform_and_gradients():
  model = build(config(layer_weights=True))
  hiddens = model.encoder(AUDIO, MASK, deterministic=True, output_hidden_states=True
                          ).layer_hiddens
  assert model.layer_logits[...].shape == (4,)
  # Uniform (the init): the mean of the normalised layers, computed by hand.
  want = _head(model, np.mean([_layer_norm(h) for h in hiddens], 0))
  got = np.asarray(model(AUDIO, MASK, deterministic=True)[0])
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  # One-hot: reading that (normalised) layer directly.
  for k in (0, 2):
    model.layer_logits[...] = jnp.full([4], -1e4).at[k].set(0.0)
    np.testing.assert_allclose(np.asarray(model(AUDIO, MASK, deterministic=True)[0]),
                               _head(model, _layer_norm(hiddens[k])), rtol=1e-4, atol=1e-4)
  # Gradients reach the weights and, unfrozen, every encoder block.
  model.layer_logits[...] = jnp.array([0.1, -0.2, 0.3, 0.0])
  batch = dict(audio=AUDIO * MASK, audio_mask=MASK, labels=np.array([[1, 2, 3], [4, 5, 0]]),
               label_mask=np.array([[1, 1, 1], [1, 1, 0]]), lang_id=np.zeros(2, np.int32),
               example_mask=np.ones(2, np.int32))
  grads = surgery.flatten(nnx.to_pure_dict(
      nnx.grad(lambda m: ctc_task.loss_fn(m, batch, train=False)[0])(model)))
  assert float(np.abs(grads["layer_logits"]).sum()) > 0
  for i in range(3):
    assert float(np.abs(grads[f"encoder/layers/{i}/attention/q_kernel"]).sum()) > 0
  # Surgery: the weights are new, like the head.
  assert "layer_logits" in surgery.load_pretrained_encoder(
      build(config(layer_weights=True), seed=3), nnx.to_pure_dict(nnx.state(model, nnx.Param)),
      log=lambda _: None).initialised


def test_finetune_experiment_knobs_one_override_each():
  from experiments import ctc_finetune  # pylint: disable=import-outside-toplevel
  base = ctc_finetune.get_config("init_from=/w/it2")
  assert base.optim.lr_multipliers == () and base.optim.layer_decay == 1.0
  assert base.model.head_layer == -1 and not base.model.layer_weights
  assert base.optim.freeze == (("encoder/frontend/.*", -1), ("encoder/.*", 150))
  for arg, field, value in [
      ("head_lr_mult=10", "optim.lr_multipliers", ((HEAD, 10.0),)),
      ("layer_decay=0.75", "optim.layer_decay", 0.75),
      ("freeze_steps=0", "optim.freeze", (("encoder/frontend/.*", -1), ("encoder/.*", 0))),
      ("freeze_steps=-1", "optim.freeze", (("encoder/frontend/.*", -1), ("encoder/.*", -1))),
      ("layer_weights=1", "model.layer_weights", True),
      ("head_layer=3", "model.head_layer", 3)]:
    config_ = ctc_finetune.get_config("init_from=/w/it2," + arg)
    group, key = field.split(".")
    assert config_[group][key] == value, arg
    changed = {f"{g}.{k}" for g in ("optim", "model") for k in base[g]
               if config_[g][k] != base[g][k]}
    assert changed == {field}, (arg, changed)
