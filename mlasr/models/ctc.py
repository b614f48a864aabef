"""Encoder + linear CTC head: the model fine-tuned on labeled speech.

`config.model.encoder` holds EncoderConfig fields (a preset name plus overrides);
`config.model.final_dropout` is applied before the head, as in fairseq's wav2vec2_asr.
"""
from __future__ import annotations

import jax
import ml_collections
from flax import nnx

from mlasr.models import hubert


def encoder_config(model_cfg: ml_collections.ConfigDict) -> hubert.EncoderConfig:
  fields = dict(model_cfg.encoder)
  preset = fields.pop("preset", "tiny")
  return hubert.get_config(preset, **fields)


class CTCModel(nnx.Module):
  """HuBERT-style encoder with a linear projection to the CTC vocabulary (id 0 = blank)."""

  def __init__(self, enc_cfg: hubert.EncoderConfig, vocab_size: int, final_dropout: float,
               *, rngs: nnx.Rngs):
    self.encoder = hubert.Encoder(enc_cfg, rngs=rngs)
    self.dropout = nnx.Dropout(final_dropout, rngs=rngs)
    self.head = nnx.Linear(
        enc_cfg.d_model, vocab_size, rngs=rngs,
        kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), ("embed", "vocab")),
        bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("vocab",)))

  def __call__(self, audio: jax.Array, audio_mask: jax.Array, *, deterministic: bool,
               lang_id: jax.Array | None = None):
    """Returns (logits [B, F, V], frame_mask [B, F])."""
    del lang_id  # Per-language adapters and heads select on it.
    out = self.encoder(audio, audio_mask, deterministic=deterministic)
    hidden = self.dropout(out.hidden, deterministic=deterministic)
    return self.head(hidden), out.frame_mask


def build(config: ml_collections.ConfigDict, vocab_size: int, rngs: nnx.Rngs) -> CTCModel:
  return CTCModel(encoder_config(config.model), vocab_size,
                  config.model.get("final_dropout", 0.0), rngs=rngs)
