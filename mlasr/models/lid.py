"""Spoken language identification: encoder layers -> statistics pooling -> linear over languages.

ML-SUPERB reports LID beside CER; mlasr also uses it to pick a language's adapter at
inference (`mlasr.evaluate --adapter_lang auto`). On a frozen pretrained encoder
(`config.model.train_encoder=False`: no gradient into it, so a step costs about one forward
pass) the head reads a learned softmax-weighted sum of every layer (`layer_weights`, the SUPERB
probe: language cues sit in the lower layers of HuBERT-style encoders, not the last), pools it
over real frames into mean and standard deviation (x-vector statistics pooling) and normalises
the pooled vector before the linear layer. MMS's LID instead fine-tunes the whole encoder
(`train_encoder=True`).

    python -m mlasr.train --config experiments/lid.py:root=D,init_from=W/hubert_it2 --workdir W/lid
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from mlasr.models import encoder as encoder_lib, layers

POOLINGS = ("mean", "stats")


def pool(hidden: jax.Array, frame_mask: jax.Array, pooling: str) -> jax.Array:
  """[B, F, D] -> [B, D] mean, or [B, 2D] mean ++ standard deviation, over real frames only."""
  w = frame_mask.astype(jnp.float32)[..., None]
  count = jnp.maximum(w.sum(1), 1.0)
  h = hidden.astype(jnp.float32)
  mean = (h * w).sum(1) / count
  if pooling == "mean":
    return mean
  var = (jnp.square(h - mean[:, None]) * w).sum(1) / count
  return jnp.concatenate([mean, jnp.sqrt(var + 1e-5)], -1)


class LIDModel(nnx.Module):
  """Logits [B, L] over `langs` from time-pooled encoder states."""

  def __init__(self, enc_cfg: encoder_lib.EncoderConfig, langs: Sequence[str], *, layer: int = -1,
               layer_weights: bool = False, pooling: str = "stats", dropout: float = 0.1,
               train_encoder: bool = False, rngs: nnx.Rngs):
    if pooling not in POOLINGS:
      raise ValueError(f"LID pooling must be one of {POOLINGS}, got {pooling!r}")
    self.encoder = encoder_lib.Encoder(enc_cfg, rngs=rngs)
    self.langs = tuple(langs)
    self.layer = layer
    self.pooling = pooling
    self.train_encoder = train_encoder
    # One weight per layer_hiddens entry (transformer input + every block), softmax-normalised.
    self.layer_logits = encoder_lib.layer_logits_param(enc_cfg) if layer_weights else None
    pooled_dim = enc_cfg.d_model * (2 if pooling == "stats" else 1)
    # Mean and standard deviation live on different scales; normalising the pooled vector puts
    # them on one before the linear layer.
    self.norm = layers.LayerNorm(pooled_dim, eps=enc_cfg.layer_norm_eps, rngs=rngs)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)
    self.head = layers.Dense(pooled_dim, len(self.langs), ("embed", None), rngs=rngs)

  def __call__(self, audio: jax.Array, audio_mask: jax.Array, *, deterministic: bool,
               lang_id: jax.Array | None = None) -> jax.Array:
    del lang_id  # the target, not an input
    out = self.encoder(audio, audio_mask, deterministic=deterministic or not self.train_encoder,
                       output_hidden_states=encoder_lib.needs_layer_hiddens(
                           self.layer, self.layer_logits))
    hidden = encoder_lib.layer_readout(out, self.layer, self.layer_logits,
                                       stop_gradient=not self.train_encoder)
    pooled = self.norm(pool(hidden, out.frame_mask, self.pooling))
    return self.head(self.dropout(pooled, deterministic=deterministic)).astype(jnp.float32)


def build(config: ml_collections.ConfigDict, num_langs: int, rngs: nnx.Rngs, *,
          langs: Sequence[str] = ()) -> LIDModel:
  if len(langs) != num_langs:
    raise ValueError(f"LID over {num_langs} languages but got langs={list(langs)}")
  m = config.model
  return LIDModel(encoder_lib.config_from_fields(m.encoder), langs, layer=m.layer,
                  layer_weights=m.layer_weights,
                  pooling=m.pooling, dropout=m.final_dropout, train_encoder=m.train_encoder,
                  rngs=rngs)
