"""Load a transformers `HubertModel` / `Wav2Vec2Model` directory into an mlasr `Encoder`.

    config, model = load_hf_encoder("/path/to/hubert-base-ls960")

Reads config.json and model.safetensors (or a sharded safetensors index, or
pytorch_model.bin through torch). Checkpoints saved from task models (`HubertForCTC`,
`Wav2Vec2ForPreTraining`, ...) work too: the `hubert.` / `wav2vec2.` prefix is stripped and
head/quantizer weights are ignored (listed in the log). Both weight-norm spellings of the
positional conv are accepted (`weight_g/weight_v` and `parametrizations.weight.original0/1`).
"""

from __future__ import annotations

import json
import logging
import os

import jax.numpy as jnp
import numpy as np
from flax import nnx

from mlasr.models import hubert

_PREFIXES = ("hubert.", "wav2vec2.", "model.")
_OURS = ("feature_extractor.", "feature_projection.", "encoder.", "masked_spec_embed")


def config_from_hf(hf: dict, **overrides) -> hubert.EncoderConfig:
  """Maps a transformers Hubert/Wav2Vec2 config dict to an EncoderConfig."""
  model_type = hf.get("model_type", "?")
  if model_type not in ("hubert", "wav2vec2"):
    raise ValueError(f"model_type {model_type!r} is not supported (hubert, wav2vec2)")
  for key, want in (("hidden_act", "gelu"), ("feat_extract_activation", "gelu")):
    if hf.get(key, "gelu") != want:
      raise ValueError(f"{key}={hf[key]!r} is not supported (only 'gelu')")
  for key in ("add_adapter", "conv_pos_batch_norm"):
    if hf.get(key):
      raise ValueError(f"{key}=True is not supported by the mlasr encoder")
  if hf.get("adapter_attn_dim"):
    raise ValueError("MMS attention adapters (adapter_attn_dim) are not supported here; "
                     "load the base model without adapters")
  norm = hf.get("feat_extract_norm", "group")
  if norm not in ("group", "layer"):
    raise ValueError(f"feat_extract_norm={norm!r} must be 'group' or 'layer'")
  fields = dict(
      frontend="waveform",
      conv_dim=tuple(hf["conv_dim"]), conv_kernel=tuple(hf["conv_kernel"]),
      conv_stride=tuple(hf["conv_stride"]), conv_bias=bool(hf.get("conv_bias", False)),
      extractor_mode="default" if norm == "group" else "layer_norm",
      feature_grad_mult=0.1 if norm == "group" else 1.0,
      # wav2vec2 always has the feature LayerNorm; HuBERT has a switch.
      feat_proj_layer_norm=bool(hf.get("feat_proj_layer_norm", True))
      if model_type == "hubert" else True,
      d_model=hf["hidden_size"], num_layers=hf["num_hidden_layers"],
      num_heads=hf["num_attention_heads"], ffn_dim=hf["intermediate_size"],
      pos_conv_kernel=hf["num_conv_pos_embeddings"],
      pos_conv_groups=hf["num_conv_pos_embedding_groups"],
      layer_norm_first=bool(hf.get("do_stable_layer_norm", False)),
      layer_norm_eps=hf.get("layer_norm_eps", 1e-5),
      dropout=hf.get("hidden_dropout", 0.1), attention_dropout=hf.get("attention_dropout", 0.1),
      activation_dropout=hf.get("activation_dropout", 0.1),
      feat_proj_dropout=hf.get("feat_proj_dropout", 0.0), layerdrop=hf.get("layerdrop", 0.1),
      conv_module_kernel=0)
  fields.update(overrides)
  return hubert.EncoderConfig(**fields)


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """All tensors of a transformers checkpoint directory as float32 numpy arrays."""
  st = os.path.join(path, "model.safetensors")
  index = st + ".index.json"
  binf = os.path.join(path, "pytorch_model.bin")
  if os.path.exists(st) or os.path.exists(index):
    from safetensors.numpy import load_file
    if os.path.exists(st):
      files = [st]
    else:
      with open(index) as f:
        files = sorted({os.path.join(path, v) for v in json.load(f)["weight_map"].values()})
    out = {}
    for file in files:
      out.update(load_file(file))
  elif os.path.exists(binf):
    import torch  # only for legacy .bin checkpoints
    out = {k: v.float().numpy() for k, v in
           torch.load(binf, map_location="cpu", weights_only=True).items()}
  else:
    raise FileNotFoundError(f"{path}: no model.safetensors(.index.json) or pytorch_model.bin; "
                            "save the model with save_pretrained() first")
  return {k: np.asarray(v, np.float32) for k, v in out.items()}


def _strip(key: str) -> str:
  for p in _PREFIXES:
    if key.startswith(p) and key[len(p):].startswith(_OURS):
      return key[len(p):]
  return key


