"""Orbax checkpoints: the one place that writes and reads them.

    ckpt = Checkpointer(workdir)                               # mlasr.train
    ckpt.save(step, train_state(model, optimizer), data_state, meta)
    load_train_state(model, optimizer, ckpt.restore(step, abstract_like(...))[0])
    params = read_params(workdir, which="best", subtree="encoder")   # everything else

A checkpoint holds the model parameters, the optimizer state (which includes the step), the
data-iterator state and a small JSON of metadata. Dropout randomness is derived from
(seed, step) inside the train step, so nothing else is needed for an exact resume.

Saves are asynchronous (training continues while the arrays are written) and atomic: Orbax
writes into `<step>.orbax-checkpoint-tmp-*` and renames when complete, so a process killed
mid-save leaves the previous checkpoint as the latest one (tests/test_checkpoint.py kills one).
`<workdir>/checkpoints` keeps the last `max_to_keep`; `<workdir>/best` keeps the parameters
with the best dev metric (the task's BEST_METRIC), written at every dev evaluation.

Reading parameters (`read_params`: evaluation, export, surgery, feature extraction) needs
neither the model nor the optimizer that wrote them, creates no folder, and takes `latest`
(`<workdir>/checkpoints`, the newest or a given step) or `best` (`<workdir>/best`), the whole
parameter tree or one subtree of it (e.g. "encoder").

PRNG implementation (config.prng_impl, jax_default_prng_impl): a threefry key is 2 uint32
words and an rbg/unsafe_rbg key 4, and the same (seed, step) gives different dropout masks
under each. No key is stored here (keys are re-derived from (seed, step)), so arrays always
restore; but resuming a run under another implementation would silently continue it with a
different random stream, so every checkpoint records its implementation in the metadata and
`restore` refuses a mismatch with a message saying how to proceed. Checkpoints written before
this field existed are threefry (JAX's default, the only one mlasr used).
"""
from __future__ import annotations

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from mlasr import fileio

CHECKPOINTS = ("latest", "best")  # what read_params and `evaluate --checkpoint` accept

# config.prng_impl name -> jax_default_prng_impl value.
PRNG_IMPLS = {"threefry": "threefry2x32", "rbg": "rbg", "unsafe_rbg": "unsafe_rbg"}


def set_prng_impl(name: str) -> None:
  """Sets JAX's default PRNG ("threefry", "rbg" or "unsafe_rbg"); call before making keys.

  "unsafe_rbg" (MaxText's choice on accelerators) draws dropout bits with the hardware RNG
  instead of threefry's ~20 integer rounds per word; its streams are not guaranteed to be
  independent across splits, which is harmless for dropout.
  """
  if name not in PRNG_IMPLS:
    raise ValueError(f"prng_impl must be one of {sorted(PRNG_IMPLS)}, got {name!r}")
  jax.config.update("jax_default_prng_impl", PRNG_IMPLS[name])


def current_prng_impl() -> str:
  """The config name of the PRNG implementation JAX uses now."""
  value = jax.config.jax_default_prng_impl
  return next((k for k, v in PRNG_IMPLS.items() if v == value), value)


class PrngImplMismatchError(ValueError):
  """A checkpoint was written under another PRNG implementation than the running one."""


def check_prng_impl(meta: dict, where: str) -> None:
  """Raises PrngImplMismatchError if `meta` (a checkpoint's) names another PRNG impl."""
  saved = meta.get("prng_impl", "threefry")  # older checkpoints: JAX's default
  running = current_prng_impl()
  if saved != running:
    raise PrngImplMismatchError(
        f"{where} was written with prng_impl={saved!r} but this run uses {running!r}: "
        f"resuming would continue it with a different dropout/masking random stream "
        f"({'2' if saved == 'threefry' else '4'}-word keys then, "
        f"{'2' if running == 'threefry' else '4'}-word now). Resume with "
        f"--config.prng_impl={saved}, or start a new --workdir with "
        f"--config.init_from=<this run> to switch (parameters carry over).")


class Checkpointer:
  """The last `max_to_keep` checkpoints of a run, plus the best one by a dev metric."""

  def __init__(self, workdir: str, max_to_keep: int = 3, best_metric: str = "dev_cer/macro",
               best_mode: str = "min"):
    # Orbax takes local and gs:// directories alike (tensorstore writes the arrays).
    self.directory = fileio.absolute(fileio.join(workdir, "checkpoints"))
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))
    self.best_metric = best_metric
    self.best = ocp.CheckpointManager(
        fileio.absolute(fileio.join(workdir, "best")),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=1, create=True, best_fn=lambda m: m[best_metric], best_mode=best_mode))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: dict, data_state: dict, meta: dict):
    meta = dict(meta, prng_impl=current_prng_impl())
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=ocp.args.JsonSave(data_state),
        meta=ocp.args.JsonSave(meta)))

  def save_best(self, step: int, params: dict, metrics: dict):
    """Keeps `params` if `metrics[best_metric]` beats the best so far (only one is kept)."""
    self.best.save(step, args=ocp.args.Composite(params=ocp.args.StandardSave(params)),
                   metrics={k: float(v) for k, v in metrics.items()})

  def restore(self, step: int, abstract_state: dict):
    """Restores into the shapes/dtypes/shardings of `abstract_state` (ShapeDtypeStructs).

    Raises PrngImplMismatchError, before reading any array, if the checkpoint was written
    under another PRNG implementation than the one JAX uses now.
    """
    meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    check_prng_impl(meta["meta"], f"checkpoint {step} in {self.directory}")
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data=ocp.args.JsonRestore(),
        meta=ocp.args.JsonRestore()))
    meta = dict(restored["meta"])
    meta.pop("prng_impl", None)  # the Checkpointer's own field: callers get back what they saved
    return restored["state"], restored["data"], meta

  def wait(self):
    self.manager.wait_until_finished()
    self.best.wait_until_finished()

  def close(self):
    self.manager.close()
    self.best.close()


