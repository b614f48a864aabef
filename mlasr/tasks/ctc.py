"""CTC fine-tuning: the loss, the feasibility mask and batched greedy decoding.

Batches follow mlasr.data.pipeline: audio [B, T], audio_mask [B, T], labels [B, L],
label_mask [B, L], example_mask [B]. Label id 0 is the CTC blank.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from mlasr.evaluators import asr as evaluator  # the dev evaluation of this task

BLANK_ID = 0


def ctc_feasible(labels: jax.Array, label_mask: jax.Array, frame_lengths: jax.Array) -> jax.Array:
  """True where a CTC alignment exists: frames >= labels + adjacent repeats (each needs a blank).

  optax.ctc_loss returns ~1e5 for an infeasible example instead of inf; averaging that in
  would swamp the batch, so such examples are masked out and counted instead.
  """
  label_lengths = label_mask.sum(-1)
  repeats = ((labels[:, 1:] == labels[:, :-1]) & (label_mask[:, 1:] > 0)).sum(-1)
  return (label_lengths + repeats <= frame_lengths) & (label_lengths > 0)


def ctc_loss(logits, frame_mask, labels, label_mask, example_mask=None):
  """Token-normalised CTC loss over feasible examples.

  Args:
    logits: [B, F, V] float.
    frame_mask: [B, F] 1 for real frames.
    labels, label_mask: [B, L] int.
    example_mask: [B], 0 for padding rows.
  Returns:
    (loss, aux) where loss = sum of per-example negative log-likelihoods / number of label
    tokens of the examples used, and aux holds per-example losses and the feasibility mask.
  """
  frame_mask = frame_mask.astype(jnp.int32)
  label_mask = label_mask.astype(jnp.int32)
  per_example = optax.ctc_loss(logits.astype(jnp.float32), 1 - frame_mask, labels,
                               1 - label_mask, blank_id=BLANK_ID)
  used = ctc_feasible(labels, label_mask, frame_mask.sum(-1))
  if example_mask is not None:
    used &= example_mask > 0
  per_example = jnp.where(used, per_example, 0.0)
  num_tokens = jnp.sum(jnp.where(used, label_mask.sum(-1), 0))
  loss = per_example.sum() / jnp.maximum(num_tokens, 1)
  real = jnp.ones_like(used) if example_mask is None else example_mask > 0
  aux = dict(per_example=per_example, used=used, num_tokens=num_tokens,
             num_infeasible=jnp.sum(real & ~used))
  return loss, aux


def greedy_decode(logits: jax.Array, frame_mask: jax.Array, max_len: int | None = None):
  """Best-path CTC decoding, fully in jnp so it jits with the model.

  Returns (tokens [B, max_len] zero padded, lengths [B]): argmax per frame, merge repeats,
  drop blanks and padded frames.
  """
  best = jnp.argmax(logits, -1)  # [B, F]
  prev = jnp.pad(best, ((0, 0), (1, 0)), constant_values=-1)[:, :-1]
  keep = (best != BLANK_ID) & (best != prev) & (frame_mask > 0)
  max_len = max_len or best.shape[1]
  position = jnp.where(keep, jnp.cumsum(keep, axis=-1) - 1, max_len)  # dropped when == max_len
  rows = jnp.broadcast_to(jnp.arange(best.shape[0])[:, None], best.shape)
  tokens = jnp.zeros((best.shape[0], max_len), best.dtype).at[rows, position].set(
      best, mode="drop")
  return tokens, keep.sum(-1)


# --------------------------------------------------------------------------------------------
# Hooks used by mlasr.train (every task module has them).
# --------------------------------------------------------------------------------------------
BEST_METRIC = ("dev_cer/macro", "min")  # keeps the checkpoint with the lowest dev macro CER


def setup(config, workdir: str) -> dict:
  """What the model and pipeline need: the tokenizer (trained on first use) and its size."""
  from mlasr.data import inputs  # pylint: disable=import-outside-toplevel
  tokenizer = inputs.get_tokenizer(config, workdir)
  return dict(num_outputs=tokenizer.vocab_size, tokenizer=tokenizer, label_store=None,
              model_kwargs=model_kwargs(config, tokenizer))


def model_kwargs(config, tokenizer) -> dict:
  """Extra arguments of models.ctc.build: lang_id order and per-language output masks."""
  from mlasr.data import inputs  # pylint: disable=import-outside-toplevel
  langs = inputs.languages(config.data)
  mask = tokenizer.output_mask(langs) if config.model.output_mask else None
  return dict(langs=langs, output_mask=mask)


def evaluate(eval_fn, eval_data, task_setup: dict) -> dict:
  """Dev metrics (mlasr.evaluators.asr): `eval_fn` is the jitted eval_step (log-posteriors);
  best-path decoding over each utterance's language, per-language and macro CER/WER."""
  return evaluator.dev_metrics(eval_fn, eval_data, task_setup["tokenizer"])


def loss_fn(model: nnx.Module, batch: dict, train: bool = True):
  """The task loss used by mlasr.train: returns (loss, metrics)."""
  logits, frame_mask = model(batch["audio"], batch["audio_mask"], deterministic=not train,
                             lang_id=batch.get("lang_id"))
  loss, aux = ctc_loss(logits, frame_mask, batch["labels"], batch["label_mask"],
                       batch.get("example_mask"))
  # loss_weight: the loss is a mean over label tokens; gradient accumulation weights by it.
  metrics = dict(ctc_loss=loss, num_infeasible=aux["num_infeasible"],
                 num_tokens=aux["num_tokens"], num_frames=frame_mask.sum(),
                 loss_weight=aux["num_tokens"])
  return loss, metrics


def eval_step(model: nnx.Module, batch: dict):
  return log_probs(model, batch)


def log_probs(model: nnx.Module, batch: dict):
  """Per-frame log-posteriors for host-side beam search: (log_probs [B, F, V], frame_mask)."""
  logits, frame_mask = model(batch["audio"], batch["audio_mask"], deterministic=True,
                             lang_id=batch.get("lang_id"))
  return jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1), frame_mask


def predict(model: nnx.Module, batch: dict):
  """Greedy hypotheses for a batch: (tokens [B, F], lengths [B])."""
  logits, frame_mask = model(batch["audio"], batch["audio_mask"], deterministic=True,
                             lang_id=batch.get("lang_id"))
  return greedy_decode(logits, frame_mask)
