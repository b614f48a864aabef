"""Device mesh, logical-axis rules and sharded state/step: how mlasr spreads over devices.

Sharding is config data (as in MaxText / big_vision), never code in the model:

  config.mesh = [("data", -1), ("fsdp", 1), ("tensor", 1)]   # -1 = all remaining devices
  config.sharding_preset = "dp"                               # "dp" | "fsdp" | "fsdp_tp"
  config.logical_axis_rules = [("embed", "fsdp"), ...]       # optional: replaces the preset

Every parameter carries logical axis names ("embed", "mlp", "heads", "kv", "conv_in",
"conv_out", "vocab", "norm"; see mlasr/models/layers.py). A rule list is an ordered list of
(logical_name, mesh_axes) pairs. Rules are applied in order; a rule is skipped when its mesh
axes are already used by another dimension of the same array, or when the dimension is not
divisible by the mesh axes' total size, so a repeated logical name acts as a fallback and an
awkward size (a vocabulary of 37 over 2 tensor shards) is replicated instead of crashing.
Unnamed dimensions and names without a rule are replicated.

The one activation name is "activation_batch": the leading axis of every batch array
(`batch_sharding`); XLA propagates the layout of everything in between.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from absl import logging
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")
DEFAULT_MESH = (("data", -1), ("fsdp", 1), ("tensor", 1))
BATCH_AXES = ("data", "fsdp")

MeshAxes = str | tuple[str, ...] | None
Rules = Sequence[tuple[str, MeshAxes]]

_ACTIVATIONS = (("activation_batch", BATCH_AXES),)

# Fallback order matters: the first rule whose mesh axes are free and divide the dimension
# wins, so large matrices get their "embed" dimension sharded and vectors fall back to
# whatever dimension they have.
PRESETS: dict[str, tuple[tuple[str, MeshAxes], ...]] = {
    # Pure data parallelism: every parameter replicated, the batch split over all devices.
    "dp": _ACTIVATIONS,
    # ZeRO-3 style: every parameter (and its optimizer state) split over "fsdp", gathered
    # per layer for the forward/backward pass; the batch is split over data x fsdp.
    "fsdp": _ACTIVATIONS + (
        ("embed", "fsdp"),
        ("mlp", "fsdp"),
        ("conv_out", "fsdp"),
        ("conv_in", "fsdp"),
        ("vocab", "fsdp"),
        ("heads", "fsdp"),
        ("kv", "fsdp"),
    ),
    # FSDP plus Megatron-style tensor parallelism: feed-forward hidden units, attention
    # heads, conv channels and the vocabulary split over "tensor"; "embed" over "fsdp".
    "fsdp_tp": _ACTIVATIONS + (
        ("mlp", "tensor"),
        ("heads", "tensor"),
        ("vocab", "tensor"),
        ("conv_out", "tensor"),
        ("embed", "fsdp"),
        ("conv_in", "fsdp"),
        ("mlp", "fsdp"),
        ("heads", "fsdp"),
        ("kv", "fsdp"),
        ("conv_out", "fsdp"),
        ("vocab", "fsdp"),
    ),
}


# ------------------------------------------------------------------------------------------
# Config -> mesh and rules.
# ------------------------------------------------------------------------------------------
def mesh_shape(mesh_config: Sequence[tuple[str, int]], num_devices: int) -> dict[str, int]:
  """Resolves the one -1 entry of `mesh_config` against `num_devices`; checks the product."""
  names = [str(name) for name, _ in mesh_config]
  sizes = [int(size) for _, size in mesh_config]
  if len(set(names)) != len(names):
    raise ValueError(f"config.mesh={list(mesh_config)} repeats an axis name.")
  if sizes.count(-1) > 1:
    raise ValueError(f"config.mesh={list(mesh_config)} has more than one -1 entry; at most "
                     "one axis can take 'all remaining devices'.")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if known <= 0 or num_devices % known:
      raise ValueError(f"config.mesh={list(mesh_config)}: {num_devices} devices are not "
                       f"divisible by the fixed axes' product {known}.")
    sizes[sizes.index(-1)] = num_devices // known
  if math.prod(sizes) != num_devices:
    raise ValueError(f"config.mesh={list(mesh_config)} needs {math.prod(sizes)} devices but "
                     f"{num_devices} are present; use -1 for one axis to absorb the rest.")
  return dict(zip(names, sizes))


def make_mesh(mesh_config: Sequence[tuple[str, int]] | None = None,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A Mesh (Auto axis types) over `devices` (default: all devices of all processes).

  jax.make_mesh orders the devices for the physical topology on TPU; elsewhere devices come
  in process order, so with several hosts the leading mesh axis should be the one that crosses
  hosts (put "data" first: its only collective is the gradient all-reduce).
  """
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(mesh_config or DEFAULT_MESH, len(devices))
  return jax.make_mesh(tuple(shape.values()), tuple(shape), devices=devices,
                       axis_types=(AxisType.Auto,) * len(shape))


