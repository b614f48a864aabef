"""transformers Wav2Vec2 / HuBERT checkpoints into mlasr, and the weight mapping back out.

    config, encoder = load_hf_encoder("/path/to/hubert-base-ls960")       # encoder only
    imported = load_hf_ctc("/path/to/wav2vec2-xlsr-finetuned")            # whole CTC model
    write_workdir(imported, "~/mlasr_runs/xlsr")   # then mlasr.evaluate / transcribe it

    python -m mlasr.models.convert_hf --hf_dir DIR --workdir RUN [--langs eng,fra]

Reads config.json and model.safetensors (or a sharded safetensors index, or
pytorch_model.bin through torch). Checkpoints saved from task models (`HubertForCTC`,
`Wav2Vec2ForPreTraining`, ...) work with `load_hf_encoder`: the `hubert.` / `wav2vec2.`
prefix is stripped and head/quantizer weights are ignored (listed in the log). Both
weight-norm spellings of the positional conv are accepted (`weight_g/weight_v` and
`parametrizations.weight.original0/1`).

`load_hf_ctc` also brings the `lm_head`, vocab.json and tokenizer settings of a
`Wav2Vec2ForCTC` / `HubertForCTC` directory, the feature extractor's `do_normalize`, and MMS
attention adapters (`adapter_attn_dim`, one `adapter.<lang>.safetensors` per language).

Vocabulary mapping. mlasr's CTC ids are fixed: 0 blank, 1 unknown, 2 word separator, then
symbols (mlasr.data.tokenizer). A Wav2Vec2CTCTokenizer has any order, with the blank being its
pad token (`config.pad_token_id`, what transformers' CTC loss uses). Import permutes the head
rows into mlasr's order, keeping every HF token as a symbol of the same spelling; a special id
the HF vocabulary lacks (no <unk>, or no word delimiter) gets a head row that can never win
(logit `ctc.MASKED_LOGIT`). Greedy transcripts are the same as transformers' up to its final
`strip()` of leading/trailing spaces.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import logging
import os
from collections.abc import Callable, Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx

from mlasr.data import tokenizer as tokenizer_lib
from mlasr.models import adapters as adapters_lib
from mlasr.models import ctc, encoder as encoder_lib

_PREFIXES = ("hubert.", "wav2vec2.", "model.")
_OURS = ("feature_extractor.", "feature_projection.", "encoder.", "masked_spec_embed")
POS_CONV = "encoder.pos_conv_embed.conv"
MMS_ADAPTER_FILE = "adapter.{lang}.safetensors"   # transformers' WAV2VEC2_ADAPTER_SAFE_FILE
HF_ADAPTER_LN_EPS = 1e-5                          # nn.LayerNorm default in Wav2Vec2AttnAdapterLayer


def config_from_hf(hf: dict, *, allow_adapters: bool = False,
                   **overrides) -> encoder_lib.EncoderConfig:
  """Maps a transformers Hubert/Wav2Vec2 config dict to an EncoderConfig.

  allow_adapters: accept `adapter_attn_dim` (the caller loads the adapters separately).
  """
  model_type = hf.get("model_type", "?")
  if model_type not in ("hubert", "wav2vec2"):
    raise ValueError(f"model_type {model_type!r} is not supported (hubert, wav2vec2)")
  for key, want in (("hidden_act", "gelu"), ("feat_extract_activation", "gelu")):
    if hf.get(key, "gelu") != want:
      raise ValueError(f"{key}={hf[key]!r} is not supported (only 'gelu')")
  for key in ("add_adapter", "conv_pos_batch_norm"):
    if hf.get(key):
      raise ValueError(f"{key}=True is not supported by the mlasr encoder")
  if hf.get("adapter_attn_dim") and not allow_adapters:
    raise ValueError("MMS attention adapters (adapter_attn_dim) are not supported here; "
                     "use load_hf_ctc, or load the base model without adapters")
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
  return encoder_lib.EncoderConfig(**fields)


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


# -------------------------------------------------------------------------------------------
# The weight mapping, one table for both directions.
# -------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Pair:
  """One transformers tensor <-> one mlasr variable, with the layout change each way."""
  hf_key: str
  var: nnx.Variable
  from_hf: Callable[[np.ndarray], np.ndarray]
  to_hf: Callable[[np.ndarray], np.ndarray]


def _same(x):
  return x


def _transpose(x):
  return x.T


def _flip3(x):  # torch conv [out, in, K] <-> mlasr [K, in, out]
  return x.transpose(2, 1, 0)


def encoder_pairs(model: encoder_lib.Encoder) -> list[Pair]:
  """Every encoder weight with its transformers name (prefix-free, `encoder.layers.0...`)."""
  cfg = model.config
  if cfg.frontend != "waveform" or cfg.conv_module_kernel or not cfg.pos_conv_kernel:
    raise ValueError(unsupported_by_transformers(cfg))
  pairs = []

  def linear(dense, key):
    pairs.append(Pair(key + ".weight", dense.kernel, _transpose, _transpose))
    pairs.append(Pair(key + ".bias", dense.bias, _same, _same))

  def norm(scale, bias, key):
    pairs.append(Pair(key + ".weight", scale, _same, _same))
    pairs.append(Pair(key + ".bias", bias, _same, _same))

  fe = model.frontend
  for i in range(len(cfg.conv_dim)):
    key = f"feature_extractor.conv_layers.{i}"
    pairs.append(Pair(key + ".conv.weight", fe.kernels[i], _flip3, _flip3))
    if cfg.conv_bias:
      pairs.append(Pair(key + ".conv.bias", fe.biases[i], _same, _same))
    if cfg.extractor_mode == "layer_norm" or i == 0:
      norm(fe.norm_scales[i], fe.norm_biases[i], key + ".layer_norm")
  if cfg.feat_proj_layer_norm:
    norm(model.feature_layer_norm.scale, model.feature_layer_norm.bias,
         "feature_projection.layer_norm")
  linear(model.projection, "feature_projection.projection")
  pairs.append(Pair("masked_spec_embed", model.mask_embedding, _same, _same))
  k = cfg.pos_conv_kernel
  pairs.append(Pair(POS_CONV + ".parametrizations.weight.original0", model.pos_conv.weight_g,
                    lambda g: g.reshape(-1), lambda g: g.reshape(1, 1, k)))
  pairs.append(Pair(POS_CONV + ".parametrizations.weight.original1", model.pos_conv.weight_v,
                    _flip3, _flip3))
  pairs.append(Pair(POS_CONV + ".bias", model.pos_conv.bias, _same, _same))
  norm(model.layer_norm.scale, model.layer_norm.bias, "encoder.layer_norm")

  h, d = cfg.num_heads, cfg.d_model
  for i, block in enumerate(model.layers):
    key = f"encoder.layers.{i}"
    att = block.attention
    for name in ("q", "k", "v"):
      pairs.append(Pair(f"{key}.attention.{name}_proj.weight", getattr(att, f"{name}_kernel"),
                        lambda w: w.T.reshape(d, h, d // h), lambda w: w.reshape(d, d).T))
      pairs.append(Pair(f"{key}.attention.{name}_proj.bias", getattr(att, f"{name}_bias"),
                        lambda b: b.reshape(h, d // h), lambda b: b.reshape(-1)))
    pairs.append(Pair(f"{key}.attention.out_proj.weight", att.out_kernel,
                      lambda w: w.T.reshape(h, d // h, d), lambda w: w.reshape(d, d).T))
    pairs.append(Pair(f"{key}.attention.out_proj.bias", att.out_bias, _same, _same))
    norm(block.layer_norm.scale, block.layer_norm.bias, f"{key}.layer_norm")
    linear(block.feed_forward.intermediate, f"{key}.feed_forward.intermediate_dense")
    linear(block.feed_forward.output, f"{key}.feed_forward.output_dense")
    norm(block.final_layer_norm.scale, block.final_layer_norm.bias, f"{key}.final_layer_norm")
  return pairs


def adapter_pairs(adapter: adapters_lib.Adapter, block: int, prefix: str = "") -> list[Pair]:
  """One mlasr adapter <-> transformers' Wav2Vec2AttnAdapterLayer after block `block`."""
  key = f"{prefix}encoder.layers.{block}.adapter_layer"
  return [Pair(f"{key}.norm.weight", adapter.layer_norm.scale, _same, _same),
          Pair(f"{key}.norm.bias", adapter.layer_norm.bias, _same, _same),
          Pair(f"{key}.linear_1.weight", adapter.down.kernel, _transpose, _transpose),
          Pair(f"{key}.linear_1.bias", adapter.down.bias, _same, _same),
          Pair(f"{key}.linear_2.weight", adapter.up.kernel, _transpose, _transpose),
          Pair(f"{key}.linear_2.bias", adapter.up.bias, _same, _same)]


