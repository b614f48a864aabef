"""Behaviour of the mlasr encoder: padding, front ends, gradients, axis names, jit."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mlasr import features
from mlasr.models import encoder as encoder_lib, frontends, layers

SMALL = dict(conv_dim=(32,) * 7, d_model=48, num_layers=2, num_heads=4, ffn_dim=96,
             pos_conv_kernel=16, pos_conv_groups=16)
AXES = {"embed", "mlp", "heads", "kv", "conv_in", "conv_out", "vocab", "norm", None}


def _model(frontend="waveform", seed=0, **kw):
  cfg = encoder_lib.get_config("tiny", frontend=frontend, **{**SMALL, **kw})
  return encoder_lib.Encoder(cfg, rngs=nnx.Rngs(params=seed, dropout=seed + 1))


def _audio(lengths, seed=0):
  rng = np.random.default_rng(seed)
  t = max(lengths)
  audio = np.zeros((len(lengths), t), np.float32)
  for i, n in enumerate(lengths):
    audio[i, :n] = rng.standard_normal(n) * 0.1 + np.sin(np.arange(n) * 0.05)
  mask = np.arange(t)[None] < np.asarray(lengths)[:, None]
  return jnp.asarray(audio), jnp.asarray(mask)


@pytest.mark.parametrize("frontend,kw", [
    ("waveform", dict(extractor_mode="default")),
    ("waveform", dict(extractor_mode="layer_norm", layer_norm_first=True, conv_impl="matmul")),
    ("logmel", dict(logmel_subsample=4, subsampler="stack")),
    ("logmel", dict(logmel_subsample=2, subsampler="conv2d", conv_module_kernel=0)),
])
def test_pad_invariance(frontend, kw):
  model = _model(frontend, **kw)
  n = 5000
  audio, mask = _audio([n, 8000, 7123])
  run = nnx.jit(lambda m, a, am: m(a, am, output_hidden_states=True))
  alone = run(model, audio[:1, :n], mask[:1, :n])
  batched = run(model, audio, mask)
  f = int(model.frame_lengths(n))
  assert alone.hidden.shape[1] == f == int(batched.frame_mask[0].sum())
  np.testing.assert_array_equal(batched.frame_mask.sum(-1),
                                model.frame_lengths(np.array([n, 8000, 7123])))
  assert np.abs(np.asarray(batched.hidden[0, :f] - alone.hidden[0])).max() <= 1e-5
  for a, b in zip(alone.layer_hiddens, batched.layer_hiddens):
    assert np.abs(np.asarray(b[0, :f] - a[0])).max() <= 1e-5
  assert np.all(np.isfinite(np.asarray(batched.hidden)))


def test_all_padding_row_is_finite():
  model = _model("logmel")
  audio, mask = _audio([4000, 4000])
  out = model(audio, mask.at[1].set(False))
  assert not out.frame_mask[1].any() and np.all(np.isfinite(np.asarray(out.hidden)))


def test_log_mel_matches_librosa():
  librosa = pytest.importorskip("librosa")
  audio, _ = _audio([16000, 12345], seed=3)
  ours = np.asarray(features.log_mel(audio))
  for i, n in enumerate([16000, 12345]):
    ref = librosa.feature.melspectrogram(
        y=np.asarray(audio[i, :n]), sr=16000, n_fft=400, hop_length=160, win_length=400,
        center=False, power=2.0, n_mels=80)
    ref = np.log(ref + 1e-6).T
    assert ref.shape[0] == (n - 400) // 160 + 1
    assert np.abs(ours[i, :len(ref)] - ref).max() < 2e-3


def test_logmel_frame_lengths_are_exact():
  for sub, kind in [(2, "stack"), (4, "stack"), (2, "conv2d"), (4, "conv2d")]:
    model = _model("logmel", logmel_subsample=sub, subsampler=kind, num_layers=1)
    run = jax.jit(lambda a, m, fe=model.frontend: fe(a, m))
    for n in (400, 559, 1999, 4321):
      feats, frame_mask = run(*_audio([n]))
      assert feats.shape[1] == int(model.frame_lengths(n)) == int(frame_mask.sum()), (sub, kind, n)
      assert feats.shape[2] == model.frontend.out_dim


def test_feature_grad_mult_scales_frontend_gradient():
  audio, mask = _audio([3000, 2500])

  def run(mult):
    model = _model("waveform", feature_grad_mult=mult, num_layers=1, conv_dim=(16,) * 4,
                   conv_kernel=(10, 3, 3, 2), conv_stride=(5, 2, 2, 2), pos_conv_groups=2)

    @nnx.jit
    def loss_and_grad(m):
      # The feature penalty path: the backward pass stays inside the front end (fast).
      def loss(m):
        out = m(audio, mask)
        return jnp.sum(out.features ** 2), out.hidden
      return nnx.value_and_grad(loss, has_aux=True)(m)

    return loss_and_grad(model)

  (l1, h1), g1 = run(1.0)
  (l2, h2), g2 = run(0.1)
  assert l1 == l2  # the forward pass is the identity
  np.testing.assert_array_equal(h1, h2)
  for i in (0, 3):
    k1, k2 = g1.frontend.kernels[i][...], g2.frontend.kernels[i][...]
    assert np.abs(np.asarray(k1)).max() > 0
    np.testing.assert_allclose(k2, 0.1 * k1, rtol=1e-4, atol=1e-6 * np.abs(k1).max())


def test_every_param_has_logical_axis_names():
  for frontend, kw in [("waveform", dict(conv_bias=True, conv_module_kernel=5)),
                       ("waveform", dict(extractor_mode="layer_norm")),
                       ("logmel", dict(subsampler="conv2d"))]:
    model = _model(frontend, **kw)
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Variable)):
      if not isinstance(var, nnx.Param):
        continue
      names = var.get_metadata().get("out_sharding")
      assert names is not None and len(names) == var[...].ndim, (path, names)
      assert set(names) <= AXES, (path, names)


def test_jit_dropout_layerdrop_and_determinism():
  model = _model("logmel", dropout=0.2, layerdrop=0.5)
  audio, mask = _audio([4000, 3000])

  @nnx.jit(static_argnames="deterministic")
  def run(m, a, am, deterministic):
    return m(a, am, deterministic=deterministic).hidden

  e1, e2 = run(model, audio, mask, True), run(model, audio, mask, True)
  np.testing.assert_array_equal(e1, e2)
  np.testing.assert_allclose(e1, model(audio, mask).hidden, atol=1e-5)
  t1, t2 = run(model, audio, mask, False), run(model, audio, mask, False)
  assert np.abs(np.asarray(t1 - t2)).max() > 1e-3  # rng streams advance
  # split/merge for pure jax.jit.
  graphdef, state = nnx.split(model)
  pure = jax.jit(lambda s, a, am: nnx.merge(graphdef, s)(a, am).hidden)
  np.testing.assert_allclose(pure(state, audio, mask), e1, atol=1e-5)


def test_time_mask_replaces_frames_with_embedding():
  model = _model("waveform", num_layers=1)
  audio, mask = _audio([6000])
  f = int(model.frame_lengths(6000))
  tm = jnp.zeros((1, f), bool).at[0, 3].set(True)
  a, b = model(audio, mask), model(audio, mask, time_mask=tm)
  assert np.abs(np.asarray(a.hidden - b.hidden)).max() > 1e-4
  np.testing.assert_array_equal(a.features, b.features)


def test_bfloat16_compute_runs():
  model = _model("logmel", dtype="bfloat16")
  out = model(*_audio([4000, 3000]))
  assert out.hidden.dtype == jnp.bfloat16
  assert np.all(np.isfinite(np.asarray(out.hidden, np.float32)))
  assert all(v[...].dtype == jnp.float32 for _, v in nnx.to_flat_state(nnx.state(model, nnx.Param)))


def test_fast_conv_kernels_match_xla():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((2, 37, 6)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((7, 6)), jnp.float32)
  np.testing.assert_allclose(layers.depthwise_conv1d(x, w), layers.depthwise_conv1d_xla(x, w),
                             atol=1e-5)
  for k, s in [(10, 5), (3, 2), (2, 2), (4, 3)]:
    w = jnp.asarray(rng.standard_normal((k, 6, 5)), jnp.float32)
    np.testing.assert_allclose(frontends.strided_conv1d(x, w, s),
                               frontends.strided_conv1d_xla(x, w, s), atol=1e-4)


def test_presets():
  base, large, tiny = (encoder_lib.PRESETS[k] for k in ("base", "large", "tiny"))
  assert (base.d_model, base.num_layers, base.layer_norm_first, base.extractor_mode) == \
      (768, 12, False, "default")
  assert (large.d_model, large.num_layers, large.layer_norm_first, large.extractor_mode) == \
      (1024, 24, True, "layer_norm")
  assert base.conv_kernel == (10, 3, 3, 3, 3, 2, 2) and base.conv_stride == (5,) + (2,) * 6
  assert tiny.frontend == "logmel"
  with pytest.raises(KeyError, match="known"):
    encoder_lib.get_config("huge")
