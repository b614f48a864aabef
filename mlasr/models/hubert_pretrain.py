"""HuBERT masked-prediction model: encoder + final projection + cosine logits over clusters.

    logits_k[b, t, c] = cos(proj_k(h[b, t]), emb_k[c]) / logit_temp     (fairseq compute_nce)

One embedding table (num_classes_k × final_dim) per target set k; with `untie_final_proj`
every target set also gets its own slice of the final projection (fairseq's untied proj).

Masking randomness: the time mask is drawn inside `__call__` from `mask_rngs`, a stream forked
from the "dropout" stream at construction, so `nnx.reseed(model, dropout=key)` (what
mlasr.train does every step) fixes the mask as a function of (seed, step), exactly like
dropout. Masks are applied in eval (deterministic=True) too: the masked loss needs them.

Config (`config.model`): encoder (preset + EncoderConfig overrides), final_dim (256),
logit_temp (0.1), untie_final_proj (False), masking (mlasr.masking.MaskingConfig fields),
label_rate (Hz of the targets, 50) and loss (LossConfig fields), the last two read by
mlasr.tasks.hubert through `model.label_rate` / `model.loss_cfg`. With BEST-RQ targets
(config.model.targets="bestrq") `build` gets the quantizer config (a BestRQConfig, from the
`model_kwargs` of mlasr.tasks.hubert.setup): the model keeps it for the task and takes its label
rate from it; models never import mlasr.targets.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from mlasr import masking
from mlasr.features import lengths_to_mask
from mlasr.models import encoder as encoder_lib, layers

# Hz of the pretraining targets when a config does not say: fairseq HuBERT Base's 50 Hz
# (MFCC or hidden-unit labels at the frame rate of its 20 ms conv front end). Experiments
# state theirs (experiments/hubert_pretrain.py: 100 Hz MFCC labels for the 25 Hz encoder);
# mlasr.tasks.hubert checks it against the dump's own rate.
DEFAULT_LABEL_RATE = 50.0


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """fairseq hubert criterion: CE weights and `loss_weights: [10]` (feature penalty)."""
  pred_masked_weight: float = 1.0
  pred_nomask_weight: float = 0.0
  feature_pen_weight: float = 10.0


class PretrainOutput(NamedTuple):
  logits: tuple[jax.Array, ...]  # one [B, F, K_k] per target set (float32)
  time_mask: jax.Array           # [B, F] bool, frames replaced by the mask embedding
  frame_mask: jax.Array          # [B, F] bool, real frames
  features: jax.Array            # [B, F, C] front-end features (for the feature penalty)


class HubertPretrainModel(nnx.Module):
  """HuBERT encoder with masked prediction of cluster targets."""

  def __init__(self, enc_cfg: encoder_lib.EncoderConfig, num_classes: int | Sequence[int], *,
               final_dim: int = 256, logit_temp: float = 0.1, untie_final_proj: bool = False,
               mask_cfg: masking.MaskingConfig = masking.MaskingConfig(),
               label_rate: float = DEFAULT_LABEL_RATE, loss_cfg: LossConfig = LossConfig(),
               bestrq=None, rngs: nnx.Rngs):
    num_classes = (num_classes,) if isinstance(num_classes, int) else tuple(num_classes)
    self.encoder = encoder_lib.Encoder(enc_cfg, rngs=rngs)
    self.num_classes = num_classes
    self.final_dim, self.logit_temp = final_dim, logit_temp
    self.untie_final_proj = untie_final_proj and len(num_classes) > 1
    proj_dim = final_dim * (len(num_classes) if self.untie_final_proj else 1)
    self.final_proj = layers.Dense(enc_cfg.d_model, proj_dim, ("embed", None),
                                   dtype=enc_cfg.compute_dtype, rngs=rngs)
    # fairseq: label_embs_concat ~ U[0, 1).
    self.label_embs = nnx.List([
        layers.param(jax.nn.initializers.uniform(1.0), rngs.params(), (k, final_dim),
                     ("vocab", None)) for k in num_classes])
    self.mask_cfg = mask_cfg
    self.label_rate, self.loss_cfg = float(label_rate), loss_cfg
    self.mask_rngs = rngs["dropout"].fork()
    # BEST-RQ quantizer config (mlasr.targets.bestrq.BestRQConfig), whose targets the task
    # computes in the step; None = dumped labels.
    self.bestrq = bestrq

  def num_frames(self, num_samples: int) -> int:
    """Padded frame count for a batch of `num_samples` samples (static)."""
    return int(self.encoder.frame_lengths(np.asarray(num_samples)))

  @property
  def frame_rate(self) -> float:
    """Encoder frames per second (50 for the HuBERT conv stack, 25 for the tiny log-mel)."""
    return self.encoder.frame_spec.rate

  def frame_mask(self, audio_mask: jax.Array) -> jax.Array:
    """[B, F] bool real frames of a [B, T] audio mask (what the encoder will return)."""
    lengths = self.encoder.frame_lengths(audio_mask.astype(jnp.int32).sum(-1))
    return lengths_to_mask(lengths, self.num_frames(audio_mask.shape[1]))

  def compute_mask(self, audio_mask: jax.Array, maskable: jax.Array | None = None) -> jax.Array:
    """[B, F] time mask drawn from `mask_rngs` over the real (and `maskable`) frames."""
    frame_mask = self.frame_mask(audio_mask)
    if maskable is not None:
      frame_mask &= maskable.astype(bool)
    c = self.mask_cfg
    return masking.jax_mask_indices(self.mask_rngs(), frame_mask, c.mask_prob, c.mask_length,
                                    c.min_masks, c.require_same_masks, c.mask_dropout)

  def logits(self, hidden: jax.Array) -> tuple[jax.Array, ...]:
    """Cosine logits / logit_temp per target set, float32: tuple of [B, F, K_k]."""
    proj = self.final_proj(hidden).astype(jnp.float32)
    projs = (jnp.split(proj, len(self.num_classes), axis=-1) if self.untie_final_proj
             else [proj] * len(self.num_classes))
    out = []
    for p, emb in zip(projs, self.label_embs):
      out.append(jnp.einsum("bfd,kd->bfk", _unit(p), _unit(emb[...])) / self.logit_temp)
    return tuple(out)

  def __call__(self, audio: jax.Array, audio_mask: jax.Array, *, deterministic: bool,
               maskable: jax.Array | None = None, time_mask: jax.Array | None = None,
               mask: bool = True, lang_id: jax.Array | None = None) -> PretrainOutput:
    """Masks, encodes and scores every frame against every cluster.

    Args:
      audio, audio_mask: [B, T] waveform batch.
      deterministic: disables dropout/layerdrop (masking stays on unless mask=False).
      maskable: [B, F] bool, frames that may be masked (e.g. those with targets).
      time_mask: [B, F] bool, a given mask (tests); otherwise drawn when `mask`.
    """
    del lang_id
    if time_mask is None and mask and self.mask_cfg.mask_prob > 0:
      time_mask = self.compute_mask(audio_mask, maskable)
    out = self.encoder(audio, audio_mask, time_mask=time_mask, deterministic=deterministic)
    if time_mask is None:
      time_mask = jnp.zeros(out.frame_mask.shape, bool)
    return PretrainOutput(logits=self.logits(out.hidden), time_mask=time_mask,
                          frame_mask=out.frame_mask, features=out.features)


def _unit(x: jax.Array, eps: float = 1e-8) -> jax.Array:
  # torch.cosine_similarity clamps each norm at eps.
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def build(config: ml_collections.ConfigDict, num_classes: int | Sequence[int],
          rngs: nnx.Rngs, bestrq=None) -> HubertPretrainModel:
  """From `config.model` (see the module docstring); num_classes = k-means K per target set
  (the codebook size for BEST-RQ). bestrq: the quantizer config that mlasr.tasks.hubert.setup
  returns in `model_kwargs` when config.model.targets == "bestrq"."""
  model_cfg = config.model
  enc_cfg = encoder_lib.config_from_fields(model_cfg.encoder)
  label_rate = model_cfg.label_rate
  if model_cfg.targets == "bestrq":
    if bestrq is None:
      raise ValueError("config.model.targets='bestrq': pass the quantizer config, "
                       "build(config, **mlasr.tasks.hubert.setup(config, workdir)"
                       "['model_kwargs'], ...)")
    num_classes, label_rate = bestrq.codebook_size, bestrq.label_rate
  return HubertPretrainModel(
      enc_cfg, num_classes, final_dim=model_cfg.final_dim, logit_temp=model_cfg.logit_temp,
      untie_final_proj=model_cfg.untie_final_proj,
      mask_cfg=masking.MaskingConfig.from_dict(model_cfg.masking),
      label_rate=label_rate, bestrq=bestrq, loss_cfg=LossConfig(**model_cfg.loss), rngs=rngs)