def _load_pairs(pairs: Sequence[Pair], sd: dict, errors: list, used: set,
                optional: Sequence[str] = ()) -> None:
  for p in pairs:
    if p.hf_key not in sd:
      if p.hf_key not in optional:
        errors.append(f"missing {p.hf_key}")
      continue
    used.add(p.hf_key)
    value = p.from_hf(sd[p.hf_key])
    if tuple(p.var[...].shape) != tuple(value.shape):
      errors.append(f"{p.hf_key}: checkpoint shape {sd[p.hf_key].shape} maps to "
                    f"{value.shape}, model has {tuple(p.var[...].shape)}")
      continue
    p.var[...] = jnp.asarray(value)


def _canonical_pos_conv(sd: dict, errors: list) -> None:
  """Legacy weight_g/weight_v names -> parametrizations names; checks the norm dimension."""
  for old, new in (("weight_g", "original0"), ("weight_v", "original1")):
    if f"{POS_CONV}.{old}" in sd:
      sd[f"{POS_CONV}.parametrizations.weight.{new}"] = sd.pop(f"{POS_CONV}.{old}")
  g = sd.get(f"{POS_CONV}.parametrizations.weight.original0")
  v = sd.get(f"{POS_CONV}.parametrizations.weight.original1")
  if g is not None and v is not None and g.size != v.shape[2]:
    errors.append(f"{POS_CONV}: weight norm is not over dim=2 (g shape {g.shape})")
    sd.pop(f"{POS_CONV}.parametrizations.weight.original0")


