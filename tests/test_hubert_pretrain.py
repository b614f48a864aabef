"""HuBERT masked prediction: cosine-logit CE against NumPy, masking/padding rules, overfitting."""
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mlasr import config_lib
from mlasr.models import hubert_pretrain
from mlasr.targets import align
from mlasr.tasks import hubert as task

TINY = dict(d_model=32, num_layers=1, num_heads=2, ffn_dim=64, pos_conv_kernel=8,
            pos_conv_groups=4, conv_dim=(16,) * 7, conv_module_kernel=3)
K = 12
loss_fn = nnx.jit(task.loss_fn, static_argnames="train")
encode = nnx.jit(lambda enc, audio, audio_mask, time_mask: enc(
    audio, audio_mask, time_mask=time_mask, deterministic=True))


def make_model(frontend="waveform", num_classes=K, **model_fields):
  enc = dict(preset="tiny", frontend=frontend, **TINY)
  enc.update(model_fields.pop("encoder", {}))
  config = config_lib.base_config("hubert")
  config.model.update(encoder=enc, final_dim=8, label_rate=50.0, **model_fields)
  config.model.masking.update(mask_prob=0.65, mask_length=3, min_masks=1)
  return hubert_pretrain.build(config, num_classes, nnx.Rngs(params=0, dropout=1))


