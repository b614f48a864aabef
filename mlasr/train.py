r"""The mlasr training loop: one linear script for every task (CTC now; pretraining later).

  python -m mlasr.train --config experiments/demo_ctc.py:root=$HOME/mlasr_data/demo \
      --workdir $HOME/mlasr_runs/demo_ctc [--config.total_steps=200 ...]

Reads top to bottom: set-up, input pipeline, model and optimizer, update step, restore,
train loop. The task (`config.task`, a module in mlasr/tasks/) supplies the loss; the model
(`config.model.name`, a module in mlasr/models/) supplies `build(config, vocab_size, rngs)`.
Restart the same command after a crash or preemption and it resumes from the last checkpoint,
data iterator included.
"""
from __future__ import annotations

import importlib
import logging as std_logging
import os
import time

from absl import app, flags, logging
import jax
import ml_collections
import optax
from ml_collections import config_flags
import numpy as np
from flax import nnx

from mlasr import checkpoint as ckpt_lib
from mlasr import config_lib, evaluate, optim
from mlasr.data import inputs
from mlasr.metrics_writer import MetricsWriter

config_flags.DEFINE_config_file("config", None, "Experiment config (experiments/*.py[:args]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and results go.")


class _QuietLibraries(std_logging.Filter):
  """Drops the INFO chatter of orbax (dozens of lines per checkpoint) from the absl log."""

  def filter(self, record):
    return record.levelno >= std_logging.WARNING or "/orbax/" not in record.pathname


def train_state(model, optimizer) -> dict:
  """What a checkpoint holds of the model/optimizer: plain nested dicts of arrays."""
  return dict(params=nnx.to_pure_dict(nnx.state(model, nnx.Param)),
              opt=nnx.to_pure_dict(nnx.state(optimizer)))


def load_train_state(model, optimizer, state: dict):
  params = nnx.state(model, nnx.Param)
  nnx.replace_by_pure_dict(params, state["params"])
  nnx.update(model, params)
  opt = nnx.state(optimizer)
  nnx.replace_by_pure_dict(opt, state["opt"])
  nnx.update(optimizer, opt)


def make_update_step(graphdef, task, schedule, seed: int):
  """(state, batch, step) -> (state, metrics): one optimizer step on `task.loss_fn`.

  Dropout randomness is a function of (seed, step) only, so a resumed run draws exactly
  the masks an uninterrupted one would.
  """
  dropout_key = jax.random.key(seed + 1)

  def update_step(state, batch, step):
    model, optimizer = nnx.merge(graphdef, state)
    nnx.reseed(model, dropout=jax.random.fold_in(dropout_key, step))

    def loss(model):
      return task.loss_fn(model, batch, train=True)

    (loss_value, metrics), grads = nnx.value_and_grad(loss, has_aux=True)(model)
    optimizer.update(model, grads)
    metrics = dict(metrics, loss=loss_value, grad_norm=optax.global_norm(grads),
                   lr=schedule(step))
    return nnx.state((model, optimizer)), metrics

  return update_step