def _fill_encoder(model: encoder_lib.Encoder, sd: dict, path: str, errors: list, used: set):
  _canonical_pos_conv(sd, errors)
  _load_pairs(encoder_pairs(model), sd, errors, used, optional=("masked_spec_embed",))
  if "masked_spec_embed" not in sd:
    logging.info("%s has no masked_spec_embed (mask_time_prob=0): mask embedding stays "
                 "randomly initialised", path)


def _read_hf_config(path: str) -> dict:
  config_path = os.path.join(path, "config.json")
  if not os.path.exists(config_path):
    raise FileNotFoundError(f"{config_path} not found: expected a transformers model directory")
  with open(config_path) as f:
    return json.load(f)


def load_hf_encoder(path: str, **overrides) -> tuple[encoder_lib.EncoderConfig, encoder_lib.Encoder]:
  """Builds an mlasr Encoder from a transformers HubertModel/Wav2Vec2Model directory.

  `overrides` replace EncoderConfig fields (e.g. dropout=0.0, masked_group_norm=False for
  transformers' padded-batch GroupNorm statistics). Raises ValueError listing every missing
  or mis-shaped weight.
  """
  cfg = config_from_hf(_read_hf_config(path), **overrides)
  sd = {_strip(k): v for k, v in read_state_dict(path).items()}
  model = encoder_lib.Encoder(cfg, rngs=nnx.Rngs(params=0, dropout=0))
  used, errors = set(), []
  _fill_encoder(model, sd, path, errors, used)
  if errors:
    raise ValueError(f"{path}: cannot load into EncoderConfig({cfg}):\n  " +
                     "\n  ".join(errors))
  ignored = sorted(set(sd) - used)
  if ignored:
    logging.info("%s: ignored %d weights not part of the encoder, e.g. %s", path,
                 len(ignored), ignored[:5])
  return cfg, model


