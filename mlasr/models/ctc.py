"""Encoder + linear CTC head: the model fine-tuned on labeled speech.

`config.model.encoder` holds EncoderConfig fields (a preset name plus overrides);
`config.model.final_dropout` is applied before the head, as in fairseq's wav2vec2_asr.
`config.model.finetune_masking` (off by default) masks time and channel spans of the
projected features during training, as HuBERT / wav2vec 2.0 fine-tuning does.

What the head reads (SUPERB / ML-SUPERB style; mlasr.models.encoder.layer_readout):
  config.model.head_layer           -1: the encoder output (default); i: block i's output
                                    (0 = the transformer input), the blocks above unused
  config.model.layer_weights        True: a learned softmax-weighted sum of every layer

Multilingual options (mlasr/models/adapters.py; every one selects per example by `lang_id`):
  config.model.adapters.bottleneck  > 0 adds MMS adapters after `adapters.blocks` (all if None)
  config.model.head                 "shared" (one head) | "per_language" (a head per language)
  config.model.output_mask          True: logits of outputs a language never uses are -1e9
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from mlasr import features, masking
from mlasr.models import adapters as adapters_lib
from mlasr.models import encoder as encoder_lib

MASKED_LOGIT = -1e9


class CTCModel(nnx.Module):
  """HuBERT-style encoder with a linear projection to the CTC vocabulary (id 0 = blank)."""

  def __init__(self, enc_cfg: encoder_lib.EncoderConfig, vocab_size: int, final_dropout: float,
               *, rngs: nnx.Rngs, finetune_masking: masking.MaskingConfig | None = None,
               langs: Sequence[str] = (), adapter_bottleneck: int = 0,
               adapter_blocks: Sequence[int] | None = None, head: str = "shared",
               output_mask: np.ndarray | None = None, head_layer: int = -1,
               layer_weights: bool = False):
    if not -1 <= head_layer <= enc_cfg.num_layers:
      raise ValueError(f"config.model.head_layer={head_layer}: use -1 (the encoder output) or "
                       f"0..{enc_cfg.num_layers} (0 = transformer input, i = block i's output)")
    self.encoder = encoder_lib.Encoder(enc_cfg, rngs=rngs)
    self.dropout = nnx.Dropout(final_dropout, rngs=rngs)
    self.langs = tuple(langs)
    if (adapter_bottleneck or head != "shared" or output_mask is not None) and not self.langs:
      raise ValueError("Per-language adapters, heads or output masks need the language list.")
    self.adapters = (adapters_lib.AdapterBank(
        self.langs, enc_cfg.num_layers, enc_cfg.d_model, adapter_bottleneck,
        blocks=adapter_blocks, eps=enc_cfg.layer_norm_eps, dtype=enc_cfg.compute_dtype,
        rngs=rngs) if adapter_bottleneck else None)
    if head == "shared":
      self.head = nnx.Linear(
          enc_cfg.d_model, vocab_size, rngs=rngs,
          kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), ("embed", "vocab")),
          bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("vocab",)))
      self.heads = None
    elif head == "per_language":
      self.head = None
      self.heads = adapters_lib.HeadBank(self.langs, enc_cfg.d_model, vocab_size, rngs=rngs)
    else:
      raise ValueError(f"config.model.head={head!r}; use 'shared' or 'per_language'.")
    # Static (hashable) so that it lives in the graph, not in checkpoints: it is a function
    # of the tokenizer, which is saved beside every run.
    if output_mask is not None:
      output_mask = np.asarray(output_mask, bool)
      if output_mask.shape != (len(self.langs), vocab_size):
        raise ValueError(f"output_mask shape {output_mask.shape} != (languages, vocab) = "
                         f"{(len(self.langs), vocab_size)}")
      self.output_mask = (output_mask.shape, np.packbits(output_mask).tobytes())
    else:
      self.output_mask = None
    self.head_layer = head_layer
    self.layer_logits = encoder_lib.layer_logits_param(enc_cfg) if layer_weights else None
    self.finetune_masking = finetune_masking
    if finetune_masking is not None:
      # Forked from "dropout": nnx.reseed(model, dropout=...) in mlasr.train fixes the masks.
      self.mask_rngs = rngs["dropout"].fork()

  @property
  def uses_mask_embedding(self) -> bool:
    return self.finetune_masking is not None and self.finetune_masking.mask_prob > 0

  def __call__(self, audio: jax.Array, audio_mask: jax.Array, *, deterministic: bool,
               lang_id: jax.Array | None = None):
    """Returns (logits [B, F, V], frame_mask [B, F]); lang_id [B] indexes `langs`."""
    per_language = self.adapters is not None or self.heads is not None or self.output_mask
    if per_language and lang_id is None:
      raise ValueError("This model has per-language adapters, heads or output masks: pass "
                       "lang_id (batches from mlasr.data.pipeline carry it).")
    masks = {}
    if self.finetune_masking is not None and not deterministic:
      masks = finetune_masks(self.finetune_masking, self.mask_rngs(), self.encoder, audio_mask)
    after_block = (None if self.adapters is None
                   else functools.partial(self.adapters, lang_id=lang_id))
    out = self.encoder(audio, audio_mask, deterministic=deterministic, after_block=after_block,
                       output_hidden_states=encoder_lib.needs_layer_hiddens(
                           self.head_layer, self.layer_logits), **masks)
    hidden = encoder_lib.layer_readout(out, self.head_layer, self.layer_logits)
    hidden = self.dropout(hidden, deterministic=deterministic)
    logits = self.head(hidden) if self.heads is None else self.heads(hidden, lang_id)
    if self.output_mask is not None:
      shape, bits = self.output_mask
      allowed = np.unpackbits(np.frombuffer(bits, np.uint8))[:np.prod(shape)].reshape(shape)
      logits = jnp.where(jnp.asarray(allowed, bool)[lang_id][:, None, :], logits,
                         jnp.asarray(MASKED_LOGIT, logits.dtype))
    return logits, out.frame_mask


def build(config: ml_collections.ConfigDict, vocab_size: int, rngs: nnx.Rngs, *,
          langs: Sequence[str] = (), output_mask: np.ndarray | None = None) -> CTCModel:
  """The CTC model of `config.model`; `langs` and `output_mask` come from tasks.ctc.setup."""
  m = config.model
  return CTCModel(encoder_lib.config_from_fields(m.encoder), vocab_size, m.final_dropout, rngs=rngs,
                  finetune_masking=finetune_masking_config(m), langs=langs,
                  adapter_bottleneck=m.adapters.bottleneck, adapter_blocks=m.adapters.blocks,
                  head=m.head, output_mask=output_mask if m.output_mask else None,
                  head_layer=m.head_layer, layer_weights=m.layer_weights)


# -------------------------------------------------------------------------------------------
# Fine-tuning-time masking (HuBERT fine-tuning: time 0.75 / 10, channel 0.5 / 64; training
# only). Off unless config.model.finetune_masking sets a mask_prob or mask_channel_prob > 0.
# -------------------------------------------------------------------------------------------
def finetune_masking_config(model_cfg: ml_collections.ConfigDict) -> masking.MaskingConfig | None:
  """config.model.finetune_masking -> MaskingConfig, or None when both probabilities are 0."""
  cfg = masking.MaskingConfig.from_dict(model_cfg.finetune_masking)
  return cfg if cfg.mask_prob > 0 or cfg.mask_channel_prob > 0 else None


def finetune_masks(cfg: masking.MaskingConfig, key: jax.Array, encoder: encoder_lib.Encoder,
                   audio_mask: jax.Array) -> dict:
  """Encoder keyword arguments {time_mask: [B, F], channel_mask: [B, D]} for one batch."""
  k_time, k_channel = jax.random.split(key)
  out = {}
  if cfg.mask_prob > 0:
    lengths = encoder.frame_lengths(audio_mask.astype("int32").sum(-1))
    num_frames = int(encoder.frame_lengths(audio_mask.shape[1]))
    out["time_mask"] = masking.jax_mask_indices(
        k_time, features.lengths_to_mask(lengths, num_frames), cfg.mask_prob, cfg.mask_length,
        cfg.min_masks, cfg.require_same_masks, cfg.mask_dropout)
  if cfg.mask_channel_prob > 0:
    out["channel_mask"] = masking.jax_channel_mask(
        k_channel, audio_mask.shape[0], encoder.d_model, cfg.mask_channel_prob,
        cfg.mask_channel_length)
  return out
