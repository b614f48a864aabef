"""Language identification: cross-entropy over the languages of config.data (lang_id).

Batches are the CTC pipeline's without transcripts; `lang_id` indexes inputs.languages().
Dev metrics: accuracy overall and per language; mlasr.evaluate adds the confusion matrix.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

BEST_METRIC = ("dev_lid/accuracy", "max")


def setup(config, workdir: str) -> dict:
  del workdir
  from mlasr.data import inputs  # pylint: disable=import-outside-toplevel
  langs = inputs.languages(config.data)
  return dict(num_outputs=len(langs), tokenizer=None, labels=None,
              model_kwargs=model_kwargs(config, None))


def model_kwargs(config, tokenizer) -> dict:
  del tokenizer
  from mlasr.data import inputs  # pylint: disable=import-outside-toplevel
  return dict(langs=inputs.languages(config.data))


def loss_fn(model: nnx.Module, batch: dict, train: bool = True):
  logits = model(batch["audio"], batch["audio_mask"], deterministic=not train)
  weight = batch.get("example_mask", jnp.ones(logits.shape[:1])).astype(jnp.float32)
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch["lang_id"])
  n = jnp.maximum(weight.sum(), 1.0)
  loss = jnp.sum(nll * weight) / n
  correct = (jnp.argmax(logits, -1) == batch["lang_id"]).astype(jnp.float32)
  return loss, dict(lid_loss=loss, lid_accuracy=jnp.sum(correct * weight) / n,
                    num_examples=weight.sum(), loss_weight=weight.sum())


def predict(model: nnx.Module, batch: dict):
  """(predicted lang_id [B], log-probabilities [B, L])."""
  logits = model(batch["audio"], batch["audio_mask"], deterministic=True)
  return jnp.argmax(logits, -1), jax.nn.log_softmax(logits, -1)


def eval_step(model: nnx.Module, batch: dict):
  return predict(model, batch)


def classify(predict_fn, eval_data) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str, str]]]:
  """(true lang ids, predicted lang ids, (corpus, lang, speaker) of each) over every real
  utterance of `eval_data`."""
  true, pred, speakers = [], [], []
  for batch in eval_data.batches():
    ids, _ = jax.device_get(predict_fn(batch))
    real = np.flatnonzero(batch["example_mask"])
    true.extend(batch["lang_id"][real])
    pred.extend(ids[real])
    speakers.extend(zip(batch["corpus"][real], batch["lang"][real], batch["speaker"][real]))
  return np.asarray(true, np.int64), np.asarray(pred, np.int64), speakers


def scores(true: np.ndarray, pred: np.ndarray, langs) -> dict:
  """Accuracy, per-language recall and the confusion matrix (rows: true, columns: predicted)."""
  confusion = np.zeros([len(langs), len(langs)], np.int64)
  np.add.at(confusion, (true, pred), 1)
  per_lang = {l: float(confusion[i, i] / max(confusion[i].sum(), 1)) for i, l in enumerate(langs)}
  return dict(accuracy=float(np.mean(true == pred)) if len(true) else float("nan"),
              per_language=per_lang, confusion=confusion.tolist(), langs=list(langs),
              num_utterances=int(len(true)))


def evaluate(eval_fn, eval_data, setup_out: dict) -> dict:
  del setup_out
  true, pred, _ = classify(eval_fn, eval_data)
  langs = list(eval_data.langs)
  result = scores(true, pred, langs)
  out = {"dev_lid/accuracy": result["accuracy"]}
  out.update({f"dev_lid/{l}": v for l, v in result["per_language"].items()})
  return out


def confusion_markdown(result: dict) -> str:
  langs = result["langs"]
  lines = [f"LID accuracy {100 * result['accuracy']:.1f}% over {result['num_utterances']} "
           "utterances (rows: true language, columns: predicted)", "",
           "| true \\ predicted | " + " | ".join(langs) + " | recall % |",
           "|---" * (len(langs) + 2) + "|"]
  for i, lang in enumerate(langs):
    lines.append(f"| {lang} | " + " | ".join(str(v) for v in result["confusion"][i]) +
                 f" | {100 * result['per_language'][lang]:.1f} |")
  if by_group := result.get("by_group"):
    lines += ["", "By speaker group: " + ", ".join(
        f"{g} {100 * r['accuracy']:.1f}% ({r['num_utterances']} utterances)"
        for g, r in sorted(by_group.items()))]
  return "\n".join(lines) + "\n"