# -------------------------------------------------------------------------------------------
# Vocabularies: Wav2Vec2CTCTokenizer <-> mlasr CharTokenizer.
# -------------------------------------------------------------------------------------------
@dataclasses.dataclass
class HFVocab:
  """vocab.json and the special tokens of a Wav2Vec2CTCTokenizer directory."""
  vocabs: dict[str | None, dict[str, int]]  # None = one flat vocabulary; else per language
  pad: str
  unk: str
  delimiter: str
  do_lower_case: bool = False


def _token(value, default: str) -> str:
  if isinstance(value, dict):  # AddedToken serialised as {"content": ...}
    return value.get("content", default)
  return default if value is None else str(value)


def read_hf_vocab(path: str) -> HFVocab:
  vocab_path = os.path.join(path, "vocab.json")
  if not os.path.exists(vocab_path):
    raise FileNotFoundError(f"{vocab_path} not found: a CTC model directory needs the "
                            "tokenizer saved beside it (Wav2Vec2CTCTokenizer.save_pretrained)")
  with open(vocab_path, encoding="utf-8") as f:
    vocab = json.load(f)
  settings = {}
  tc = os.path.join(path, "tokenizer_config.json")
  if os.path.exists(tc):
    with open(tc, encoding="utf-8") as f:
      settings = json.load(f)
  # MMS checkpoints keep one table per language: {"eng": {"a": 5, ...}, "fra": {...}}.
  nested = bool(vocab) and all(isinstance(v, dict) for v in vocab.values())
  return HFVocab(
      vocabs={k: dict(v) for k, v in vocab.items()} if nested else {None: dict(vocab)},
      pad=_token(settings.get("pad_token"), "<pad>"),
      unk=_token(settings.get("unk_token"), "<unk>"),
      delimiter=_token(settings.get("word_delimiter_token"), "|"),
      do_lower_case=bool(settings.get("do_lower_case", False)))


def tokenizer_from_hf(vocab: HFVocab, blank_id: int
                      ) -> tuple[tokenizer_lib.CharTokenizer, dict[str | None, np.ndarray]]:
  """(CharTokenizer, rows): rows[lang][j] = the HF id of mlasr id j, -1 where HF has none."""
  tables, rows = {}, {}
  for lang, table in vocab.vocabs.items():
    by_id = {i: t for t, i in table.items()}
    if blank_id not in by_id:
      raise ValueError(f"vocab.json{f' [{lang}]' if lang else ''} has no token with the blank "
                       f"id pad_token_id={blank_id}")
    order = [(by_id[blank_id], blank_id)]
    for special in (vocab.unk, vocab.delimiter):
      order.append((special, table.get(special, -1)))
    taken = {blank_id, table.get(vocab.unk, -1), table.get(vocab.delimiter, -1)}
    order += [(by_id[i], i) for i in sorted(by_id) if i not in taken]
    if vocab.delimiter == by_id[blank_id] or vocab.unk == by_id[blank_id]:
      raise ValueError(f"the pad/blank token {by_id[blank_id]!r} is also the unk or word "
                       "delimiter token; mlasr needs three distinct ids")
    key = "*" if lang is None else lang
    tables[key] = [t for t, _ in order]
    rows[lang] = np.array([i for _, i in order])
  chars = {lang: set("".join(t for t in syms[3:] if len(t) == 1))
           for lang, syms in tables.items() if lang != "*"}
  tok = tokenizer_lib.CharTokenizer(tables, space_symbol=vocab.delimiter,
                                    lang_chars=tokenizer_lib._chars_by_lang(chars))  # pylint: disable=protected-access
  return tok, rows


