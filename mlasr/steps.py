"""The update steps of mlasr.train, in a module that imports no input pipeline.

Pure functions of (state, batch, step) built from a task module's `loss_fn`, so that
benchmarks and accelerator checks can run the exact training step without grain/TFDS.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx


def _loss_and_grads(model, task, batch):
  def loss(model):
    return task.loss_fn(model, batch, train=True)
  (loss_value, metrics), grads = nnx.value_and_grad(loss, has_aux=True)(model)
  return loss_value, metrics, grads


def make_update_step(graphdef, task, schedule, seed: int):
  """(state, batch, step) -> (state, metrics): one optimizer step on `task.loss_fn`.

  Dropout randomness is a function of (seed, step) only, so a resumed run draws exactly
  the masks an uninterrupted one would. Steps with non-finite gradients are skipped by the
  optimizer (optim.make_optimizer wraps it in optax.apply_if_finite).
  """
  dropout_key = jax.random.key(seed + 1)

  def update_step(state, batch, step):
    model, optimizer = nnx.merge(graphdef, state)
    nnx.reseed(model, dropout=jax.random.fold_in(dropout_key, step))
    loss_value, metrics, grads = _loss_and_grads(model, task, batch)
    optimizer.update(model, grads)
    metrics = dict(metrics, loss=loss_value, grad_norm=optax.tree.norm(grads),
                   lr=schedule(step), nonfinite_in_a_row=_nonfinite_in_a_row(optimizer))
    return nnx.state((model, optimizer)), metrics

  return update_step


def make_accumulation_steps(graphdef, task, schedule, seed: int):
  """Gradient accumulation (fairseq's update_freq) as two jitted functions.

  grad_step(state, batch, step, micro) -> (weighted grads, metrics) for one micro-batch;
  apply_step(state, grad_sum, weight_sum, step) -> (state, metrics) takes one optimizer step.
  Each task's loss is a mean over `metrics["loss_weight"]` units (label tokens, masked
  frames), so summing grads × weight and dividing by the total weight gives exactly the
  gradient of the loss over the union of the micro-batches, whatever their shapes.
  """
  dropout_key = jax.random.key(seed + 1)

  def grad_step(state, batch, step, micro):
    model, _ = nnx.merge(graphdef, state)
    nnx.reseed(model, dropout=jax.random.fold_in(jax.random.fold_in(dropout_key, step), micro))
    loss_value, metrics, grads = _loss_and_grads(model, task, batch)
    weight = metrics["loss_weight"].astype(jnp.float32)
    return jax.tree.map(lambda g: g * weight, grads), dict(metrics, loss=loss_value)

  def apply_step(state, grad_sum, weight_sum, step):
    model, optimizer = nnx.merge(graphdef, state)
    grads = jax.tree.map(lambda g: g / jnp.maximum(weight_sum, 1.0), grad_sum)
    optimizer.update(model, grads)
    metrics = dict(grad_norm=optax.tree.norm(grads), lr=schedule(step),
                   nonfinite_in_a_row=_nonfinite_in_a_row(optimizer))
    return nnx.state((model, optimizer)), metrics

  return grad_step, apply_step


def _nonfinite_in_a_row(optimizer) -> jax.Array:
  """Optimizer steps skipped in a row for non-finite gradients (optax.apply_if_finite)."""
  return optimizer.opt_state.notfinite_count[...]
