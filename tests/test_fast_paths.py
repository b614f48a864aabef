"""The accelerator-oriented choices (issue 15) agree with today's code paths on CPU.

attention_impl (reference / jax.nn.dot_product_attention xla / cuDNN fallback), pos_conv_impl
(split vs grouped conv), scan_layers (one lax.scan over the blocks vs the Python loop) and
prng_impl (checkpoints refuse a run under another PRNG).
"""

import contextlib
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mlasr import checkpoint as ckpt_lib
from mlasr import features
from mlasr.models import encoder as encoder_lib, layers

# Lengths with a full row, partial rows and an all-padding row (a padding example).
LENGTHS = (37, 20, 1, 0)


def _attention_inputs(seed=0, dim=48, frames=37):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.standard_normal((len(LENGTHS), frames, dim)), jnp.float32)
  return x, features.lengths_to_mask(jnp.asarray(LENGTHS), frames)


def _attention(impl, dropout=0.0, heads=4, dim=48):
  return layers.Attention(dim, heads, dropout, impl=impl, rngs=nnx.Rngs(params=0, dropout=1))


def _outs_and_grads(modules, loss_of_output, x, *args):
  """Each module's output and gradients (params, x) of `loss_of_output(module(x, *args))`.

  All modules go through one jit: one compilation instead of one per module. `args` are
  closed over (static flags such as `deterministic` must stay Python values).
  """
  split = [nnx.split(m, nnx.Param, ...) for m in modules]

  @jax.jit
  def run(params, x):
    out = []
    for (graphdef, _, rest), p in zip(split, params):
      def loss(p, x, graphdef=graphdef, rest=rest):
        y = nnx.merge(graphdef, p, rest)(x, *args)
        return loss_of_output(y), y
      (_, y), (gp, gx) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(p, x)
      out.append((y, gp, gx))
    return out

  return run([p for _, p, _ in split], x)


def _assert_same(a, b):
  (y, gp, gx), (y_ref, gp_ref, gx_ref) = a, b
  np.testing.assert_allclose(y, y_ref, atol=1e-5, rtol=0)
  np.testing.assert_allclose(gx, gx_ref, atol=1e-5, rtol=0)
  for (path, u), (_, v) in zip(nnx.to_flat_state(gp), nnx.to_flat_state(gp_ref)):
    np.testing.assert_allclose(u[...], v[...], atol=1e-5, rtol=1e-5, err_msg=str(path))


def test_xla_attention_matches_reference_outputs_and_gradients():
  x, mask = _attention_inputs()
  # cuDNN cannot run on CPU (nor in float32): "cudnn" falls back to the XLA library call.
  modules = [_attention("reference"), _attention("xla"), _attention("cudnn")]
  assert [m.resolve_impl(True, 12) for m in modules] == ["reference", "xla", "xla"]
  ref, xla, cudnn = _outs_and_grads(
      modules, lambda y: jnp.sum(jnp.where(mask[..., None], y, 0) ** 2), x, mask, True)
  _assert_same(xla, ref)
  _assert_same(cudnn, ref)
  # The all-padding row (index 3) is finite in both and matches: uniform over every key.
  assert np.all(np.isfinite(np.asarray(xla[0])))