def get_rules(config) -> tuple[tuple[str, MeshAxes], ...]:
  """`config.logical_axis_rules` if set, else the preset `config.sharding_preset` (default dp)."""
  if config.logical_axis_rules:
    return tuple((str(name), _as_axes(axes)) for name, axes in config.logical_axis_rules)
  preset = config.sharding_preset
  if preset not in PRESETS:
    raise ValueError(f"config.sharding_preset={preset!r} is unknown; use one of "
                     f"{sorted(PRESETS)} or set config.logical_axis_rules.")
  return PRESETS[preset]


def _as_axes(axes) -> MeshAxes:
  if axes is None or isinstance(axes, str):
    return axes
  axes = tuple(axes)
  return axes[0] if len(axes) == 1 else (axes or None)


# ------------------------------------------------------------------------------------------
# Logical names -> PartitionSpec / NamedSharding.
# ------------------------------------------------------------------------------------------
def logical_to_spec(names: Sequence[str | None] | None, shape: Sequence[int], rules: Rules,
                    mesh: Mesh) -> P:
  """PartitionSpec for an array of `shape` whose dimensions carry logical `names`.

  Rules are tried in order (MaxText semantics); a rule is taken for a still-unassigned
  dimension only if its mesh axes exist, are unused by the other dimensions and their size
  divides the dimension. Repeated names (a ("embed", "embed") kernel) are allowed: the second
  dimension just finds the axis taken.
  """
  if not names:
    return P()
  if len(names) != len(shape):
    raise ValueError(f"logical names {tuple(names)} do not match shape {tuple(shape)}")
  assigned: list[MeshAxes] = [None] * len(names)
  done = [name is None for name in names]
  used: set[str] = set()
  for rule_name, rule_axes in rules:
    axes = _as_axes(rule_axes)
    if axes is None:
      # An explicit "replicate" rule ends the search for that name.
      for i, name in enumerate(names):
        if name == rule_name:
          done[i] = True
      continue
    axes_tuple = (axes,) if isinstance(axes, str) else axes
    for i, name in enumerate(names):
      if done[i] or name != rule_name:
        continue
      if any(a not in mesh.shape or a in used for a in axes_tuple):
        continue
      if shape[i] % math.prod(mesh.shape[a] for a in axes_tuple):
        continue
      assigned[i], done[i] = axes, True
      used.update(axes_tuple)
  return P(*assigned)


def _logical_names(variable: nnx.Variable) -> tuple[str | None, ...] | None:
  names = variable.get_metadata().get("out_sharding")
  return tuple(names) if names else None


def param_shardings(abstract_state, rules: Rules, mesh: Mesh):
  """NamedShardings for a (possibly abstract) nnx state, from each Variable's logical names.

  Works for model parameters and for optimizer state (nnx.Optimizer copies the logical names
  onto its moments). Variables without names (RNG keys, step counters) are replicated. The
  result has the structure of `abstract_state`, so it can be a jit in/out sharding.
  """
  def one(variable):
    if not isinstance(variable, nnx.Variable):  # a plain array leaf
      return NamedSharding(mesh, P())
    if not jax.tree.leaves(variable):
      # No array inside: optax.masked's MaskedNode, the optimizer state of a frozen parameter.
      return variable
    shape = getattr(variable, "shape", ())
    spec = logical_to_spec(_logical_names(variable), shape, rules, mesh)
    return variable.replace(NamedSharding(mesh, spec))

  return jax.tree.map(one, abstract_state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def batch_sharding(mesh: Mesh, rules: Rules = PRESETS["dp"]) -> NamedSharding:
  """Sharding of every batch array: leading (batch) axis split per "activation_batch"."""
  spec = logical_to_spec(("activation_batch",), (math.prod(mesh.shape.values()),), rules, mesh)
  return NamedSharding(mesh, spec)


def to_device(batch: dict, sharding: NamedSharding,
              keys: Sequence[str] | None = None) -> dict:
  """Host-local numpy batch -> global jax arrays laid out by `sharding`.

  Each process passes only its own rows (its shard of the global batch, as the grain pipeline
  delivers with shard_index=process_index); numeric arrays only, unless `keys` names them.
  """
  out = {}
  for key, value in batch.items():
    if keys is not None and key not in keys:
      continue
    value = np.asarray(value)
    if keys is None and value.dtype.kind not in "biuf":
      continue
    out[key] = jax.make_array_from_process_local_data(sharding, value)
  return out


# ------------------------------------------------------------------------------------------
# Sharded state and update step.
# ------------------------------------------------------------------------------------------
def abstract_state(build_fn: Callable[[], Any], rules: Rules, mesh: Mesh):
  """(graphdef, state of ShapeDtypeStructs carrying shardings, shardings): no allocation."""
  graphdef, abstract = nnx.split(nnx.eval_shape(build_fn))
  shardings = param_shardings(abstract, rules, mesh)
  structs = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                         abstract, shardings)
  return graphdef, structs, shardings