def permute_head(weight: np.ndarray, bias: np.ndarray, rows: np.ndarray, size: int
                 ) -> tuple[np.ndarray, np.ndarray]:
  """HF lm_head [V_hf, D], [V_hf] -> mlasr kernel [D, size], bias [size] in mlasr id order.

  Ids without an HF row (and padding up to `size`) get weight 0 and bias MASKED_LOGIT, so
  they are never the argmax and carry no probability mass.
  """
  kernel = np.zeros((weight.shape[1], size), np.float32)
  out_bias = np.full((size,), ctc.MASKED_LOGIT, np.float32)
  have = np.flatnonzero(rows >= 0)
  kernel[:, have] = weight[rows[have]].T
  out_bias[have] = bias[rows[have]]
  return kernel, out_bias


# -------------------------------------------------------------------------------------------
# Whole CTC models.
# -------------------------------------------------------------------------------------------
@dataclasses.dataclass
class HFImport:
  """A transformers CTC directory as an mlasr model, tokenizer and languages."""
  model: ctc.CTCModel
  tokenizer: tokenizer_lib.CharTokenizer
  langs: tuple[str, ...]          # lang_id order; () for a single-language model
  encoder_config: encoder_lib.EncoderConfig
  adapter_dim: int                # MMS adapter bottleneck (0 = none)
  source: str


def _hf_adapter_dim(hf: dict) -> int:
  dim = int(hf.get("adapter_attn_dim") or 0)
  if dim and not hf.get("do_stable_layer_norm", False):
    # transformers only builds Wav2Vec2AttnAdapterLayer inside the stable-layer-norm
    # (pre-LN) layers: a post-LN config with adapter_attn_dim has no adapters at all.
    return 0
  return dim


