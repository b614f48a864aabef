"""Language identification: pooling ignores padding, the loss, accuracy and confusion matrix."""
import jax.numpy as jnp
import numpy as np
from flax import nnx
from sklearn import metrics as skm

from mlasr.evaluators import lid as lid_eval
from mlasr.models import encoder as encoder_lib, lid as lid_model
from mlasr.tasks import lid

ENC = encoder_lib.get_config("tiny", num_layers=1, d_model=32, num_heads=2, ffn_dim=64,
                        pos_conv_kernel=8, pos_conv_groups=4, conv_module_kernel=0)


def test_scores_match_sklearn():
  rng = np.random.default_rng(0)
  langs = ["en", "ru", "hi", "te"]
  true, pred = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
  pred[:120] = true[:120]
  out = lid_eval.scores(true, pred, langs)
  np.testing.assert_array_equal(out["confusion"], skm.confusion_matrix(true, pred, labels=range(4)))
  assert out["accuracy"] == skm.accuracy_score(true, pred)
  recall = skm.recall_score(true, pred, average=None, labels=range(4))
  assert [out["per_language"][l] for l in langs] == list(recall)
  assert "| hi |" in lid_eval.confusion_markdown(out)


def test_pooling_ignores_padding_and_loss_is_cross_entropy():
  model = lid_model.LIDModel(ENC, ("en", "ru", "hi"), rngs=nnx.Rngs(0))
  rng = np.random.default_rng(1)
  audio = rng.normal(0, 0.3, [2, 16000]).astype(np.float32)
  mask = np.ones_like(audio, np.int32)
  mask[1, 9000:] = 0
  audio *= mask
  logits = np.asarray(model(audio, mask, deterministic=True))
  alone = np.asarray(model(audio[1:, :9000], mask[1:, :9000], deterministic=True))
  np.testing.assert_allclose(logits[1], alone[0], atol=1e-5)
  batch = dict(audio=audio, audio_mask=mask, lang_id=np.array([2, 0]),
               example_mask=np.array([1, 0]))
  loss, metrics = lid.loss_fn(model, batch, train=False)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  np.testing.assert_allclose(float(loss), -logp[0, 2], rtol=1e-5)  # padding row excluded
  assert float(metrics["num_examples"]) == 1.0
  assert float(metrics["lid_accuracy"]) == float(np.argmax(logits[0]) == 2)
  ids, _ = lid.predict(model, batch)
  np.testing.assert_array_equal(np.asarray(ids), logits.argmax(-1))
  assert jnp.asarray(ids).dtype.kind == "i"


def test_statistics_pooling_matches_numpy_over_real_frames():
  rng = np.random.default_rng(2)
  hidden = rng.normal(size=[2, 7, 3]).astype(np.float32)
  mask = np.array([[1] * 7, [1] * 4 + [0] * 3], bool)
  pooled = np.asarray(lid_model.pool(hidden, mask, "stats"))
  for b, n in enumerate((7, 4)):
    np.testing.assert_allclose(pooled[b, :3], hidden[b, :n].mean(0), atol=1e-6)
    np.testing.assert_allclose(pooled[b, 3:], np.sqrt(hidden[b, :n].var(0) + 1e-5), atol=1e-6)
  np.testing.assert_allclose(np.asarray(lid_model.pool(hidden, mask, "mean")), pooled[:, :3])


def test_layer_weights_select_layers_and_frozen_encoder_gets_no_gradient():
  enc = encoder_lib.get_config("tiny", num_layers=2, d_model=32, num_heads=2, ffn_dim=64,
                          pos_conv_kernel=8, pos_conv_groups=4, conv_module_kernel=0)
  rng = np.random.default_rng(3)
  audio = rng.normal(0, 0.3, [2, 8000]).astype(np.float32)
  mask = np.ones_like(audio, np.int32)
  weighted = lid_model.LIDModel(enc, ("en", "ru"), layer_weights=True, rngs=nnx.Rngs(0))
  single = lid_model.LIDModel(enc, ("en", "ru"), layer=1, rngs=nnx.Rngs(0))
  # Softmax weights of ~(0, 1, 0) over layer_hiddens make the sum layer 1, normalised.
  weighted.layer_logits[...] = jnp.array([-50.0, 50.0, -50.0])
  out = weighted.encoder(audio, mask, deterministic=True, output_hidden_states=True)
  from mlasr.models import layers  # pylint: disable=import-outside-toplevel
  expect_hidden = layers.layer_norm(out.layer_hiddens[1], 1.0, 0.0, 1e-5, jnp.float32)
  expect = weighted.head(weighted.norm(lid_model.pool(expect_hidden, out.frame_mask, "stats")))
  np.testing.assert_allclose(np.asarray(weighted(audio, mask, deterministic=True)),
                             np.asarray(expect), atol=1e-5)
  assert single.layer_logits is None

  weighted.layer_logits[...] = jnp.zeros(3)  # unsaturated, so the weights get a gradient
  batch = dict(audio=audio, audio_mask=mask, lang_id=np.array([0, 1]))
  grads = nnx.grad(lambda m: lid.loss_fn(m, batch, train=False)[0])(weighted)
  flat = dict(nnx.to_flat_state(grads))
  encoder_norm = sum(float(jnp.abs(v[...]).sum()) for k, v in flat.items() if k[0] == "encoder")
  assert encoder_norm == 0.0
  assert float(jnp.abs(flat[("layer_logits",)][...]).sum()) > 0
  assert float(jnp.abs(flat[("head", "kernel")][...]).sum()) > 0
