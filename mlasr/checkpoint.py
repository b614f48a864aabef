"""Orbax checkpoints of the whole training state.

A checkpoint holds the model parameters, the optimizer state (which includes the step), the
data-iterator state and a small JSON of metadata. Dropout randomness is derived from
(seed, step) inside the train step, so nothing else is needed for an exact resume.

Saves are asynchronous (training continues while the arrays are written) and atomic: Orbax
writes into `<step>.orbax-checkpoint-tmp-*` and renames when complete, so a process killed
mid-save leaves the previous checkpoint as the latest one (tests/test_checkpoint.py kills one).
`<workdir>/checkpoints` keeps the last `max_to_keep`; `<workdir>/best` keeps the parameters
with the best dev metric.
"""
from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """The last `max_to_keep` checkpoints of a run, plus the best one by a dev metric."""

  def __init__(self, workdir: str, max_to_keep: int = 3, best_metric: str = "dev_cer/macro",
               best_mode: str = "min"):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))
    self.best_metric = best_metric
    self.best = ocp.CheckpointManager(
        os.path.abspath(os.path.join(workdir, "best")),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=1, create=True, best_fn=lambda m: m[best_metric], best_mode=best_mode))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: dict, data_state: dict, meta: dict):
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=ocp.args.JsonSave(data_state),
        meta=ocp.args.JsonSave(meta)))

  def save_best(self, step: int, params: dict, metrics: dict):
    """Keeps `params` if `metrics[best_metric]` beats the best so far (only one is kept)."""
    self.best.save(step, args=ocp.args.Composite(params=ocp.args.StandardSave(params)),
                   metrics={k: float(v) for k, v in metrics.items()})

  def restore(self, step: int, abstract_state: dict):
    """Restores into the shapes/dtypes/shardings of `abstract_state` (ShapeDtypeStructs)."""
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data=ocp.args.JsonRestore(),
        meta=ocp.args.JsonRestore()))
    return restored["state"], restored["data"], restored["meta"]

  def wait(self):
    self.manager.wait_until_finished()
    self.best.wait_until_finished()

  def close(self):
    self.manager.close()
    self.best.close()


def latest_step(workdir: str) -> int | None:
  """The newest finished checkpoint step of a run, without creating any folders."""
  directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
  if not os.path.isdir(directory):
    return None
  with ocp.CheckpointManager(directory) as manager:
    return manager.latest_step()


def abstract_like(tree):
  """ShapeDtypeStructs (with shardings) for restoring into arrays laid out like `tree`."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
      tree)
