r"""The mlasr training loop: one linear script for every task (CTC, HuBERT/BEST-RQ, LID).

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
import signal
import threading
import time

from absl import app, flags, logging
import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_flags
import numpy as np
from flax import nnx

from mlasr import checkpoint as ckpt_lib
from mlasr import config_lib, logs, optim
from mlasr import sharding as sharding_lib
from mlasr.data import inputs
from mlasr.models import encoder as encoder_lib, surgery
from mlasr.steps import make_accumulation_steps, make_update_step
from mlasr.metrics_writer import MetricsWriter

config_flags.DEFINE_config_file("config", None, "Experiment config (experiments/*.py[:args]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and results go.")
flags.DEFINE_bool("distributed", False, "Multi-host: call jax.distributed.initialize() first "
                  "(also MLASR_DISTRIBUTED=1; see mlasr/sharding.py and docs/scaling.md).")


def average_metrics(metrics: list[dict]) -> dict:
  """Means of per-step scalar metrics; counts (num_*) are summed, counters keep the last."""
  out = {}
  for key in metrics[0]:
    values = np.asarray([m[key] for m in metrics], np.float64)
    if values.ndim != 1:
      continue
    if key.startswith("num_"):
      out[key] = float(values.sum())
    elif key == "nonfinite_in_a_row":
      out[key] = float(values[-1])
    else:
      out[key] = float(values.mean())
  return out


class _PreemptionFlag:
  """True once SIGTERM arrived; the loop then checkpoints and exits instead of dying."""

  def __init__(self):
    self.received = False
    if threading.current_thread() is threading.main_thread():
      signal.signal(signal.SIGTERM, self._handler)

  def _handler(self, signum, frame):
    del frame
    logging.warning("Received signal %d: saving a checkpoint and stopping.", signum)
    self.received = True

  def __bool__(self):
    return self.received


def run(config: ml_collections.ConfigDict, workdir: str, stop_at_step: int | None = None) -> dict:
  """Trains per `config` in `workdir`; returns the last dev metrics.

  `stop_at_step` ends the run early after checkpointing, as a preemption would (tests use it
  to check that a resumed run ends bit-identical to an uninterrupted one).
  """
  # ---------------------------------------------------------------------------------------
  # Set up: output folder, the config used, compilation cache.
  # ---------------------------------------------------------------------------------------
  # Clear errors before any work: a dataset on a bucket (read it through a gcsfuse mount),
  # a workdir that cannot be written. The workdir itself may be local or gs:// (mlasr/fileio).
  inputs.check_data_paths(config.data)
  inputs.check_task_sources(config)  # CTC / LID on unlabeled audio: refused before preparing
  config_lib.ensure_writable_dir(workdir, "--workdir")
  # Before any key exists: keys made under one implementation do not mix with another's.
  ckpt_lib.set_prng_impl(config.prng_impl)
  logs.quiet_libraries()
  is_main = jax.process_index() == 0
  if is_main:
    logging.info("Config saved to %s", config_lib.save_config(config, workdir))
  config_lib.enable_compilation_cache(config.compilation_cache)
  writer = MetricsWriter(workdir, enabled=is_main)
  task = importlib.import_module(f"mlasr.tasks.{config.task}")
  model_lib = importlib.import_module(f"mlasr.models.{config.model.name}")

  # ---------------------------------------------------------------------------------------
  # Input pipeline: corpora -> TFDS array_record -> what the task needs (a tokenizer for
  # CTC, a store of cluster labels for HuBERT; mlasr/tasks/__init__.py) -> grain batches.
  # ---------------------------------------------------------------------------------------
  inputs.prepare_sources(config.data)
  task_setup = task.setup(config, workdir)
  train_iter, lang_weights, skipped = inputs.train_iterator(
      config, task_setup["tokenizer"], task_setup["label_store"], workdir=workdir)
  writer.write_json("sampling_weights.json", lang_weights)
  logging.info("Training examples skipped by the pipeline:\n%s", skipped.summary())
  logging.info("Language sampling weights (alpha=%s): %s", config.data.alpha, lang_weights)

  # ---------------------------------------------------------------------------------------
  # Model and optimizer. Dropout keys come from (seed, step) in the update step.
  # ---------------------------------------------------------------------------------------
  # config.optim.layer_decay places each encoder parameter by its depth in this encoder.
  tx, schedule = optim.make_optimizer(config.optim, config.total_steps,
                                      encoder=encoder_lib.config_from_fields(config.model.encoder))

  def build():
    model = model_lib.build(config, task_setup["num_outputs"],
                            nnx.Rngs(params=config.seed, dropout=config.seed + 1),
                            **task_setup["model_kwargs"])
    return model, nnx.Optimizer(model, tx, wrt=nnx.Param)

  # --- sharding (mlasr/sharding.py): config.mesh + config.sharding_preset or
  # config.logical_axis_rules. Parameters and optimizer state are born sharded.
  mesh = sharding_lib.make_mesh(config.mesh)
  rules = sharding_lib.get_rules(config)
  graphdef, state, state_shardings = sharding_lib.create_sharded_state(build, rules, mesh)
  batch_sharding = sharding_lib.batch_sharding(mesh, rules)
  logging.info("Mesh %s, %s per device of parameters + optimizer state", dict(mesh.shape),
               f"{sharding_lib.bytes_per_device(state) / 2**20:.1f} MiB")
  # --- end sharding
  model, optimizer = nnx.merge(graphdef, state)
  num_params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  logging.info("Model %s: %.2fM parameters", config.model.name, num_params / 1e6)
  writer.write_json("model_info.json", dict(num_params=int(num_params)))

  # ---------------------------------------------------------------------------------------
  # Update step: pure function of (state, batch, step), jitted once per batch shape.
  # ---------------------------------------------------------------------------------------
  accum_steps = config.accum_steps
  if accum_steps == 1:
    # sharding: in/out shardings fixed to the state's layout, state donated.
    update_step = sharding_lib.shard_update_step(
        make_update_step(graphdef, task, schedule, config.seed), state_shardings,
        batch_sharding)
  else:
    grad_step, apply_step = map(jax.jit, make_accumulation_steps(graphdef, task, schedule,
                                                                 config.seed))
    add = jax.jit(lambda a, b: jax.tree.map(jnp.add, a, b), donate_argnums=(0,))

    def update_step(state, batch, step):
      # `batch` is a list of accum_steps micro-batches (shapes may differ by bucket).
      grad_sum, weight_sum, micro_metrics = None, 0.0, []
      for micro, micro_batch in enumerate(batch):
        grads, metrics = grad_step(state, micro_batch, step, micro)
        grad_sum = grads if grad_sum is None else add(grad_sum, grads)
        weight_sum += metrics["loss_weight"]
        micro_metrics.append(metrics)
      state, metrics = apply_step(state, grad_sum, weight_sum, step)
      return state, dict(average_metrics(micro_metrics), **metrics)

  @jax.jit
  def eval_step(state, batch, step):
    model, _ = nnx.merge(graphdef, state)
    nnx.reseed(model, dropout=jax.random.fold_in(jax.random.key(config.seed + 2), step))
    return task.eval_step(model, batch)

  # ---------------------------------------------------------------------------------------
  # Restore: the latest checkpoint in the workdir (resume), else `config.init_from`, else
  # the fresh initialisation above.
  # ---------------------------------------------------------------------------------------
  best_metric, best_mode = task.BEST_METRIC
  checkpointer = ckpt_lib.Checkpointer(workdir, config.keep_checkpoints, best_metric,
                                       best_mode)
  start_step = 0
  if (latest := checkpointer.latest_step()) is not None:
    model, optimizer = nnx.merge(graphdef, state)
    saved, data_state, meta = checkpointer.restore(
        latest, ckpt_lib.abstract_like(ckpt_lib.train_state(model, optimizer)))
    ckpt_lib.load_train_state(model, optimizer, saved)
    train_iter.set_state(data_state)
    start_step = int(meta["step"])
    graphdef, state = nnx.split((model, optimizer))
    logging.info("Resumed from %s at step %d", checkpointer.directory, start_step)
  elif config.init_from:
    # Surgery: a pretrained encoder into this model (heads dropped / freshly initialised),
    # or (init_scope="all") every parameter the checkpoint has, e.g. to add a language.
    model, optimizer = nnx.merge(graphdef, state)
    params = ckpt_lib.read_params(config.init_from)
    report = (surgery.load_matching(model, params) if config.init_scope == "all"
              else surgery.load_pretrained_encoder(model, params))
    writer.write_json("init_from.json", dict(init_from=config.init_from, **vars(report)))
    graphdef, state = nnx.split((model, optimizer))
    state = jax.device_put(state, state_shardings)

  # Pretraining on unlabeled sources alone has no dev split: it trains without dev metrics.
  dev_data = (inputs.eval_data(config, config.data.eval_split, task_setup["label_store"])
              if inputs.labeled_datasets(config.data) else None)
  if dev_data is None:
    logging.warning("Every source is unlabeled audio (no %r split): no dev evaluation and no "
                    "'best' checkpoint; add a transcribed source for dev metrics.",
                    config.data.eval_split)

  def evaluate_dev(step):
    if dev_data is None:
      return {}
    summary = task.evaluate(
        lambda b: eval_step(state, sharding_lib.to_device(b, batch_sharding), 0), dev_data,
        task_setup)
    writer.write_scalars(step, summary)
    logging.info("step %d dev: %s", step, ", ".join(f"{k} {v:.4f}" for k, v in summary.items()))
    model, _ = nnx.merge(graphdef, state)
    checkpointer.save_best(step, nnx.to_pure_dict(nnx.state(model, nnx.Param)), summary)
    return summary

  def save(step):
    writer.flush()  # metrics up to `step` are in the workdir before its checkpoint is
    model, optimizer = nnx.merge(graphdef, state)
    checkpointer.save(step, ckpt_lib.train_state(model, optimizer), train_iter.get_state(),
                      dict(step=step, config=config.to_json_best_effort()))

  # ---------------------------------------------------------------------------------------
  # Train loop. Metrics stay on device until a log step, so the loop never waits on them.
  # SIGTERM (TPU/GPU preemption) finishes the current step, saves and exits cleanly.
  # ---------------------------------------------------------------------------------------
  preempted = _PreemptionFlag()
  dev_summary, pending, audio_seconds, tic = {}, [], 0.0, time.time()
  progress = inputs.progress_bar(start_step, config.total_steps, enabled=is_main)
  for step in range(start_step, config.total_steps):
    host_batches = [next(train_iter) for _ in range(accum_steps)]
    batch = [sharding_lib.to_device(b, batch_sharding) for b in host_batches]  # sharding
    state, metrics = update_step(state, batch[0] if accum_steps == 1 else batch, step)
    pending.append(metrics)
    audio_seconds += sum(float(np.sum(b["audio_mask"])) for b in host_batches) / inputs.SAMPLE_RATE
    progress.update(1)
    done = step + 1 == config.total_steps
    if (step + 1) % config.log_every == 0 or done or preempted:
      scalars = average_metrics(jax.device_get(pending))
      elapsed = time.time() - tic
      scalars.update(audio_seconds_per_second=audio_seconds / elapsed,
                     steps_per_second=len(pending) / elapsed)
      writer.write_scalars(step + 1, scalars)
      progress.set_postfix(loss=f"{scalars['loss']:.3f}",
                           x_rt=f"{scalars['audio_seconds_per_second']:.0f}")
      if scalars["nonfinite_in_a_row"] >= config.max_nonfinite_steps:
        raise FloatingPointError(
            f"{int(scalars['nonfinite_in_a_row'])} steps in a row had NaN/inf gradients (up to "
            f"step {step + 1}); they were skipped, but training is not recovering. Lower "
            "config.optim.lr, check the data report, or raise config.max_nonfinite_steps.")
      pending, audio_seconds, tic = [], 0.0, time.time()
    if (config.eval_every and (step + 1) % config.eval_every == 0) or done:
      dev_summary = evaluate_dev(step + 1)
    if (step + 1) % config.checkpoint_every == 0 or done or step + 1 == stop_at_step or preempted:
      save(step + 1)
    if step + 1 == stop_at_step or preempted:
      logging.info("Stopping at step %d (%s).", step + 1,
                   "SIGTERM" if preempted else "stop_at_step")
      break
  progress.close()
  checkpointer.wait()
  checkpointer.close()
  writer.close()
  return dev_summary


def main(argv):
  del argv
  sharding_lib.maybe_initialize_distributed(flags.FLAGS.distributed)  # sharding
  run(flags.FLAGS.config, flags.FLAGS.workdir)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
