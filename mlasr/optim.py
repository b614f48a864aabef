"""Optimizers and learning-rate schedules, built from `config.optim`.

Schedules follow the fairseq recipes the HuBERT/wav2vec 2.0 papers used:
- `tri_stage`: linear warmup, hold, exponential decay (CTC fine-tuning; 10/40/50 %).
- `warmup_cosine`: linear warmup then cosine decay (common for small from-scratch runs).
- `warmup_polynomial`: linear warmup then linear decay to zero (HuBERT pretraining).
"""
from __future__ import annotations

import math

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
    return tri_stage(cfg.lr, total_steps, tuple(cfg.get("phase_ratio", (0.1, 0.4, 0.5))))
  if name == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(
        0.0, cfg.lr, max(cfg.warmup_steps, 1), max(total_steps, cfg.warmup_steps + 1),
        end_value=cfg.lr * cfg.get("final_lr_scale", 0.0))
  if name == "warmup_polynomial":
    return optax.join_schedules([
        optax.linear_schedule(0.0, cfg.lr, max(cfg.warmup_steps, 1)),
        optax.linear_schedule(cfg.lr, 0.0, max(total_steps - cfg.warmup_steps, 1)),
    ], boundaries=[max(cfg.warmup_steps, 1)])
  if name == "constant":
    return optax.constant_schedule(cfg.lr)
  raise ValueError(f"Unknown config.optim.schedule={name!r}; use tri_stage, warmup_cosine, "
                   "warmup_polynomial or constant.")


def make_optimizer(cfg: ml_collections.ConfigDict, total_steps: int):
  """AdamW with global-norm clipping. Returns (optax transform, schedule)."""
  schedule = make_schedule(cfg, total_steps)
  tx = optax.chain(
      optax.clip_by_global_norm(cfg.clip_norm) if cfg.get("clip_norm") else optax.identity(),
      optax.adamw(schedule, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.98),
                  eps=cfg.get("eps", 1e-6), weight_decay=cfg.get("weight_decay", 0.01)),
  )
  return tx, schedule
