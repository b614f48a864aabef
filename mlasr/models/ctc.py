"""Encoder + linear CTC head: the model fine-tuned on labeled speech.

`config.model.encoder` holds EncoderConfig fields (a preset name plus overrides);
`config.model.final_dropout` is applied before the head, as in fairseq's wav2vec2_asr.
`config.model.finetune_masking` (off by default) masks time and channel spans of the
projected features during training, as HuBERT / wav2vec 2.0 fine-tuning does.
"""
from __future__ import annotations

import inspect

import jax
import ml_collections
from flax import nnx

from mlasr import masking
from mlasr.models import hubert, layers


def encoder_config(model_cfg: ml_collections.ConfigDict) -> hubert.EncoderConfig:
  fields = dict(model_cfg.encoder)
  preset = fields.pop("preset", "tiny")
  return hubert.get_config(preset, **fields)


class CTCModel(nnx.Module):
  """HuBERT-style encoder with a linear projection to the CTC vocabulary (id 0 = blank)."""

  def __init__(self, enc_cfg: hubert.EncoderConfig, vocab_size: int, final_dropout: float,
               *, rngs: nnx.Rngs, finetune_masking: masking.MaskingConfig | None = None):
    self.encoder = hubert.Encoder(enc_cfg, rngs=rngs)
    self.dropout = nnx.Dropout(final_dropout, rngs=rngs)
    self.head = nnx.Linear(
        enc_cfg.d_model, vocab_size, rngs=rngs,
        kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), ("embed", "vocab")),
        bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("vocab",)))
    self.finetune_masking = finetune_masking
    if finetune_masking is not None:
      _check_channel_mask_support(finetune_masking)
      # Forked from "dropout": nnx.reseed(model, dropout=...) in mlasr.train fixes the masks.
      self.mask_rngs = rngs["dropout"].fork()

  @property
  def uses_mask_embedding(self) -> bool:
    return self.finetune_masking is not None and self.finetune_masking.mask_prob > 0

  def __call__(self, audio: jax.Array, audio_mask: jax.Array, *, deterministic: bool,
               lang_id: jax.Array | None = None):
    """Returns (logits [B, F, V], frame_mask [B, F])."""
    del lang_id  # Per-language adapters and heads select on it.
    masks = {}
    if self.finetune_masking is not None and not deterministic:
      masks = finetune_masks(self.finetune_masking, self.mask_rngs(), self.encoder, audio_mask)
    out = self.encoder(audio, audio_mask, deterministic=deterministic, **masks)
    hidden = self.dropout(out.hidden, deterministic=deterministic)
    return self.head(hidden), out.frame_mask


def build(config: ml_collections.ConfigDict, vocab_size: int, rngs: nnx.Rngs) -> CTCModel:
  return CTCModel(encoder_config(config.model), vocab_size,
                  config.model.get("final_dropout", 0.0), rngs=rngs,
                  finetune_masking=finetune_masking_config(config.model))


# -------------------------------------------------------------------------------------------
# Fine-tuning-time masking (HuBERT fine-tuning: time 0.75 / 10, channel 0.5 / 64; training
# only). Off unless config.model.finetune_masking sets a mask_prob or mask_channel_prob > 0.
# -------------------------------------------------------------------------------------------
FINETUNE_MASKING_DEFAULTS = dict(mask_prob=0.0, mask_length=10, min_masks=2,
                                 require_same_masks=True, mask_channel_prob=0.0,
                                 mask_channel_length=64)


def finetune_masking_config(model_cfg: ml_collections.ConfigDict) -> masking.MaskingConfig | None:
  """config.model.finetune_masking -> MaskingConfig, or None when both probabilities are 0."""
  fields = dict(FINETUNE_MASKING_DEFAULTS, **dict(model_cfg.get("finetune_masking", None) or {}))
  cfg = masking.MaskingConfig.from_dict(fields)
  return cfg if cfg.mask_prob > 0 or cfg.mask_channel_prob > 0 else None


def _check_channel_mask_support(cfg: masking.MaskingConfig) -> None:
  if cfg.mask_channel_prob > 0 and "channel_mask" not in inspect.signature(
      hubert.Encoder.__call__).parameters:
    raise NotImplementedError(
        "finetune_masking.mask_channel_prob > 0 needs hubert.Encoder.__call__(..., "
        "channel_mask=[B, D] bool) zeroing those channels of the projected features after "
        "the time mask (fairseq apply_mask); this Encoder has no such argument. Set "
        "mask_channel_prob=0 or add it to mlasr/models/hubert.py.")


def finetune_masks(cfg: masking.MaskingConfig, key: jax.Array, encoder: hubert.Encoder,
                   audio_mask: jax.Array) -> dict:
  """Encoder keyword arguments {time_mask: [B, F], channel_mask: [B, D]} for one batch."""
  k_time, k_channel = jax.random.split(key)
  out = {}
  if cfg.mask_prob > 0:
    lengths = encoder.frame_lengths(audio_mask.astype("int32").sum(-1))
    num_frames = int(encoder.frame_lengths(audio_mask.shape[1]))
    out["time_mask"] = masking.jax_mask_indices(
        k_time, layers.lengths_to_mask(lengths, num_frames), cfg.mask_prob, cfg.mask_length,
        cfg.min_masks, cfg.require_same_masks, cfg.mask_dropout)
  if cfg.mask_channel_prob > 0:
    out["channel_mask"] = masking.jax_channel_mask(
        k_channel, audio_mask.shape[0], encoder.d_model, cfg.mask_channel_prob,
        cfg.mask_channel_length)
  return out
