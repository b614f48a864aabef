"""Label-rate ↔ encoder-frame arithmetic.

Labels come at `label_rate` (100 Hz for MFCC k-means, 50 Hz for waveform-model layer features,
100/s Hz for BEST-RQ on s stacked 10 ms frames); the encoder emits `frame_rate` frames (50 Hz
for the waveform conv stack, 50 or 25 Hz for the log-mel front end with ×2/×4 stacking).
As fairseq's HubertModel.forward_targets, encoder frame i gets label
`floor(i * label_rate / frame_rate)` (integer arithmetic: rates are whole Hz).

Length policy (documented because the fairseq tracker is full of silent misalignments):
- every encoder frame needs a label index < len(labels);
- if the last needed index overshoots by exactly one (e.g. 50 Hz labels from a log-mel ×2
  model used with a waveform encoder, whose frame count can be one larger), that frame gets
  the last label (edge replication);
- an overshoot of more than one label frame means labels and audio disagree (wrong label
  rate, labels of another clip, a crop that ignored the label hop): `align_labels` raises;
  `align_targets` (the jitted batch version, which cannot raise) masks such frames out.
- no labels at all for a clip that has encoder frames raises too (nothing to replicate; only
  happens for clips shorter than a feature window, e.g. < 560 samples for a log-mel x2 model);
- surplus labels at the end (labels longer than needed) are dropped.

How many labels a clip of n samples has is a property of the feature extractor that made them:
its `mlasr.features.FrameSpec` (window/stride layers, then frame stacking), the same arithmetic
as the encoder's own (`Encoder.frame_spec`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np



def _ratio(label_rate: float, frame_rate: float) -> tuple[int, int]:
  lr, fr = round(label_rate), round(frame_rate)
  if abs(lr - label_rate) > 1e-6 or abs(fr - frame_rate) > 1e-6 or lr <= 0 or fr <= 0:
    raise ValueError(f"label_rate ({label_rate}) and frame_rate ({frame_rate}) must be "
                     "positive whole numbers of Hz")
  return lr, fr


def label_indices(num_frames: int, label_rate: float, frame_rate: float) -> np.ndarray:
  """fairseq's target index of each encoder frame: floor(i * label_rate / frame_rate)."""
  lr, fr = _ratio(label_rate, frame_rate)
  return (np.arange(num_frames) * lr) // fr


def align_labels(labels: np.ndarray, num_frames: int, label_rate: float,
                 frame_rate: float, *, name: str = "") -> np.ndarray:
  """Labels of one clip at label_rate -> one label per encoder frame ([num_frames]).

  Raises ValueError if the labels are more than one label frame too short (see module doc).
  """
  labels = np.asarray(labels)
  idx = label_indices(num_frames, label_rate, frame_rate)
  if num_frames and (idx[-1] > len(labels) or not len(labels)):
    raise ValueError(
        f"{name or 'labels'}: {len(labels)} labels at {label_rate} Hz cannot cover "
        f"{num_frames} encoder frames at {frame_rate} Hz (needs index {idx[-1]}); the labels "
        "belong to another clip/crop or were dumped at another label rate")
  if len(labels) == 0:
    return labels[:0]
  return labels[np.minimum(idx, len(labels) - 1)]


def align_targets(targets: jax.Array, target_mask: jax.Array, frame_mask: jax.Array,
                  label_rate: float, frame_rate: float) -> tuple[jax.Array, jax.Array]:
  """Batch version for the jitted step: targets [B, L] at label_rate -> [B, F] per frame.

  Args:
    targets: [B, L] int labels (padding arbitrary, e.g. -1).
    target_mask: [B, L], 1 on real labels (a prefix of each row).
    frame_mask: [B, F] bool, the encoder's real frames.
    label_rate, frame_rate: Hz.

  Returns:
    (frame_targets [B, F] int32 (-1 where invalid), valid [B, F] bool). A frame is valid if it
    is real and its label index is at most one past the row's last label (then replicated).
  """
  f = frame_mask.shape[1]
  idx = jnp.asarray(label_indices(f, label_rate, frame_rate), jnp.int32)[None, :]
  n = jnp.asarray(target_mask).astype(jnp.int32).sum(-1, keepdims=True)
  valid = frame_mask.astype(bool) & (idx <= n) & (n > 0)
  take = jnp.clip(jnp.minimum(idx, n - 1), 0, targets.shape[1] - 1)
  out = jnp.take_along_axis(jnp.asarray(targets, jnp.int32), jnp.broadcast_to(take, valid.shape),
                            axis=1)
  return jnp.where(valid, out, -1), valid