def create_sharded_state(build_fn: Callable[[], Any], rules: Rules, mesh: Mesh):
  """Runs `build_fn` (-> a graph node, e.g. (model, optimizer)) with every array born sharded.

  Returns (graphdef, state, state_shardings) with state = nnx.split(build_fn())[1]. The
  initialisation is one jit with out_shardings, so no device ever holds a full copy of a
  parameter that the rules split. `build_fn` must create its own nnx.Rngs (traced inside).
  """
  graphdef, _, shardings = abstract_state(build_fn, rules, mesh)

  def init():
    return nnx.split(build_fn())[1]

  state = jax.jit(init, out_shardings=shardings)()
  return graphdef, state, shardings


def shard_update_step(update_step: Callable, state_shardings, batch_sharding: NamedSharding):
  """jax.jit of (state, batch, step) -> (state, metrics) with explicit shardings.

  The state keeps its layout across steps (in == out shardings) and is donated, so XLA
  updates parameters and optimizer moments in place; metrics come back replicated.
  Activations carry no constraints: XLA propagates them from the state and batch layouts.
  """
  replicated = NamedSharding(batch_sharding.mesh, P())
  return jax.jit(update_step, in_shardings=(state_shardings, batch_sharding, replicated),
                 out_shardings=(state_shardings, replicated), donate_argnums=(0,))


def bytes_per_device(tree) -> int:
  """Bytes of `tree` (arrays or ShapeDtypeStructs with shardings) held by one device."""
  total = 0
  for leaf in jax.tree.leaves(tree):
    sharding = getattr(leaf, "sharding", None)
    shape = sharding.shard_shape(leaf.shape) if sharding is not None else leaf.shape
    total += math.prod(shape) * np.dtype(leaf.dtype).itemsize if _is_numeric(leaf) else 0
  return int(total)


def _is_numeric(leaf) -> bool:
  try:
    return np.dtype(leaf.dtype).kind in "biuf"
  except TypeError:  # typed PRNG keys
    return False


# ------------------------------------------------------------------------------------------
# Multi-process start-up.
# ------------------------------------------------------------------------------------------
def maybe_initialize_distributed(requested: bool = False) -> bool:
  """Calls jax.distributed.initialize() when asked: `requested` or MLASR_DISTRIBUTED=1.

  Never automatic: a one-host run (laptop, single TPU VM, single GPU node) needs nothing, and
  guessing from the environment would hang an interactive job inside a SLURM allocation.
  Explicit settings come from MLASR_COORDINATOR (host:port), MLASR_NUM_PROCESSES and
  MLASR_PROCESS_ID; without them JAX auto-detects Cloud TPU pods, SLURM (SLURM_PROCID,
  SLURM_NTASKS, first host of SLURM_STEP_NODELIST) and Open MPI. Returns whether it ran.
  """
  if not (requested or os.environ.get("MLASR_DISTRIBUTED", "0") not in ("", "0", "false")):
    return False
  kwargs = {}
  if os.environ.get("MLASR_COORDINATOR"):
    kwargs = dict(coordinator_address=os.environ["MLASR_COORDINATOR"],
                  num_processes=int(os.environ["MLASR_NUM_PROCESSES"]),
                  process_id=int(os.environ["MLASR_PROCESS_ID"]))
  jax.distributed.initialize(**kwargs)
  logging.info("jax.distributed: process %d of %d, %d local / %d global devices",
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())
  return True