def make_batch(model, seed=0, batch=2, samples=6400):
  rng = np.random.default_rng(seed)
  audio_mask = np.ones((batch, samples), np.int32)
  audio_mask[1, samples * 3 // 4:] = 0
  num_labels = int(samples / 16000 * model.label_rate)
  targets = rng.integers(0, K, size=(batch, num_labels)).astype(np.int32)
  target_mask = np.ones_like(targets)
  target_mask[1, num_labels * 3 // 4 - 2:] = 0  # row 1's labels end before its audio
  targets[target_mask == 0] = -1
  return dict(audio=(rng.normal(size=(batch, samples)) * 0.1).astype(np.float32),
              audio_mask=audio_mask, example_mask=np.ones(batch, np.int32), targets=targets,
              target_mask=target_mask)


def numpy_loss(model, batch, time_mask, nomask_weight=0.0):
  """Independent reference: encoder hidden -> Linear -> cosine vs embeddings / 0.1 -> CE."""
  out = encode(model.encoder, batch["audio"], batch["audio_mask"], time_mask)
  h = np.asarray(out.hidden, np.float64)
  proj = h @ np.asarray(model.final_proj.kernel[...]) + np.asarray(model.final_proj.bias[...])
  emb = np.asarray(model.label_embs[0][...], np.float64)
  cos = (proj / np.linalg.norm(proj, axis=-1, keepdims=True)) @ (
      emb / np.linalg.norm(emb, axis=-1, keepdims=True)).T
  logits = cos / 0.1
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  ce_m, ce_u = [], []
  ratio = model.label_rate / model.frame_rate
  for b in range(h.shape[0]):
    n_labels = int(batch["target_mask"][b].sum())
    for i in range(int(np.asarray(out.frame_mask[b]).sum())):
      # mlasr.targets.align: label floor(i * ratio); one past the end repeats the last label.
      j = int(np.floor(i * ratio))
      if j > n_labels:
        break
      ce = -logp[b, i, batch["targets"][b, min(j, n_labels - 1)]]
      (ce_m if time_mask[b, i] else ce_u).append(ce)
  total = sum(ce_m) + nomask_weight * sum(ce_u)
  return total / (len(ce_m) + (len(ce_u) if nomask_weight else 0)), len(ce_m), len(ce_u)


def fixed_mask(model, batch, seed=0):
  f = model.num_frames(batch["audio"].shape[1])
  return np.random.default_rng(seed).random((batch["audio"].shape[0], f)) < 0.5


@pytest.fixture(scope="module")
def model():
  return make_model()  # default loss: masked CE + 10 x feature penalty


def test_cosine_logit_cross_entropy_and_feature_penalty_match_numpy(model):
  batch = make_batch(model)
  batch["time_mask"] = fixed_mask(model, batch)
  loss, metrics = loss_fn(model, batch, train=False)
  want, n_m, n_u = numpy_loss(model, batch, batch["time_mask"])
  assert int(metrics["num_masked"]) == n_m and int(metrics["num_unmasked"]) == n_u
  out = encode(model.encoder, batch["audio"], batch["audio_mask"], batch["time_mask"])
  pen = np.mean(np.square(np.asarray(out.features, np.float64))[np.asarray(out.frame_mask)])
  np.testing.assert_allclose(float(metrics["features_pen"]), pen, rtol=1e-5)
  np.testing.assert_allclose(float(loss), want + 10 * pen, rtol=1e-4)
  np.testing.assert_allclose(float(metrics["loss_masked"]), want, rtol=1e-4)
  # With pred_nomask_weight 0.5 unmasked frames join the sum and the sample size.
  want_u = numpy_loss(model, batch, batch["time_mask"], nomask_weight=0.5)[0]
  out = hubert_pretrain.PretrainOutput(model.logits(out.hidden), jnp.asarray(batch["time_mask"]),
                                       out.frame_mask, out.features)
  aligned, ok = align.align_targets(batch["targets"], batch["target_mask"], out.frame_mask,
                                    model.label_rate, model.frame_rate)
  loss_u, _ = task.masked_prediction_loss(
      out, [aligned], out.frame_mask & ok, (K,),
      hubert_pretrain.LossConfig(pred_nomask_weight=0.5, feature_pen_weight=0.0))
  np.testing.assert_allclose(float(loss_u), want_u, rtol=1e-4)


def test_masked_only_loss_ignores_unmasked_frames_and_padding(model):
  batch = make_batch(model)
  tm = fixed_mask(model, batch)
  batch["time_mask"] = tm
  loss, _ = loss_fn(model, batch, train=False)
  # Targets under unmasked frames (frame rate = label rate here) do not matter ...
  label_masked = np.zeros(batch["targets"].shape, bool)
  label_masked[:, :tm.shape[1]] = tm[:, :batch["targets"].shape[1]]
  other = dict(batch, targets=np.where(label_masked | (batch["targets"] < 0), batch["targets"],
                                       (batch["targets"] + 1) % K))
  np.testing.assert_array_equal(float(loss_fn(model, other, train=False)[0]), float(loss))
  # ... those under masked frames do.
  first = np.argwhere(tm[0])[0, 0]
  changed = dict(batch, targets=batch["targets"].copy())
  changed["targets"][0, first] = (changed["targets"][0, first] + 1) % K
  assert float(loss_fn(model, changed, train=False)[0]) != float(loss)
  # A padding example (example_mask 0) contributes nothing, whatever its targets.
  padded = {k: np.concatenate([v, v[:1]]) for k, v in batch.items()}
  padded["example_mask"][-1] = 0
  padded["targets"][-1] = (padded["targets"][-1] + 5) % K
  np.testing.assert_allclose(float(loss_fn(model, padded, train=False)[0]), float(loss),
                             rtol=1e-5)


def test_mask_follows_the_dropout_stream(model):
  audio_mask = jnp.ones((2, 6400), jnp.int32)
  masks = []
  for seed in (5, 5, 6):
    nnx.reseed(model, dropout=seed)
    masks.append(np.asarray(model.compute_mask(audio_mask)))
  np.testing.assert_array_equal(masks[0], masks[1])
  assert not np.array_equal(masks[0], masks[2])
  assert 0.2 < masks[0].mean() < 0.7 and np.all(masks[0].sum(1) == masks[0].sum(1)[0])


def test_untied_projection_for_two_target_sets():
  model = make_model(num_classes=(K, 5), untie_final_proj=True)
  assert model.final_proj.kernel.shape == (32, 16)
  hidden = jnp.asarray(np.random.default_rng(0).normal(size=(2, 7, 32)), jnp.float32)
  logits = model.logits(hidden)
  assert [x.shape for x in logits] == [(2, 7, K), (2, 7, 5)]
  proj = np.asarray(model.final_proj(hidden))
  emb = np.asarray(model.label_embs[1][...])
  cos = np.einsum("bfd,kd->bfk", proj[..., 8:] / np.linalg.norm(proj[..., 8:], axis=-1,
                                                                  keepdims=True),
                  emb / np.linalg.norm(emb, axis=-1, keepdims=True))
  np.testing.assert_allclose(np.asarray(logits[1]), cos / 0.1, rtol=1e-4, atol=1e-4)
  out = hubert_pretrain.PretrainOutput(logits=logits, time_mask=jnp.ones((2, 7), bool),
                                       frame_mask=jnp.ones((2, 7), bool),
                                       features=jnp.zeros((2, 7, 3)))
  targets = [jnp.zeros((2, 7), jnp.int32), jnp.ones((2, 7), jnp.int32)]
  loss, metrics = task.masked_prediction_loss(out, targets, jnp.ones((2, 7), bool), (K, 5),
                                              model.loss_cfg)
  np.testing.assert_allclose(float(loss), float(metrics["loss_masked_0"])
                             + float(metrics["loss_masked_1"]), rtol=1e-5)


def test_predict_returns_unmasked_argmax(model):
  batch = make_batch(model)
  ids, lengths = nnx.jit(task.predict)(model, batch)
  no_mask = np.zeros((2, model.num_frames(batch["audio"].shape[1])), bool)
  out = encode(model.encoder, batch["audio"], batch["audio_mask"], no_mask)
  want = np.asarray(model.logits(out.hidden)[0]).argmax(-1)
  real = np.asarray(out.frame_mask)
  np.testing.assert_array_equal(np.asarray(ids)[real], want[real])
  assert np.all(np.asarray(ids)[~real] == -1) and int(lengths[1]) < int(lengths[0])


@pytest.mark.parametrize("frontend", ["waveform", "logmel"])
def test_overfits_a_fixed_batch(frontend):
  model = make_model(frontend, encoder=dict(dropout=0.0, attention_dropout=0.0,
                                            feat_proj_dropout=0.0))
  batch = make_batch(model)
  optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer, batch):
    nnx.reseed(model, dropout=0)  # the same mask every step: a fixed task to overfit
    (loss, metrics), grads = nnx.value_and_grad(
        lambda m: task.loss_fn(m, batch, train=True), has_aux=True)(model)
    optimizer.update(model, grads)
    return loss, metrics

  losses = []
  for _ in range(20):
    loss, metrics = step(model, optimizer, batch)
    losses.append(float(loss))
  assert np.all(np.isfinite(losses)) and int(metrics["num_masked"]) > 0
  assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
