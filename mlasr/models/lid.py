"""Spoken language identification: encoder -> mean over real frames -> linear over languages.

ML-SUPERB reports LID beside CER; mlasr also uses it to pick a language's adapter at
inference (`mlasr.evaluate --adapter_lang auto`). Usually trained on a frozen pretrained
encoder (`config.model.train_encoder=False`: no gradient into it, so training costs about one
forward pass):

    python -m mlasr.train --config experiments/lid.py:root=D,init_from=W/hubert_it2 --workdir W/lid
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from mlasr.models import ctc, hubert, layers


class LIDModel(nnx.Module):
  """Logits [B, L] over `langs` from a time-pooled encoder layer."""

  def __init__(self, enc_cfg: hubert.EncoderConfig, langs: Sequence[str], *, layer: int = -1,
               dropout: float = 0.1, train_encoder: bool = False, rngs: nnx.Rngs):
    self.encoder = hubert.Encoder(enc_cfg, rngs=rngs)
    self.langs = tuple(langs)
    self.layer = layer
    self.train_encoder = train_encoder
    self.dropout = nnx.Dropout(dropout, rngs=rngs)
    self.head = layers.Dense(enc_cfg.d_model, len(self.langs), ("embed", None), rngs=rngs)

  def __call__(self, audio: jax.Array, audio_mask: jax.Array, *, deterministic: bool,
               lang_id: jax.Array | None = None) -> jax.Array:
    del lang_id  # the target, not an input
    out = self.encoder(audio, audio_mask, deterministic=deterministic or not self.train_encoder,
                       output_hidden_states=self.layer != -1)
    hidden = out.hidden if self.layer == -1 else out.layer_hiddens[self.layer]
    if not self.train_encoder:
      hidden = jax.lax.stop_gradient(hidden)
    weights = out.frame_mask.astype(jnp.float32)[..., None]
    pooled = (hidden.astype(jnp.float32) * weights).sum(1) / jnp.maximum(weights.sum(1), 1.0)
    return self.head(self.dropout(pooled, deterministic=deterministic)).astype(jnp.float32)


def build(config: ml_collections.ConfigDict, num_langs: int, rngs: nnx.Rngs, *,
          langs: Sequence[str] = ()) -> LIDModel:
  if len(langs) != num_langs:
    raise ValueError(f"LID over {num_langs} languages but got langs={list(langs)}")
  return LIDModel(ctc.encoder_config(config.model), langs, layer=config.model.get("layer", -1),
                  dropout=config.model.get("final_dropout", 0.1),
                  train_encoder=config.model.get("train_encoder", False), rngs=rngs)