def load_hf_ctc(path: str, langs: Sequence[str] | None = None, **overrides) -> HFImport:
  """Builds an mlasr CTCModel (+ CharTokenizer) from a Wav2Vec2ForCTC / HubertForCTC dir.

  For MMS-style models (adapter_attn_dim set) every `adapter.<lang>.safetensors` in `path`
  (or those of `langs`) becomes a per-language adapter + head; with no such file the base
  weights' adapter is imported as the tokenizer's target language. `overrides` replace
  EncoderConfig fields (masked_group_norm=False reproduces transformers on padded batches).
  """
  path = os.path.expanduser(path)
  hf = _read_hf_config(path)
  adapter_dim = _hf_adapter_dim(hf)
  fe_path = os.path.join(path, "preprocessor_config.json")
  normalize = False
  if os.path.exists(fe_path):
    with open(fe_path) as f:
      normalize = bool(json.load(f).get("do_normalize", False))
  cfg = config_from_hf(hf, allow_adapters=True, **{"normalize_waveform": normalize,
                                                   **overrides})
  if adapter_dim and abs(cfg.layer_norm_eps - HF_ADAPTER_LN_EPS) > 1e-12:
    raise ValueError(f"layer_norm_eps={cfg.layer_norm_eps}: mlasr adapters use the encoder's "
                     f"eps, transformers' adapter LayerNorm always {HF_ADAPTER_LN_EPS}")
  vocab = read_hf_vocab(path)
  blank = int(hf.get("pad_token_id", 0))
  tok, rows = tokenizer_from_hf(vocab, blank)
  sd = {_strip(k): v for k, v in read_state_dict(path).items()}
  if "lm_head.weight" not in sd:
    raise ValueError(f"{path} has no lm_head: not a *ForCTC checkpoint (use load_hf_encoder)")

  # Which languages, and the adapter + head weights of each.
  per_lang_weights: dict[str, dict] = {}
  if adapter_dim:
    files = {os.path.basename(f)[len("adapter."):-len(".safetensors")]: f
             for f in glob.glob(os.path.join(path, MMS_ADAPTER_FILE.format(lang="*")))}
    wanted = list(langs) if langs else sorted(files)
    from safetensors.numpy import load_file
    for lang in wanted:
      if lang in files:
        per_lang_weights[lang] = {_strip(k): np.asarray(v, np.float32)
                                  for k, v in load_file(files[lang]).items()}
    if not per_lang_weights:  # the base checkpoint's own adapter (MMS ships "eng" in it)
      if langs and len(langs) != 1:
        raise FileNotFoundError(f"no {MMS_ADAPTER_FILE.format(lang='<lang>')} in {path} "
                                f"for {list(langs)}")
      lang = (list(langs) or [hf.get("target_lang") or _target_lang(path) or "base"])[0]
      per_lang_weights[lang] = sd
    if missing := [l for l in wanted if l not in per_lang_weights]:
      raise FileNotFoundError(f"{path}: no adapter file for {missing}")
  elif langs:
    raise ValueError(f"{path} has no MMS adapters (adapter_attn_dim); --langs applies to "
                     "adapter checkpoints only")
  model_langs = tuple(per_lang_weights)
  if vocab.vocabs.keys() != {None}:  # per-language tables (MMS)
    if missing := [l for l in model_langs if l not in vocab.vocabs]:
      raise ValueError(f"vocab.json has no table for {missing}")

  per_language_head = bool(adapter_dim)
  output_mask = tok.output_mask(model_langs) if tok.per_language else None
  model = ctc.CTCModel(cfg, tok.vocab_size, 0.0, rngs=nnx.Rngs(params=0, dropout=0),
                       langs=model_langs, adapter_bottleneck=adapter_dim,
                       head="per_language" if per_language_head else "shared",
                       output_mask=output_mask)
  used, errors = set(), []
  _fill_encoder(model.encoder, sd, path, errors, used)
  if per_language_head:
    for lang, weights in per_lang_weights.items():
      lang_rows = rows[lang if tok.per_language else None]
      adapters = model.adapters.per_lang[lang].layers
      for slot, block in enumerate(model.adapters.blocks):
        _load_pairs(adapter_pairs(adapters[slot], block), weights, errors, set())
      kernel, bias = permute_head(weights["lm_head.weight"], weights["lm_head.bias"],
                                  lang_rows, tok.vocab_size)
      model.heads.per_lang[lang].kernel[...] = jnp.asarray(kernel)
      model.heads.per_lang[lang].bias[...] = jnp.asarray(bias)
    used |= {k for k in sd if ".adapter_layer." in k}
  else:
    kernel, bias = permute_head(sd["lm_head.weight"], sd["lm_head.bias"], rows[None],
                                tok.vocab_size)
    model.head.kernel[...] = jnp.asarray(kernel)
    model.head.bias[...] = jnp.asarray(bias)
  used |= {"lm_head.weight", "lm_head.bias"}
  if errors:
    raise ValueError(f"{path}: cannot load into an mlasr CTC model:\n  " + "\n  ".join(errors))
  if ignored := sorted(set(sd) - used):
    logging.info("%s: ignored %d weights, e.g. %s", path, len(ignored), ignored[:5])
  if vocab.do_lower_case:
    logging.warning("%s: the tokenizer lower-cases its input (do_lower_case); mlasr "
                    "transcripts are in the vocabulary's case", path)
  return HFImport(model=model, tokenizer=tok, langs=model_langs, encoder_config=cfg,
                  adapter_dim=adapter_dim, source=os.path.abspath(path))