def test_cudnn_branch_pads_time_to_the_kernels_multiple(monkeypatch):
  """The module's cuDNN branch, run on CPU with the library call switched to "xla".

  cuDNN refuses sequence lengths off a multiple of 64 (599 frames of 12 s audio failed on an
  H200); the branch pads to it and cuts back. Outputs and gradients must equal the
  hand-written attention on every row that has keys (the all-padding row gets one key in
  the cuDNN branch and a uniform average in the reference: neither is ever read).
  """
  seen_lengths = []
  library_call = jax.nn.dot_product_attention

  def as_xla(q, k, v, *args, implementation=None, **kwargs):
    assert implementation == "cudnn"
    seen_lengths.append(q.shape[1])
    return library_call(q, k, v, *args, implementation="xla", **kwargs)

  monkeypatch.setattr(layers.jax.nn, "dot_product_attention", as_xla)
  module = _attention("cudnn")
  monkeypatch.setattr(module, "resolve_impl", lambda *_: "cudnn")
  x, mask = _attention_inputs()
  has_keys = mask.any(-1)[:, None, None]
  loss = lambda y: jnp.sum(jnp.where(mask[..., None] & has_keys, y, 0) ** 2)  # pylint: disable=unnecessary-lambda-assignment
  padded, ref = _outs_and_grads([module, _attention("reference")], loss, x, mask, True)
  assert seen_lengths and all(t % layers.CUDNN_SEQ_MULTIPLE == 0 for t in seen_lengths)
  assert padded[0].shape == x.shape
  y, y_ref = (np.asarray(o[0])[np.asarray(mask.any(-1))] for o in (padded, ref))
  np.testing.assert_allclose(y, y_ref, atol=1e-5, rtol=0)
  np.testing.assert_allclose(padded[2], ref[2], atol=1e-5, rtol=0)
  for (path, u), (_, v) in zip(nnx.to_flat_state(padded[1]), nnx.to_flat_state(ref[1])):
    np.testing.assert_allclose(u[...], v[...], atol=1e-5, rtol=1e-5, err_msg=str(path))


def test_attention_impl_resolution_on_cpu():
  # auto keeps today's hand-written attention on CPU (bitwise the same numbers).
  assert _attention("auto").resolve_impl(True, 12) == "reference"
  assert _attention("auto", 0.1).resolve_impl(False, 12) == "reference"
  # Active attention dropout needs the probabilities: the reference path.
  assert _attention("xla", 0.1).resolve_impl(False, 12) == "reference"
  assert _attention("xla", 0.1).resolve_impl(True, 12) == "xla"
  assert _attention("cudnn", 0.1).resolve_impl(False, 12) == "reference"
  assert not layers.cudnn_attention_supported(jnp.bfloat16, 64)  # no GPU here
  with pytest.raises(ValueError, match="attention_impl"):
    _attention("flash")


def test_encoder_config_reaches_the_layers():
  # Numerics are checked on the layers above and below; here only that the choices arrive.
  cfg = encoder_lib.get_config("tiny", frontend="waveform", conv_dim=(8,) * 7, d_model=32,
                          num_layers=1, num_heads=4, ffn_dim=32, pos_conv_kernel=8,
                          pos_conv_groups=4,
                          conv_module_kernel=0, attention_impl="xla", pos_conv_impl="grouped")
  model = nnx.eval_shape(lambda: encoder_lib.Encoder(cfg, rngs=nnx.Rngs(params=0, dropout=1)))
  assert model.layers[0].attention.impl == "xla" and model.pos_conv.impl == "grouped"
  default = encoder_lib.PRESETS["tiny"]
  assert (default.attention_impl, default.pos_conv_impl) == ("auto", "auto")


def test_grouped_positional_conv_matches_split():
  rng = np.random.default_rng(2)
  assert layers.PositionalConv(16, 4, 4, rngs=nnx.Rngs(0)).resolve_impl() == "split"  # CPU
  # An even kernel, as every preset's: SamePad drops the last frame after either conv.
  x = jnp.asarray(rng.standard_normal((2, 29, 32)), jnp.float32)
  modules = [layers.PositionalConv(32, 16, 4, impl=impl, rngs=nnx.Rngs(0))
             for impl in ("split", "grouped")]
  split, grouped = _outs_and_grads(modules, lambda y: jnp.sum(jnp.sin(y)), x)
  _assert_same(grouped, split)


def _scan_vs_loop_encoders(**overrides):
  fields = dict(d_model=32, num_layers=2, num_heads=4, ffn_dim=48, pos_conv_kernel=8,
                pos_conv_groups=4, conv_module_kernel=3, dropout=0.2, attention_dropout=0.2,
                activation_dropout=0.1, feat_proj_dropout=0.1, layerdrop=0.4)
  cfg = encoder_lib.get_config("tiny", **dict(fields, **overrides))
  return [encoder_lib.Encoder(dataclasses.replace(cfg, scan_layers=how),
                              rngs=nnx.Rngs(params=0, dropout=1)) for how in ("loop", "scan")]


