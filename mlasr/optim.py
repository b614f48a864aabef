"""Optimizers and learning-rate schedules, built from `config.optim`.

Schedules follow the fairseq recipes the HuBERT/wav2vec 2.0 papers used:
- `tri_stage`: linear warmup, hold, exponential decay (CTC fine-tuning; 10/40/50 %).
- `warmup_cosine`: linear warmup then cosine decay (common for small from-scratch runs).
- `warmup_polynomial`: linear warmup then linear decay to zero (HuBERT pretraining).

`freeze` / `apply_freeze` wrap any optimizer so parameter groups get exactly zero updates,
always or for the first N updates (fine-tuning a pretrained encoder).

`lr_multipliers` / `scale_by_lr_multipliers` give parameter groups their own learning rate
(the new head at 10x the encoder; layer-wise decay), as a per-parameter factor on AdamW's
update: exactly AdamW at lr x factor for that parameter, weight decay included.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax


def tri_stage(peak_lr: float, total_steps: int, phase_ratio=(0.1, 0.4, 0.5),
              init_lr_scale: float = 0.01, final_lr_scale: float = 0.05) -> optax.Schedule:
  if abs(sum(phase_ratio) - 1.0) > 1e-6:
    raise ValueError(f"tri_stage phase_ratio must sum to 1, got {phase_ratio}")
  warmup = int(total_steps * phase_ratio[0])
  hold = int(total_steps * phase_ratio[1])
  decay = max(total_steps - warmup - hold, 1)
  decay_rate = -math.log(final_lr_scale) / decay
  return optax.join_schedules([
      optax.linear_schedule(peak_lr * init_lr_scale, peak_lr, max(warmup, 1)),
      optax.constant_schedule(peak_lr),
      optax.exponential_decay(peak_lr, transition_steps=1, decay_rate=math.exp(-decay_rate),
                              end_value=peak_lr * final_lr_scale),
  ], boundaries=[max(warmup, 1), max(warmup, 1) + hold])


def make_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  name = cfg.schedule
  if name == "tri_stage":
    return tri_stage(cfg.lr, total_steps, tuple(cfg.phase_ratio))
  if name == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(
        0.0, cfg.lr, max(cfg.warmup_steps, 1), max(total_steps, cfg.warmup_steps + 1),
        end_value=cfg.lr * cfg.final_lr_scale)
  if name == "warmup_polynomial":
    return optax.join_schedules([
        optax.linear_schedule(0.0, cfg.lr, max(cfg.warmup_steps, 1)),
        optax.linear_schedule(cfg.lr, 0.0, max(total_steps - cfg.warmup_steps, 1)),
    ], boundaries=[max(cfg.warmup_steps, 1)])
  if name == "constant":
    return optax.constant_schedule(cfg.lr)
  raise ValueError(f"Unknown config.optim.schedule={name!r}; use tri_stage, warmup_cosine, "
                   "warmup_polynomial or constant.")


def make_optimizer(cfg: ml_collections.ConfigDict, total_steps: int, encoder=None):
  """AdamW with global-norm clipping. Returns (optax transform, schedule).

  `cfg.lr_multipliers` / `cfg.layer_decay` scale the learning rate per parameter (see
  `lr_multipliers`); layer-wise decay needs `encoder`, the EncoderConfig of the model's
  `encoder/` parameters. With neither set the transform is the plain clip + AdamW chain.

  The whole chain sits in optax.apply_if_finite: a step whose gradients hold NaN/inf leaves
  parameters and moments untouched and is counted (`notfinite_count`, consecutive); the train
  loop stops with a clear message after `config.max_nonfinite_steps` in a row. The inner limit
  is effectively infinite so optax itself never applies a non-finite update.
  """
  schedule = make_schedule(cfg, total_steps)
  parts = [
      optax.clip_by_global_norm(cfg.clip_norm) if cfg.clip_norm else optax.identity(),
      optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay),
  ]
  factor_of = lr_multipliers(cfg.lr_multipliers, cfg.layer_decay, encoder)
  if factor_of is not None:
    # After AdamW, whose update is -lr * (adam + weight_decay * param): a pure post-scale.
    parts.append(scale_by_lr_multipliers(factor_of, [p for p, _ in cfg.lr_multipliers]))
  tx = optax.chain(*parts)
  # Fine-tuning freezes (config.optim.freeze): zero updates, no weight decay, for matching params.
  tx = apply_freeze(tx, cfg.freeze)
  return optax.apply_if_finite(tx, max_consecutive_errors=2**30), schedule


# -------------------------------------------------------------------------------------------
# Freezing for fine-tuning (fairseq: feature_grad_mult 0 and freeze_finetune_updates).
# -------------------------------------------------------------------------------------------
class FreezeState(NamedTuple):
  count: jax.Array           # updates applied so far (int32)
  inner: optax.OptState      # the wrapped optimizer's state, none for always-frozen params


def param_path(path) -> str:
  """'encoder/layers/0/attention/q_kernel' from a jax key path (drops nnx's `.value`)."""
  parts = []
  for k in path:
    if isinstance(k, jax.tree_util.DictKey):
      parts.append(str(k.key))
    elif isinstance(k, jax.tree_util.SequenceKey):
      parts.append(str(k.idx))
    elif isinstance(k, jax.tree_util.GetAttrKey) and k.name != "value":
      parts.append(k.name)
  return "/".join(parts)


def labels_by_regex(rules: Sequence[tuple[str, object]], default: str = "trainable"):
  """params -> tree of labels: the first regex (full match on `param_path`) names the label."""
  compiled = [(re.compile(pattern), pattern) for pattern, _ in rules]

  def label_fn(params):
    def label(path, _):
      name = param_path(path)
      return next((p for r, p in compiled if r.fullmatch(name)), default)
    return jax.tree_util.tree_map_with_path(label, params)

  return label_fn


def freeze(tx: optax.GradientTransformation, param_labels,
           frozen_until: dict[str, int]) -> optax.GradientTransformation:
  """Wraps `tx` so that some parameters get exactly zero updates.

  Args:
    tx: the optimizer (applied once to all not-always-frozen params: one global-norm clip,
      one schedule, counted from the first update).
    param_labels: a tree of labels like the params, or a function params -> labels.
    frozen_until: label -> number of updates during which that label is frozen; a negative
      number (or None) freezes it for good. Labels not listed are always trained.
  Always-frozen params get no optimizer state and no updates (so no weight decay either).
  Params frozen for the first N updates get zero gradients into `tx` (they add nothing to
  the clip norm, their Adam moments stay zero) and zero updates for updates 0..N-1; update N
  is the first that moves them. Like fairseq they then start from zero moments, but the
  schedule and Adam's bias-correction count are global.
  """
  def is_always(label):
    n = frozen_until.get(label, 0)
    return n is None or n < 0

  def labels_of(tree):
    return param_labels(tree) if callable(param_labels) else param_labels

  def trainable_mask(params):
    return jax.tree.map(lambda l: not is_always(l), labels_of(params))

  inner = optax.masked(tx, trainable_mask)

  def zero_frozen(updates, labels, count):
    def zero(u, label):
      n = frozen_until.get(label, 0)
      if n is None or n < 0:
        return jnp.zeros_like(u)
      return jnp.where(count < n, jnp.zeros_like(u), u) if n > 0 else u
    return jax.tree.map(zero, updates, labels)

  def init_fn(params):
    return FreezeState(count=jnp.zeros([], jnp.int32), inner=inner.init(params))

  def update_fn(updates, state, params=None):
    labels = labels_of(updates)
    updates = zero_frozen(updates, labels, state.count)
    updates, inner_state = inner.update(updates, state.inner, params)
    updates = zero_frozen(updates, labels, state.count)
    return updates, FreezeState(count=state.count + 1, inner=inner_state)

  return optax.GradientTransformation(init_fn, update_fn)


def apply_freeze(tx: optax.GradientTransformation,
                 rules: Sequence[tuple[str, int]]) -> optax.GradientTransformation:
  """`freeze` from config rules [(param-path regex, frozen updates), ...], first match wins.

  HuBERT fine-tuning: [("encoder/frontend/.*", -1), ("encoder/.*", 10000)] keeps the conv
  extractor frozen throughout and the rest of the encoder for the first 10k updates.
  An empty `rules` returns `tx` unchanged.
  """
  rules = [tuple(r) for r in rules or ()]
  if not rules:
    return tx
  for pattern, n in rules:
    if not isinstance(n, int) and n is not None:
      raise ValueError(f"freeze rule {pattern!r}: frozen updates must be an int, got {n!r}")
  return freeze(tx, labels_by_regex(rules), {p: n for p, n in rules})


# -------------------------------------------------------------------------------------------
# Per-parameter learning rates: a head at k x the encoder (wav2vec 2.0 / HuBERT fine-tuning
# recipes), layer-wise decay (ELECTRA, BEiT, data2vec).
# -------------------------------------------------------------------------------------------
def lr_multipliers(rules: Sequence[tuple[str, float]] = (), layer_decay: float = 1.0,
                   encoder=None, prefix: str = "encoder") -> Callable[[str], float] | None:
  """param path -> factor on the learning rate; None when every factor is 1.

  rules: [(regex over `param_path`, multiplier), ...], first full match wins, unmatched 1.
  layer_decay: d < 1 multiplies each `<prefix>/...` parameter by d^(L + 1 - depth), with
    depth from mlasr.models.encoder.layer_depth (needs `encoder`, its EncoderConfig): block
    i of L (0-based) gets d^(L - i), the front end, projection and positional conv
    d^(L + 1), the final LayerNorm of a pre-LN encoder 1, as BEiT's layer ids. Parameters
    outside `prefix` (the head, adapters, layer weights) get 1. Both factors multiply.
  """
  rules = [(str(p), float(m)) for p, m in rules or ()]
  for pattern, m in rules:
    if not m >= 0 or math.isinf(m):
      raise ValueError(f"lr multiplier for {pattern!r} must be finite and >= 0, got {m}")
  layer_decay = float(layer_decay)
  if not 0 < layer_decay <= 1:
    raise ValueError(f"config.optim.layer_decay={layer_decay}: use a value in (0, 1] "
                     "(1 = no layer-wise decay)")
  if not rules and layer_decay == 1.0:
    return None
  if layer_decay != 1.0 and encoder is None:
    raise ValueError("config.optim.layer_decay needs the encoder's config "
                     "(optim.make_optimizer(..., encoder=EncoderConfig))")
  compiled = [(re.compile(p), m) for p, m in rules]
  # Imported here: optim is model-agnostic unless layer-wise decay asks for the encoder's.
  from mlasr.models import encoder as encoder_lib  # pylint: disable=import-outside-toplevel

  def factor_of(name: str) -> float:
    factor = next((m for r, m in compiled if r.fullmatch(name)), 1.0)
    if layer_decay != 1.0 and name.startswith(prefix + "/"):
      depth = encoder_lib.layer_depth(name[len(prefix) + 1:], encoder)
      factor *= layer_decay ** (encoder.num_layers + 1 - depth)
    return factor

  return factor_of


def scale_by_lr_multipliers(factor_of: Callable[[str], float],
                            patterns: Sequence[str] = ()) -> optax.GradientTransformation:
  """Multiplies each parameter's update by `factor_of(param_path)` (stateless).

  After optax.adamw(lr) this is exactly adamw(lr x factor) for that parameter: the learning
  rate is a pure post-scale of Adam's direction plus the decoupled weight decay (optax.adamw
  multiplies both by lr), so the decay is scaled with it and Adam's moments are untouched.
  Inside `freeze` it sees only trainable parameters. `patterns` (the rules' regexes) must
  each match some parameter: init raises a ValueError naming one that matches none.
  """
  compiled = [(re.compile(p), p) for p in patterns]

  def names_of(tree):
    return [param_path(path) for path, _ in jax.tree_util.tree_leaves_with_path(tree)]

  def init_fn(params):
    names = names_of(params)
    for regex, pattern in compiled:
      if not any(regex.fullmatch(n) for n in names):
        tops = sorted({n.split("/")[0] for n in names})
        raise ValueError(f"lr multiplier pattern {pattern!r} matches no trainable parameter "
                         f"(top-level names: {tops}); fix config.optim.lr_multipliers")
    for n in names:  # every factor (and layer depth) is resolved before the first step
      factor_of(n)
    return optax.EmptyState()

  def update_fn(updates, state, params=None):
    del params

    def scale(path, u):
      factor = factor_of(param_path(path))
      return u if factor == 1.0 else u * jnp.asarray(factor, u.dtype)

    return jax.tree_util.tree_map_with_path(scale, updates), state

  return optax.GradientTransformation(init_fn, update_fn)