def train_state(model, optimizer) -> dict:
  """What a checkpoint holds of the model/optimizer: plain nested dicts of arrays."""
  return dict(params=nnx.to_pure_dict(nnx.state(model, nnx.Param)),
              opt=nnx.to_pure_dict(nnx.state(optimizer)))


def assign_params(model: nnx.Module, params) -> None:
  """Sets `model`'s parameters (in place) from a nested dict shaped like its own."""
  state = nnx.state(model, nnx.Param)
  nnx.replace_by_pure_dict(state, params)
  nnx.update(model, state)


def load_train_state(model, optimizer, state: dict) -> None:
  """Inverse of `train_state`: parameters and optimizer state back into model/optimizer."""
  assign_params(model, state["params"])
  opt = nnx.state(optimizer)
  nnx.replace_by_pure_dict(opt, state["opt"])
  nnx.update(optimizer, opt)


def checkpoint_dir(workdir: str, which: str = "latest") -> str:
  """<workdir>/checkpoints (which="latest") or <workdir>/best (which="best")."""
  if which not in CHECKPOINTS:
    raise ValueError(f"checkpoint must be one of {CHECKPOINTS}, got {which!r}")
  return fileio.join(fileio.absolute(workdir, expanduser=True),
                     "checkpoints" if which == "latest" else "best")


def latest_step(workdir: str, which: str = "latest") -> int | None:
  """The newest finished step of a run's checkpoints (or of its best/, which holds one),
  without creating any folders."""
  directory = checkpoint_dir(workdir, which)
  if not fileio.isdir(directory):
    return None
  with ocp.CheckpointManager(directory) as manager:
    return manager.latest_step()


def all_steps(workdir: str, which: str = "latest") -> list[int]:
  """Every finished step a run kept (config.keep_checkpoints of them), oldest first."""
  directory = checkpoint_dir(workdir, which)
  if not fileio.isdir(directory):
    return []
  with ocp.CheckpointManager(directory) as manager:
    return sorted(manager.all_steps())


def read_params(workdir: str, step: int | None = None, *, which: str = "latest",
                subtree: str | None = None) -> dict:
  """The parameters of a training run's checkpoint, as nested dicts of numpy arrays.

  which: "latest" reads `<workdir>/checkpoints/<step>/state` (written by `Checkpointer.save`;
    the newest step unless `step` is given) without the optimizer state; "best" reads
    `<workdir>/best/<step>/params` (`Checkpointer.save_best`: the parameters of the best dev
    metric so far).
  subtree: a top-level parameter name (e.g. "encoder"): only that subtree is read and returned.
  Raises FileNotFoundError (creating nothing) when the run has no such checkpoint.
  """
  directory = checkpoint_dir(workdir, which)
  if not fileio.isdir(directory):
    if which == "best":
      raise FileNotFoundError(f"no best checkpoint in {directory} (written at dev evaluations); "
                              "read the latest one instead")
    raise FileNotFoundError(f"no checkpoints in {directory}; is {workdir!r} a training workdir?")
  item = "state" if which == "latest" else "params"
  handlers = (dict(state=ocp.PyTreeCheckpointHandler(), data=ocp.JsonCheckpointHandler(),
                   meta=ocp.JsonCheckpointHandler()) if which == "latest"
              else dict(params=ocp.PyTreeCheckpointHandler()))
  with ocp.CheckpointManager(directory, item_handlers=handlers) as manager:
    step = manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no finished checkpoint step in {directory}")
    meta = manager.item_metadata(step)[item]
    tree = getattr(meta, "tree", meta)
    params_meta = tree["params"] if which == "latest" else tree
    if subtree is not None:
      if subtree not in params_meta:
        raise ValueError(f"checkpoint {step} in {directory} has no {subtree!r} parameters; "
                         f"top-level: {sorted(params_meta)}")
      params_meta = {subtree: params_meta[subtree]}
    target = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), params_meta)
    if which == "latest":
      target = dict(params=target)
    restored = manager.restore(step, args=ocp.args.Composite(**{item: ocp.args.PyTreeRestore(
        item=target,
        restore_args=jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target),
        partial_restore=True)}))[item]
  logging.info("Read the parameters of step %d from %s", step, directory)
  params = restored["params"] if which == "latest" else restored
  return params[subtree] if subtree is not None else params


def abstract_like(tree):
  """ShapeDtypeStructs (with shardings) for restoring into arrays laid out like `tree`."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
      tree)
