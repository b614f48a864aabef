"""Language identification: pooling ignores padding, the loss, accuracy and confusion matrix."""
import jax.numpy as jnp
import numpy as np
from flax import nnx
from sklearn import metrics as skm

from mlasr.models import hubert, lid as lid_model
from mlasr.tasks import lid

ENC = hubert.get_config("tiny", num_layers=1, d_model=32, num_heads=2, ffn_dim=64,
                        pos_conv_kernel=8, pos_conv_groups=4, conv_module_kernel=0)


def test_scores_match_sklearn():
  rng = np.random.default_rng(0)
  langs = ["en", "ru", "hi", "te"]
  true, pred = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
  pred[:120] = true[:120]
  out = lid.scores(true, pred, langs)
  np.testing.assert_array_equal(out["confusion"], skm.confusion_matrix(true, pred, labels=range(4)))
  assert out["accuracy"] == skm.accuracy_score(true, pred)
  recall = skm.recall_score(true, pred, average=None, labels=range(4))
  assert [out["per_language"][l] for l in langs] == list(recall)
  assert "| hi |" in lid.confusion_markdown(out)


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