def test_scanned_layers_match_the_loop_in_training():
  """Outputs, every hidden state and gradients agree, dropout and layerdrop included, and
  the dropout streams move on alike. (Remat inside the scan: test_train_steps.)"""
  loop, scan = _scan_vs_loop_encoders()
  assert scan.scans_blocks(deterministic=True) and not loop.scans_blocks(deterministic=False)
  rng = np.random.default_rng(3)
  audio = jnp.asarray(rng.standard_normal((3, 4000)) * 0.1, jnp.float32)
  audio_mask = features.lengths_to_mask(jnp.asarray([4000, 2500, 900]), 4000)
  # Weights and dropout streams are stored per block either way: checkpoints interchange.
  assert jax.tree.structure(nnx.state(loop)) == jax.tree.structure(nnx.state(scan))
  splits = [nnx.split(m, nnx.Param, ...) for m in (loop, scan)]

  @jax.jit
  def run(params, rests):
    results = []
    for (graphdef, _, _), p, rest in zip(splits, params, rests):
      model = nnx.merge(graphdef, p, rest)

      def loss(model):
        out = model(audio, audio_mask, deterministic=False, output_hidden_states=True)
        total = sum(jnp.sum(jnp.sin(h) * out.frame_mask[..., None])
                    for h in out.layer_hiddens) + jnp.sum(out.hidden)
        return total, out
      (_, out), grads = nnx.value_and_grad(loss, has_aux=True)(model)
      results.append((out.hidden, out.layer_hiddens, nnx.state(grads, nnx.Param),
                      nnx.state(model, nnx.RngState)))
    return results

  loop_run, scan_run = run([p for _, p, _ in splits], [r for _, _, r in splits])
  (hidden, hiddens, grads, rng), (hidden_ref, hiddens_ref, grads_ref, rng_ref) = (scan_run,
                                                                                 loop_run)
  np.testing.assert_allclose(hidden, hidden_ref, atol=1e-5, rtol=0)
  assert len(hiddens) == len(hiddens_ref) == 3
  for h, h_ref in zip(hiddens, hiddens_ref):
    np.testing.assert_allclose(h, h_ref, atol=1e-5, rtol=0)
  for (path, u), (_, v) in zip(nnx.to_flat_state(grads), nnx.to_flat_state(grads_ref)):
    scale = max(1.0, float(np.abs(v[...]).max()))
    np.testing.assert_allclose(u[...], v[...], atol=2e-5 * scale, rtol=0, err_msg=str(path))
  counts = [(path, u[...], v[...]) for (path, u), (_, v) in
            zip(nnx.to_flat_state(rng), nnx.to_flat_state(rng_ref)) if "count" in path]
  assert any(int(v) > 0 for _, _, v in counts)  # dropout was drawn
  for path, u, v in counts:
    np.testing.assert_array_equal(u, v, err_msg=str(path))


def test_scan_layers_auto_and_the_adapter_fallback(monkeypatch):
  auto = nnx.eval_shape(lambda: encoder_lib.Encoder(
      encoder_lib.get_config("tiny", num_layers=2), rngs=nnx.Rngs(0)))
  assert auto.config.scan_layers == "auto"
  assert auto.scans_blocks(deterministic=False)  # training steps scan
  assert not auto.scans_blocks(deterministic=True)  # CPU inference loops (faster here)
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert auto.scans_blocks(deterministic=True)
  monkeypatch.undo()
  with pytest.raises(ValueError, match="scan_layers"):
    encoder_lib.get_config("tiny", scan_layers=True)
  # `after_block` needs each block's Python index (the adapters of that block).
  loop, scan = _scan_vs_loop_encoders(layerdrop=0.0)
  assert not scan.scans_blocks(deterministic=True, has_after_block=True)
  audio = jnp.ones((1, 1600)) * 0.1
  seen = []
  hook = lambda i, y: (seen.append(i), y + i)[1]  # pylint: disable=unnecessary-lambda-assignment
  a = scan(audio, after_block=hook).hidden
  assert seen == [0, 1]
  np.testing.assert_allclose(a, loop(audio, after_block=hook).hidden, atol=1e-6)


