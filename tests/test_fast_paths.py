"""The accelerator-oriented choices (issue 15) agree with today's code paths on CPU.

attention_impl (reference / jax.nn.dot_product_attention xla / cuDNN fallback), pos_conv_impl
(split vs grouped conv) and prng_impl (checkpoints refuse a run under another PRNG).
"""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mlasr import checkpoint as ckpt_lib
from mlasr.models import hubert, layers

# Lengths with a full row, partial rows and an all-padding row (a padding example).
LENGTHS = (37, 20, 1, 0)


def _attention_inputs(seed=0, dim=48, frames=37):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.standard_normal((len(LENGTHS), frames, dim)), jnp.float32)
  return x, layers.lengths_to_mask(jnp.asarray(LENGTHS), frames)


def _attention(impl, dropout=0.0, heads=4, dim=48):
  return layers.Attention(dim, heads, dropout, impl=impl, rngs=nnx.Rngs(params=0, dropout=1))


def _out_and_grads(attn, x, mask):
  """Output, and gradients w.r.t. the parameters and the input, of a loss over valid rows."""
  graphdef, params, rest = nnx.split(attn, nnx.Param, ...)

  def loss(p, x):
    y = nnx.merge(graphdef, p, rest)(x, mask, True)
    return jnp.sum(jnp.where(mask[..., None], y, 0) ** 2), y

  (_, y), (gs, gx) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(params, x)
  return y, gs, gx


def test_xla_attention_matches_reference_outputs_and_gradients():
  x, mask = _attention_inputs()
  y_ref, gs_ref, gx_ref = _out_and_grads(_attention("reference"), x, mask)
  y, gs, gx = _out_and_grads(_attention("xla"), x, mask)
  np.testing.assert_allclose(y, y_ref, atol=1e-5, rtol=0)
  # The all-padding row (index 3) is finite and matches too: uniform over every key.
  assert np.all(np.isfinite(np.asarray(y)))
  np.testing.assert_allclose(gx, gx_ref, atol=1e-5, rtol=0)
  for (path, a), (_, b) in zip(nnx.to_flat_state(gs), nnx.to_flat_state(gs_ref)):
    np.testing.assert_allclose(a[...], b[...], atol=1e-5, rtol=1e-5, err_msg=str(path))
  # cuDNN cannot run on CPU (nor in float32): it falls back to the XLA library call.
  cudnn = _attention("cudnn")
  assert cudnn.resolve_impl(True, 12) == "xla"
  np.testing.assert_allclose(nnx.jit(lambda m: m(x, mask, True))(cudnn), y_ref, atol=1e-5,
                             rtol=0)


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
  cfg = hubert.get_config("tiny", frontend="waveform", conv_dim=(8,) * 7, d_model=32,
                          num_layers=1, num_heads=4, ffn_dim=32, pos_conv_kernel=8,
                          pos_conv_groups=4,
                          conv_module_kernel=0, attention_impl="xla", pos_conv_impl="grouped")
  model = nnx.eval_shape(lambda: hubert.Encoder(cfg, rngs=nnx.Rngs(params=0, dropout=1)))
  assert model.layers[0].attention.impl == "xla" and model.pos_conv.impl == "grouped"
  default = hubert.PRESETS["tiny"]
  assert (default.attention_impl, default.pos_conv_impl) == ("auto", "auto")


def test_grouped_positional_conv_matches_split():
  rng = np.random.default_rng(2)
  assert layers.PositionalConv(16, 4, 4, rngs=nnx.Rngs(0)).resolve_impl() == "split"  # CPU
  for dim, kernel, groups in ((32, 16, 8), (24, 7, 3)):  # even (SamePad) and odd kernels
    x = jnp.asarray(rng.standard_normal((2, 29, dim)), jnp.float32)
    results = {}
    for impl in ("split", "grouped"):
      conv = layers.PositionalConv(dim, kernel, groups, impl=impl, rngs=nnx.Rngs(0))
      graphdef, state = nnx.split(conv)

      def loss(s, x, gd=graphdef):
        y = nnx.merge(gd, s)(x)
        return jnp.sum(jnp.sin(y)), y

      results[impl] = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(state, x)
    (_, y_split), (gs_split, gx_split) = results["split"]
    (_, y_grouped), (gs_grouped, gx_grouped) = results["grouped"]
    np.testing.assert_allclose(y_grouped, y_split, atol=1e-5, rtol=0)
    np.testing.assert_allclose(gx_grouped, gx_split, atol=1e-5, rtol=0)
    for (path, a), (_, b) in zip(nnx.to_flat_state(gs_grouped), nnx.to_flat_state(gs_split)):
      np.testing.assert_allclose(a[...], b[...], atol=1e-5, rtol=1e-5, err_msg=str(path))


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
    # Dropout draws work under it (the model makes its keys after the switch).
    model = layers.Attention(16, 2, 0.5, rngs=nnx.Rngs(params=0, dropout=1))
    x, mask = jnp.ones((1, 5, 16)), jnp.ones((1, 5), bool)
    assert np.all(np.isfinite(np.asarray(model(x, mask, False))))
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