def _target_lang(path: str) -> str | None:
  tc = os.path.join(path, "tokenizer_config.json")
  if os.path.exists(tc):
    with open(tc, encoding="utf-8") as f:
      return json.load(f).get("target_lang")
  return None


def write_workdir(imported: HFImport, workdir: str, lang: str = "und") -> str:
  """Writes an mlasr run directory (config.json, tokenizer/, checkpoint at step 0).

  `mlasr.evaluate.restore_model(workdir)` then rebuilds exactly `imported.model`, so every
  mlasr tool that takes --workdir (evaluate, transcribe, export) works on the checkpoint.
  `lang` names the language of a single-language model (mlasr tools select by language;
  the model has no per-language parts, so any code works, ISO 639 "und" by default).
  """
  from mlasr import checkpoint as ckpt_lib  # pylint: disable=import-outside-toplevel
  from mlasr import config_lib  # pylint: disable=import-outside-toplevel
  workdir = os.path.expanduser(workdir)
  config = config_lib.base_config("ctc")
  fields = dataclasses.asdict(imported.encoder_config)
  config.model.encoder = dict(preset="base", **fields)
  config.model.final_dropout = 0.0
  config.model.adapters = dict(bottleneck=imported.adapter_dim, blocks=None)
  config.model.head = "per_language" if imported.adapter_dim else "shared"
  config.model.output_mask = imported.tokenizer.per_language
  config.data.langs = tuple(imported.langs) or (lang,)
  config.imported_from = imported.source
  config_lib.save_config(config, workdir)
  imported.tokenizer.save(os.path.join(workdir, "tokenizer"))
  checkpointer = ckpt_lib.Checkpointer(workdir)
  params = nnx.to_pure_dict(nnx.state(imported.model, nnx.Param))
  checkpointer.save(0, {"params": params}, {}, {"imported_from": imported.source})
  checkpointer.wait()
  checkpointer.close()
  return workdir


def unsupported_by_transformers(cfg: encoder_lib.EncoderConfig) -> str:
  """Why transformers' Wav2Vec2/HuBERT cannot hold this encoder ('' when it can)."""
  reasons = []
  if cfg.frontend != "waveform":
    reasons.append(f"a {cfg.frontend} front end (transformers' Wav2Vec2/HuBERT only have the "
                   "7-layer waveform conv stack)")
  if cfg.conv_module_kernel:
    reasons.append("conformer convolution modules in its blocks (conv_module_kernel="
                   f"{cfg.conv_module_kernel}; Wav2Vec2ConformerModel has them but with "
                   "another block layout, relative attention and a different order)")
  if not cfg.pos_conv_kernel:
    reasons.append("no convolutional positional embedding (pos_conv_kernel=0)")
  if not reasons:
    return ""
  return ("transformers cannot express this encoder: it has " + "; ".join(reasons) +
          ". Export it with --to onnx instead.")


def main(argv):
  del argv
  from absl import flags  # pylint: disable=import-outside-toplevel
  f = flags.FLAGS
  langs = [l for l in f.langs.split(",") if l] or None
  imported = load_hf_ctc(f.hf_dir, langs)
  write_workdir(imported, f.workdir, f.lang)
  print(f"Imported {f.hf_dir} ({imported.tokenizer.vocab_size} outputs, languages "
        f"{list(imported.langs) or 'single'}) into {f.workdir}")


if __name__ == "__main__":
  from absl import app, flags  # pylint: disable=import-outside-toplevel
  flags.DEFINE_string("hf_dir", None, "transformers Wav2Vec2ForCTC / HubertForCTC directory.")
  flags.DEFINE_string("workdir", None, "mlasr run directory to write.")
  flags.DEFINE_string("langs", "", "MMS adapter languages to import (default: every "
                      "adapter.<lang>.safetensors in --hf_dir).")
  flags.DEFINE_string("lang", "und", "Language code of a single-language (non-MMS) model.")
  flags.mark_flags_as_required(["hf_dir", "workdir"])
  app.run(main)