def test_auto_dtype_is_bf16_on_accelerators_and_fp32_on_cpu(monkeypatch):
  auto = encoder_lib.get_config("tiny")
  assert auto.dtype == "auto" and auto.compute_dtype == jnp.float32  # this CPU
  model = nnx.eval_shape(lambda: encoder_lib.Encoder(auto, rngs=nnx.Rngs(0)))
  assert model.layers[0].attention.dtype == jnp.float32
  assert encoder_lib.get_config("tiny", dtype="bfloat16").compute_dtype == jnp.bfloat16
  for backend in ("gpu", "tpu"):
    monkeypatch.setattr(jax, "default_backend", lambda backend=backend: backend)
    assert auto.compute_dtype == jnp.bfloat16
    assert encoder_lib.get_config("tiny", dtype="float32").compute_dtype == jnp.float32
    model = nnx.eval_shape(lambda: encoder_lib.Encoder(auto, rngs=nnx.Rngs(0)))
    assert model.layers[0].attention.dtype == jnp.bfloat16
    # Parameters (master weights, optimizer state, checkpoints) stay float32.
    assert {v.dtype for v in jax.tree.leaves(nnx.state(model, nnx.Param))} == {
        jnp.dtype(jnp.float32)}


@contextlib.contextmanager
def _prng(name):
  before = ckpt_lib.current_prng_impl()
  ckpt_lib.set_prng_impl(name)
  try:
    yield
  finally:
    ckpt_lib.set_prng_impl(before)


def test_prng_impl_key_shapes_and_names():
  assert ckpt_lib.current_prng_impl() == "threefry"  # the default stays JAX's
  assert jax.random.key_data(jax.random.key(0)).shape == (2,)
  with _prng("unsafe_rbg"):
    assert ckpt_lib.current_prng_impl() == "unsafe_rbg"
    assert jax.random.key_data(jax.random.key(0)).shape == (4,)
    # Dropout draws work under it (the Rngs make their keys after the switch).
    dropped = nnx.Dropout(0.5, rngs=nnx.Rngs(dropout=1))(jnp.ones(64), deterministic=False)
    assert 0 < int((np.asarray(dropped) == 0).sum()) < 64
  with pytest.raises(ValueError, match="prng_impl"):
    ckpt_lib.set_prng_impl("philox")


def test_checkpoint_refuses_another_prng_impl(tmp_path):
  state = {"w": np.arange(4, dtype=np.float32)}
  with _prng("unsafe_rbg"):
    ckpt = ckpt_lib.Checkpointer(str(tmp_path / "rbg"))
    ckpt.save(1, state, {"pos": 1}, {"step": 1})
    ckpt.wait()
    restored, _, meta = ckpt.restore(1, {"w": np.zeros(4, np.float32)})  # same impl: fine
    assert meta == {"step": 1}  # the impl is recorded beside the caller's metadata
    np.testing.assert_array_equal(restored["w"], state["w"])
  with pytest.raises(ckpt_lib.PrngImplMismatchError,
                     match=r"prng_impl='unsafe_rbg'.*'threefry'.*--config.prng_impl=unsafe_rbg"):
    ckpt.restore(1, {"w": np.zeros(4, np.float32)})
  ckpt.close()
  # A checkpoint from before the field existed is threefry.
  ckpt_lib.check_prng_impl({"step": 3}, "old checkpoint")
  with _prng("unsafe_rbg"), pytest.raises(ckpt_lib.PrngImplMismatchError, match="'threefry'"):
    ckpt_lib.check_prng_impl({"step": 3}, "old checkpoint")
