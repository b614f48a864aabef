"""Language identification: cross-entropy over the languages of config.data (lang_id).

Batches are the CTC pipeline's without transcripts; `lang_id` indexes inputs.languages().
Dev metrics (mlasr.evaluators.lid): accuracy overall and per language; mlasr.evaluate adds the
confusion matrix.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from mlasr.evaluators import lid as evaluator  # the dev evaluation of this task

BEST_METRIC = ("dev_lid/accuracy", "max")


def setup(config, workdir: str) -> dict:
  del workdir
  from mlasr.data import inputs  # pylint: disable=import-outside-toplevel
  langs = inputs.languages(config.data)
  return dict(num_outputs=len(langs), tokenizer=None, label_store=None,
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


def evaluate(eval_fn, eval_data, task_setup: dict) -> dict:
  """Dev accuracy overall and per language (mlasr.evaluators.lid)."""
  del task_setup
  return evaluator.dev_metrics(eval_fn, eval_data)
