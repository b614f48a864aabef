"""Masked-prediction evaluation (HuBERT / BEST-RQ pretraining): dev loss and accuracies.

The per-batch metrics come from the task's jitted eval step (mlasr.tasks.hubert.eval_step:
loss, loss_masked, acc_masked, pred/target usage entropies and num_masked); `dev_metrics`
averages them over the dev set, each batch weighted by the masked frames it scores.
"""
from __future__ import annotations

import jax

METRICS = ("loss", "loss_masked", "acc_masked", "pred_entropy", "target_entropy")


def dev_metrics(eval_fn, eval_data) -> dict:
  """Dev loss and accuracies, averaged over batches weighted by the frames they score."""
  totals, weights = {}, {}
  for batch in eval_data.batches():
    metrics = jax.device_get(eval_fn(batch))
    w_masked = float(metrics["num_masked"])
    for key in METRICS:
      if key in metrics:
        totals[key] = totals.get(key, 0.0) + float(metrics[key]) * w_masked
        weights[key] = weights.get(key, 0.0) + w_masked
  return {f"dev/{k}": totals[k] / max(weights[k], 1.0) for k in totals}