def load_hf_encoder(path: str, **overrides) -> tuple[hubert.EncoderConfig, hubert.Encoder]:
  """Builds an mlasr Encoder from a transformers HubertModel/Wav2Vec2Model directory.

  `overrides` replace EncoderConfig fields (e.g. dropout=0.0, masked_group_norm=False for
  transformers' padded-batch GroupNorm statistics). Raises ValueError listing every missing
  or mis-shaped weight.
  """
  config_path = os.path.join(path, "config.json")
  if not os.path.exists(config_path):
    raise FileNotFoundError(f"{config_path} not found: expected a transformers model directory")
  with open(config_path) as f:
    cfg = config_from_hf(json.load(f), **overrides)
  sd = {_strip(k): v for k, v in read_state_dict(path).items()}
  model = hubert.Encoder(cfg, rngs=nnx.Rngs(params=0, dropout=0))
  used, errors = set(), []

  def take(key):
    if key not in sd:
      errors.append(f"missing {key}")
      return None
    used.add(key)
    return sd[key]

  def put(var, arr, key):
    if arr is None:
      return
    if tuple(var[...].shape) != tuple(arr.shape):
      errors.append(f"{key}: checkpoint shape {arr.shape} != model shape {var[...].shape}")
      return
    var[...] = jnp.asarray(arr)

  def linear(dense, key):
    put(dense.kernel, _t(take(key + ".weight")), key + ".weight")
    put(dense.bias, take(key + ".bias"), key + ".bias")

  def norm(ln, key):
    put(ln.scale, take(key + ".weight"), key + ".weight")
    put(ln.bias, take(key + ".bias"), key + ".bias")

  fe = model.frontend
  for i in range(len(cfg.conv_dim)):
    key = f"feature_extractor.conv_layers.{i}"
    w = take(key + ".conv.weight")
    put(fe.kernels[i], None if w is None else w.transpose(2, 1, 0), key + ".conv.weight")
    if cfg.conv_bias:
      put(fe.biases[i], take(key + ".conv.bias"), key + ".conv.bias")
    if cfg.extractor_mode == "layer_norm" or i == 0:
      put(fe.norm_scales[i], take(key + ".layer_norm.weight"), key + ".layer_norm.weight")
      put(fe.norm_biases[i], take(key + ".layer_norm.bias"), key + ".layer_norm.bias")
  if cfg.feat_proj_layer_norm:
    norm(model.feature_layer_norm, "feature_projection.layer_norm")
  linear(model.projection, "feature_projection.projection")
  if "masked_spec_embed" in sd:
    put(model.mask_embedding, take("masked_spec_embed"), "masked_spec_embed")
  else:
    logging.info("%s has no masked_spec_embed (mask_time_prob=0): mask embedding stays "
                 "randomly initialised", path)

  pc = "encoder.pos_conv_embed.conv"
  if pc + ".weight_g" in sd:
    g, v = take(pc + ".weight_g"), take(pc + ".weight_v")
  else:
    g = take(pc + ".parametrizations.weight.original0")
    v = take(pc + ".parametrizations.weight.original1")
  if g is not None and v is not None:
    if g.size != v.shape[2]:
      errors.append(f"{pc}: weight norm is not over dim=2 (g shape {g.shape})")
    else:
      put(model.pos_conv.weight_g, g.reshape(-1), pc + ".weight_g")
      put(model.pos_conv.weight_v, v.transpose(2, 1, 0), pc + ".weight_v")
  put(model.pos_conv.bias, take(pc + ".bias"), pc + ".bias")
  norm(model.layer_norm, "encoder.layer_norm")

  h, d = cfg.num_heads, cfg.d_model
  for i, block in enumerate(model.layers):
    key = f"encoder.layers.{i}"
    att = block.attention
    for name in ("q", "k", "v"):
      w, b = take(f"{key}.attention.{name}_proj.weight"), take(f"{key}.attention.{name}_proj.bias")
      put(getattr(att, f"{name}_kernel"), None if w is None else w.T.reshape(d, h, d // h),
          f"{key}.attention.{name}_proj.weight")
      put(getattr(att, f"{name}_bias"), None if b is None else b.reshape(h, d // h),
          f"{key}.attention.{name}_proj.bias")
    w = take(f"{key}.attention.out_proj.weight")
    put(att.out_kernel, None if w is None else w.T.reshape(h, d // h, d),
        f"{key}.attention.out_proj.weight")
    put(att.out_bias, take(f"{key}.attention.out_proj.bias"), f"{key}.attention.out_proj.bias")
    norm(block.layer_norm, f"{key}.layer_norm")
    linear(block.feed_forward.intermediate, f"{key}.feed_forward.intermediate_dense")
    linear(block.feed_forward.output, f"{key}.feed_forward.output_dense")
    norm(block.final_layer_norm, f"{key}.final_layer_norm")

  if errors:
    raise ValueError(f"{path}: cannot load into EncoderConfig({cfg}):\n  " +
                     "\n  ".join(errors))
  ignored = sorted(set(sd) - used)
  if ignored:
    logging.info("%s: ignored %d weights not part of the encoder, e.g. %s", path,
                 len(ignored), ignored[:5])
  return cfg, model


def _t(w):
  return None if w is None else w.T