def run(config: ml_collections.ConfigDict, workdir: str, stop_at_step: int | None = None) -> dict:
  """Trains per `config` in `workdir`; returns the last dev metrics.

  `stop_at_step` ends the run early after checkpointing, as a preemption would (tests use it
  to check that a resumed run ends bit-identical to an uninterrupted one).
  """
  # ---------------------------------------------------------------------------------------
  # Set up: output folder, the config used, compilation cache.
  # ---------------------------------------------------------------------------------------
  os.makedirs(workdir, exist_ok=True)
  logging.get_absl_handler().addFilter(_QuietLibraries())
  is_main = jax.process_index() == 0
  if is_main:
    logging.info("Config saved to %s", config_lib.save_config(config, workdir))
  if config.get("compilation_cache"):
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(config.compilation_cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  writer = MetricsWriter(workdir, enabled=is_main)
  task = importlib.import_module(f"mlasr.tasks.{config.task}")
  model_lib = importlib.import_module(f"mlasr.models.{config.model.name}")

  # ---------------------------------------------------------------------------------------
  # Input pipeline: corpora -> TFDS array_record -> tokenizer -> grain batches.
  # ---------------------------------------------------------------------------------------
  inputs.prepare_sources(config.data)
  tokenizer = inputs.get_tokenizer(config, workdir)
  train_iter, lang_weights, skipped = inputs.train_iterator(config, tokenizer)
  writer.write_json("sampling_weights.json", lang_weights)
  logging.info("Training examples skipped by the pipeline:\n%s", skipped.summary())
  logging.info("Language sampling weights (alpha=%s): %s", config.data.alpha, lang_weights)

  # ---------------------------------------------------------------------------------------
  # Model and optimizer. Dropout keys come from (seed, step) in the update step.
  # ---------------------------------------------------------------------------------------
  rngs = nnx.Rngs(params=config.seed, dropout=config.seed + 1)
  model = model_lib.build(config, tokenizer.vocab_size, rngs)
  tx, schedule = optim.make_optimizer(config.optim, config.total_steps)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  num_params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  logging.info("Model %s: %.2fM parameters", config.model.name, num_params / 1e6)
  writer.write_json("model_info.json", dict(num_params=int(num_params)))

  # ---------------------------------------------------------------------------------------
  # Update step: pure function of (state, batch, step), jitted once per batch shape.
  # ---------------------------------------------------------------------------------------
  graphdef, state = nnx.split((model, optimizer))
  update_step = jax.jit(make_update_step(graphdef, task, schedule, config.seed),
                        donate_argnums=(0,))

  @jax.jit
  def predict_step(state, batch):
    model, _ = nnx.merge(graphdef, state)
    return task.predict(model, batch)

  # ---------------------------------------------------------------------------------------
  # Restore: the latest checkpoint in the workdir (resume), else `config.init_from`, else
  # the fresh initialisation above.
  # ---------------------------------------------------------------------------------------
  checkpointer = ckpt_lib.Checkpointer(workdir, config.get("keep_checkpoints", 3))
  start_step = 0
  if (latest := checkpointer.latest_step()) is not None:
    model, optimizer = nnx.merge(graphdef, state)
    saved, data_state, meta = checkpointer.restore(
        latest, ckpt_lib.abstract_like(train_state(model, optimizer)))
    load_train_state(model, optimizer, saved)
    train_iter.set_state(data_state)
    start_step = int(meta["step"])
    graphdef, state = nnx.split((model, optimizer))
    logging.info("Resumed from %s at step %d", checkpointer.directory, start_step)

  dev_data = inputs.eval_data(config, config.data.eval_split)

  def evaluate_dev(step):
    hyps = evaluate.transcribe(lambda b: predict_step(state, b), dev_data, tokenizer)
    scores = evaluate.score(hyps, n_boot=0)
    summary = {f"dev_cer/{k}": v["cer"]["rate"] for k, v in scores["languages"].items()}
    summary["dev_cer/macro"] = scores["macro"]["cer"]["rate"]
    summary["dev_wer/macro"] = scores["macro"]["wer"]["rate"]
    writer.write_scalars(step, summary)
    logging.info("step %d dev macro CER %.4f WER %.4f", step, summary["dev_cer/macro"],
                 summary["dev_wer/macro"])
    return summary

  def save(step):
    model, optimizer = nnx.merge(graphdef, state)
    checkpointer.save(step, train_state(model, optimizer), train_iter.get_state(),
                      dict(step=step, config=config.to_json_best_effort()))

  # ---------------------------------------------------------------------------------------
  # Train loop.
  # ---------------------------------------------------------------------------------------
  dev_summary = {}
  tic, audio_seconds, counters = time.time(), 0.0, dict(num_infeasible=0)
  progress = inputs.progress_bar(start_step, config.total_steps, enabled=is_main)
  for step in range(start_step, config.total_steps):
    batch = inputs.to_device(next(train_iter))
    state, metrics = update_step(state, batch, step)
    progress.update(1)
    audio_seconds += float(np.sum(batch["audio_mask"])) / inputs.SAMPLE_RATE
    if (step + 1) % config.log_every == 0 or step + 1 == config.total_steps:
      metrics = jax.device_get(metrics)
      counters["num_infeasible"] += int(metrics.get("num_infeasible", 0))
      elapsed = time.time() - tic
      scalars = {k: float(v) for k, v in metrics.items() if np.ndim(v) == 0}
      scalars.update(audio_seconds_per_second=audio_seconds / elapsed,
                     steps_per_second=config.log_every / elapsed)
      writer.write_scalars(step + 1, scalars)
      progress.set_postfix(loss=f"{scalars['loss']:.3f}", x_rt=f"{scalars['audio_seconds_per_second']:.0f}")
      if not np.isfinite(scalars["loss"]):
        raise FloatingPointError(f"Non-finite loss {scalars['loss']} at step {step + 1}.")
      tic, audio_seconds = time.time(), 0.0
    if config.eval_every and (step + 1) % config.eval_every == 0 or step + 1 == config.total_steps:
      dev_summary = evaluate_dev(step + 1)
    if (step + 1) % config.checkpoint_every == 0 or step + 1 in (config.total_steps, stop_at_step):
      save(step + 1)
    if step + 1 == stop_at_step:
      break
  progress.close()
  checkpointer.wait()
  checkpointer.close()
  writer.close()
  return dev_summary


def main(argv):
  del argv
  run(flags.FLAGS.config, flags.FLAGS.workdir)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
