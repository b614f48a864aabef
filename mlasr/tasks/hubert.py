"""HuBERT masked prediction: target alignment, the loss and collapse diagnostics.

Batches: audio [B, T], audio_mask [B, T], example_mask [B], targets [B, L] int32 (or
[B, S, L] for S target sets) at `model.label_rate` Hz with -1 on padding, target_mask [B, L].
Targets are put on encoder frames by mlasr.targets.align.align_targets (fairseq's
floor(i * label_rate / frame_rate)); frames without a label are neither masked nor scored.

loss = (w_m · Σ CE(masked) + w_u · Σ CE(unmasked)) / (#masked·[w_m>0] + #unmasked·[w_u>0])
       + feature_pen_weight · mean(conv features²)
as fairseq's hubert criterion (sum over target sets, one sample size). The model is a
mlasr.models.hubert_pretrain.HubertPretrainModel; weights come from `model.loss_cfg`.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
from flax import nnx

from mlasr import fileio
from mlasr.evaluators import masked_prediction as evaluator  # the dev evaluation of this task
from mlasr.targets import align
from mlasr.targets import bestrq


def _usage_entropy(ids: jax.Array, weights: jax.Array, num_classes: int) -> jax.Array:
  """Entropy (bits) of the histogram of `ids` over the frames where weights > 0."""
  counts = jnp.zeros((num_classes,), jnp.float32).at[jnp.clip(ids, 0).reshape(-1)].add(
      weights.reshape(-1).astype(jnp.float32))
  p = counts / jnp.maximum(counts.sum(), 1.0)
  return -jnp.sum(jnp.where(p > 0, p * jnp.log2(jnp.where(p > 0, p, 1.0)), 0.0))


def _target_sets(batch: dict) -> list[jax.Array]:
  targets = batch["targets"]
  return [targets] if targets.ndim == 2 else [targets[:, s] for s in range(targets.shape[1])]


def masked_prediction_loss(out, targets: list[jax.Array], valid: jax.Array, num_classes,
                           loss_cfg, has_frontend_params: bool = True):
  """The criterion given model outputs and frame-aligned targets. Returns (loss, metrics).

  valid: [B, F] frames that have a target in every set and belong to a real example.
  """
  masked = out.time_mask & valid
  unmasked = ~out.time_mask & valid
  n_m, n_u = masked.sum(), unmasked.sum()
  sum_m = sum_u = 0.0
  metrics = {}
  for s, (logits, tgt, k) in enumerate(zip(out.logits, targets, num_classes)):
    sfx = "" if len(targets) == 1 else f"_{s}"
    logp = jax.nn.log_softmax(logits, -1)
    nll = -jnp.take_along_axis(logp, jnp.clip(tgt, 0, k - 1)[..., None], -1)[..., 0]
    s_m, s_u = jnp.sum(jnp.where(masked, nll, 0.0)), jnp.sum(jnp.where(unmasked, nll, 0.0))
    sum_m, sum_u = sum_m + s_m, sum_u + s_u
    pred = jnp.argmax(logits, -1)
    metrics.update({
        f"loss_masked{sfx}": s_m / jnp.maximum(n_m, 1),
        f"loss_unmasked{sfx}": s_u / jnp.maximum(n_u, 1),
        f"acc_masked{sfx}": jnp.sum(masked & (pred == tgt)) / jnp.maximum(n_m, 1),
        f"acc_unmasked{sfx}": jnp.sum(unmasked & (pred == tgt)) / jnp.maximum(n_u, 1),
        # Collapse shows as pred_entropy << target_entropy (bits; log2 K = uniform usage).
        f"pred_entropy{sfx}": _usage_entropy(pred, masked, k),
        f"target_entropy{sfx}": _usage_entropy(tgt, masked, k),
    })
  w_m, w_u = loss_cfg.pred_masked_weight, loss_cfg.pred_nomask_weight
  sample_size = (n_m if w_m > 0 else 0) + (n_u if w_u > 0 else 0)
  loss = (w_m * sum_m + w_u * sum_u) / jnp.maximum(sample_size, 1)
  # fairseq's features_pen = mean(features²); here over real frames only (pad-invariant).
  # A front end without parameters (log-mel + stacking) gets no penalty: it is a constant.
  real = out.frame_mask[..., None].astype(jnp.float32)
  feats = out.features.astype(jnp.float32)
  features_pen = jnp.sum(jnp.square(feats) * real) / jnp.maximum(
      real.sum() * feats.shape[-1], 1.0)
  if loss_cfg.feature_pen_weight and has_frontend_params:
    loss = loss + loss_cfg.feature_pen_weight * features_pen
  metrics.update(features_pen=features_pen, num_masked=n_m, num_unmasked=n_u,
                 mask_fraction=n_m / jnp.maximum(n_m + n_u, 1))
  return loss, metrics


# --------------------------------------------------------------------------------------------
# Hooks used by mlasr.train (every task module has them).
# --------------------------------------------------------------------------------------------
BEST_METRIC = ("dev/loss", "min")


def setup(config, workdir: str) -> dict:
  """Targets: dumped k-means labels (config.model.targets="labels", config.model.labels_dir)
  or BEST-RQ codes computed inside the step (config.model.targets="bestrq")."""
  del workdir
  source = config.model.targets
  if source == "bestrq":
    quantizer = bestrq.BestRQConfig(**config.model.bestrq)
    return dict(num_outputs=quantizer.codebook_size, tokenizer=None, label_store=None,
                model_kwargs=dict(bestrq=quantizer))
  if source != "labels":
    raise ValueError(f"config.model.targets={source!r}; use 'labels' or 'bestrq'.")
  from mlasr.targets import labels as labels_lib  # pylint: disable=import-outside-toplevel
  # array_record label shards: local files (or a gcsfuse mount), like the datasets.
  fileio.require_local(config.model.labels_dir, "config.model.labels_dir")
  store = labels_lib.LabelStore(os.path.expanduser(config.model.labels_dir))
  label_rate = config.model.label_rate
  if abs(store.label_rate - label_rate) > 1e-6:
    raise ValueError(f"labels in {config.model.labels_dir} are at {store.label_rate} Hz but "
                     f"config.model.label_rate={label_rate}; set it to the label rate of the "
                     "dump.")
  return dict(num_outputs=store.num_classes, tokenizer=None, label_store=store,
              model_kwargs={})


def eval_step(model: nnx.Module, batch: dict):
  """Masked-prediction metrics on a dev batch (masks drawn from the reseeded dropout stream)."""
  return loss_fn(model, batch, train=False)[1]


def evaluate(eval_fn, eval_data, task_setup: dict) -> dict:
  """Dev loss and accuracies (mlasr.evaluators.masked_prediction), averaged over batches
  weighted by the frames they score."""
  del task_setup
  return evaluator.dev_metrics(eval_fn, eval_data)


def loss_fn(model: nnx.Module, batch: dict, train: bool = True):
  """The task loss used by mlasr.train: returns (loss, metrics)."""
  # Frame i gets label floor(i * label_rate / frame_rate) (mlasr.targets.align's policy:
  # a label index one past a row's end replicates its last label, further frames get none).
  frame_mask = model.frame_mask(batch["audio_mask"])
  aligned, has_target = [], None
  num_bad = 0
  if "targets" not in batch:  # BEST-RQ: targets are a pure function of the audio
    if model.bestrq is None:
      raise ValueError("batch has no 'targets' and the model has no BEST-RQ quantizer; set "
                       "config.model.labels_dir (k-means labels) or config.model.targets='bestrq'.")
    targets, target_mask = bestrq.bestrq_targets(batch["audio"], batch["audio_mask"],
                                                 model.bestrq)
    batch = dict(batch, targets=targets, target_mask=target_mask.astype(jnp.int32))
  target_sets = _target_sets(batch)
  if len(target_sets) != len(model.num_classes):
    raise ValueError(f"batch has {len(target_sets)} target sets, the model predicts "
                     f"{len(model.num_classes)} (num_classes={model.num_classes})")
  for tgt, k in zip(target_sets, model.num_classes):
    a, ok = align.align_targets(tgt, batch["target_mask"], frame_mask, model.label_rate,
                                model.frame_rate)
    bad = ok & ((a >= k) | (a < 0))  # a label from another K: counted, never trained on
    num_bad += bad.sum()
    ok &= ~bad
    aligned.append(a)
    has_target = ok if has_target is None else has_target & ok
  if "example_mask" in batch:
    has_target &= batch["example_mask"][:, None] > 0
  # A batch may carry a fixed "time_mask" [B, F] (tests, fixed-mask dev evaluation).
  out = model(batch["audio"], batch["audio_mask"], deterministic=not train, maskable=has_target,
              time_mask=batch.get("time_mask"))
  if "example_mask" in batch:  # padding rows stay out of the feature penalty too
    out = out._replace(frame_mask=out.frame_mask & (batch["example_mask"][:, None] > 0))
  valid = out.frame_mask & has_target
  has_frontend_params = bool(jax.tree.leaves(nnx.state(model.encoder.frontend, nnx.Param)))
  loss, metrics = masked_prediction_loss(out, aligned, valid, model.num_classes, model.loss_cfg,
                                         has_frontend_params)
  metrics.update(num_frames=out.frame_mask.sum(), num_target_frames=valid.sum(),
                 num_bad_targets=num_bad, loss=loss,
                 loss_weight=metrics["num_masked"])  # gradient accumulation weights by it
  return loss, metrics


def predict(model: nnx.Module, batch: dict):
  """Unmasked argmax cluster per frame of the first target set: (ids [B, F] (-1 = padding),
  num_frames [B]). For diagnostics (cluster purity, collapse); no decoding."""
  out = model(batch["audio"], batch["audio_mask"], deterministic=True, mask=False)
  ids = jnp.where(out.frame_mask, jnp.argmax(out.logits[0], -1), -1)
  return ids.astype(jnp.int32), out.frame_mask.sum(-1)
