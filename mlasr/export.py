r"""Hands a trained mlasr CTC model to people outside JAX.

  python -m mlasr.export --workdir RUN --to transformers --out DIR [--lang xx]
  python -m mlasr.export --workdir RUN --to onnx --out DIR [--lang xx]
  python -m mlasr.export --workdir RUN --to mms_adapters --out DIR   # adapter.<lang>.safetensors

transformers: a `Wav2Vec2ForCTC` (or `HubertForCTC` for encoders without the feature
LayerNorm) directory with model.safetensors, config.json, vocab.json, tokenizer and
feature-extractor files, loadable with `from_pretrained` and
`pipeline("automatic-speech-recognition", model=DIR)`. Only waveform encoders without
conformer conv modules have a transformers class; the others raise ValueError saying why.
Models with MMS adapters become a Wav2Vec2ForCTC with `adapter_attn_dim` plus one
`adapter.<lang>.safetensors` per language (`model.load_adapter(lang)`).

What carries over exactly, and what cannot:
- ids: mlasr's (0 blank = the HF pad token, 1 unk, 2 word delimiter '|', then symbols) are
  written as they are; `config.pad_token_id = 0`, so transformers' CTC loss uses the same blank.
- A per-language output mask is folded into the head (weight 0, bias -1e9 = ctc.MASKED_LOGIT:
  the same logits mlasr computes). With per-language vocabularies the head keeps only the
  language's own ids; vocab.json is then nested per language, as MMS ships it.
- An unknown id decodes as "<unk>" in transformers and as "⁇" in mlasr; transformers strips
  leading/trailing spaces of the transcript, mlasr does not.
- transformers' GroupNorm ("group" feature extractors) takes statistics over padding; mlasr's
  `masked_group_norm=True` does not. Single clips (what the pipeline runs) are identical;
  padded batches are identical only for models with masked_group_norm=False. The feature
  extractor is therefore written with return_attention_mask=False for "group" models, as
  transformers' own group-norm checkpoints are.
- SentencePiece vocabularies cannot be written: Wav2Vec2CTCTokenizer turns only the
  delimiter token into a space, so word-initial pieces ("▁the") cannot be expressed.
- Per-language heads without adapters: transformers has one head, so the base model gets the
  --lang head (load_adapter needs adapter_attn_dim).

onnx: see mlasr/models/torch_port.py (the model re-expressed in torch, exported with
torch.onnx.export; inputs audio [B, T] float32 and audio_mask [B, T] int64 (and lang_id [B]
for per-language models), outputs logits [B, F, V] and frame_mask [B, F], batch and length
dynamic).
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from mlasr.data import tokenizer as tokenizer_lib
from mlasr.models import convert_hf, ctc

SAMPLE_RATE = 16000


def _np(var) -> np.ndarray:
  return np.asarray(var[...], np.float32)


def _choose_lang(model, lang: str | None) -> str | None:
  langs = tuple(getattr(model, "langs", ()))
  per_language = (model.adapters is not None or model.heads is not None or
                  model.output_mask is not None)
  if not per_language:
    return lang or (langs[0] if len(langs) == 1 else None)
  if lang is None:
    lang = langs[0]
  if lang not in langs:
    raise ValueError(f"--lang={lang!r}: the model has {list(langs)}")
  return lang


def _output_allowed(model, lang: str | None, vocab_size: int) -> np.ndarray:
  if model.output_mask is None or lang is None:
    return np.ones(vocab_size, bool)
  shape, bits = model.output_mask
  allowed = np.unpackbits(np.frombuffer(bits, np.uint8))[:np.prod(shape)].reshape(shape)
  return allowed[list(model.langs).index(lang)].astype(bool)


def head_for(model, tokenizer, lang: str | None) -> tuple[np.ndarray, np.ndarray]:
  """(HF lm_head weight [V_lang, D], bias [V_lang]) of one language, output mask folded in."""
  if model.heads is not None:
    dense = model.heads.per_lang[lang]
    kernel, bias = _np(dense.kernel), _np(dense.bias)
  else:
    kernel, bias = _np(model.head.kernel), _np(model.head.bias)
  allowed = _output_allowed(model, lang, kernel.shape[1])
  kernel = np.where(allowed[None, :], kernel, 0.0)
  bias = np.where(allowed, bias, ctc.MASKED_LOGIT).astype(np.float32)
  size = _table_size(tokenizer, lang, kernel.shape[1])
  return np.ascontiguousarray(kernel[:, :size].T), np.ascontiguousarray(bias[:size])


def _table_size(tokenizer, lang, head_size) -> int:
  if isinstance(tokenizer, tokenizer_lib.CharTokenizer) and tokenizer.per_language:
    return tokenizer.lang_vocab_size(lang)
  return head_size


def hf_vocab(tokenizer, langs: Sequence[str], lang: str | None) -> dict:
  """vocab.json content: {symbol: id}, or {lang: {symbol: id}} for per-language tables."""
  if not isinstance(tokenizer, tokenizer_lib.CharTokenizer):
    raise ValueError(
        "transformers' Wav2Vec2CTCTokenizer cannot express a SentencePiece vocabulary: it "
        "turns only the word-delimiter token into a space, so word-initial pieces ('▁the') "
        "have no spelling. Export with --to onnx, or train with a character tokenizer.")
  tables = {}
  for l in (langs if tokenizer.per_language else [lang or "*"]):
    syms = tokenizer.symbols(l)
    if len(set(syms)) != len(syms):
      raise ValueError(f"the {l!r} vocabulary repeats a symbol; vocab.json needs unique keys")
    tables[l] = {s: i for i, s in enumerate(syms)}
  return tables if tokenizer.per_language else next(iter(tables.values()))


def hf_config(model, vocab_size: int) -> dict:
  """transformers config.json fields of a Wav2Vec2ForCTC / HubertForCTC for this model."""
  cfg = model.encoder.config
  if reason := convert_hf.unsupported_by_transformers(cfg):
    raise ValueError(reason)
  hubert = not cfg.feat_proj_layer_norm
  if model.adapters is not None:
    if hubert or not cfg.layer_norm_first:
      raise ValueError(
          "transformers has MMS attention adapters only in Wav2Vec2's stable-layer-norm "
          "(pre-LN) layers; this model has adapters on a "
          f"{'HuBERT-style (no feature LayerNorm)' if hubert else 'post-LN'} encoder.")
    if abs(cfg.layer_norm_eps - convert_hf.HF_ADAPTER_LN_EPS) > 1e-12:
      raise ValueError(f"layer_norm_eps={cfg.layer_norm_eps}: transformers' adapter "
                       f"LayerNorm is fixed at {convert_hf.HF_ADAPTER_LN_EPS}")
  out = dict(
      model_type="hubert" if hubert else "wav2vec2",
      architectures=["HubertForCTC" if hubert else "Wav2Vec2ForCTC"],
      vocab_size=int(vocab_size), pad_token_id=tokenizer_lib.BLANK_ID,
      hidden_size=cfg.d_model, num_hidden_layers=cfg.num_layers,
      num_attention_heads=cfg.num_heads, intermediate_size=cfg.ffn_dim,
      hidden_act="gelu", feat_extract_activation="gelu",
      conv_dim=list(cfg.conv_dim), conv_kernel=list(cfg.conv_kernel),
      conv_stride=list(cfg.conv_stride), conv_bias=cfg.conv_bias,
      feat_extract_norm="group" if cfg.extractor_mode == "default" else "layer",
      do_stable_layer_norm=cfg.layer_norm_first, layer_norm_eps=cfg.layer_norm_eps,
      num_conv_pos_embeddings=cfg.pos_conv_kernel,
      num_conv_pos_embedding_groups=cfg.pos_conv_groups,
      hidden_dropout=cfg.dropout, attention_dropout=cfg.attention_dropout,
      activation_dropout=cfg.activation_dropout, feat_proj_dropout=cfg.feat_proj_dropout,
      layerdrop=cfg.layerdrop, final_dropout=0.0, ctc_loss_reduction="mean",
      ctc_zero_infinity=True,
      adapter_attn_dim=(model.adapters.per_lang[model.langs[0]].layers[0].down.kernel.shape[1]
                        if model.adapters is not None else None))
  if hubert:
    out["feat_proj_layer_norm"] = False
  return out


def adapter_tensors(model, tokenizer, lang: str, prefix: str = "wav2vec2.") -> dict:
  """One language's adapters + head under transformers' names (`_get_adapters()` keys).

  Blocks mlasr does not adapt get a zero adapter (linear_2 = 0): the identity, as in mlasr.
  """
  out = {}
  cfg = model.encoder.config
  for block in range(cfg.num_layers):
    if block in model.adapters.blocks:
      adapter = model.adapters.per_lang[lang].layers[model.adapters.blocks.index(block)]
      for p in convert_hf.adapter_pairs(adapter, block, prefix):
        out[p.hf_key] = p.to_hf(_np(p.var))
    else:
      dim = model.adapters.per_lang[lang].layers[0].down.kernel.shape[1]
      key = f"{prefix}encoder.layers.{block}.adapter_layer"
      d = cfg.d_model
      out.update({f"{key}.norm.weight": np.ones(d), f"{key}.norm.bias": np.zeros(d),
                  f"{key}.linear_1.weight": np.zeros((dim, d)),
                  f"{key}.linear_1.bias": np.zeros(dim),
                  f"{key}.linear_2.weight": np.zeros((d, dim)),
                  f"{key}.linear_2.bias": np.zeros(d)})
  weight, bias = head_for(model, tokenizer, lang)
  out["lm_head.weight"], out["lm_head.bias"] = weight, bias
  return {k: np.ascontiguousarray(v, np.float32) for k, v in out.items()}


def write_mms_adapters(model, tokenizer, out_dir: str, langs: Sequence[str] | None = None
                       ) -> list[str]:
  """adapter.<lang>.safetensors for each language, loadable by Wav2Vec2ForCTC.load_adapter."""
  from safetensors.numpy import save_file  # pylint: disable=import-outside-toplevel
  if model.adapters is None:
    raise ValueError("this model has no per-language adapters (config.model.adapters)")
  hf_config(model, 1)  # raises if transformers cannot hold these adapters
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  for lang in langs or model.langs:
    path = os.path.join(out_dir, convert_hf.MMS_ADAPTER_FILE.format(lang=lang))
    save_file(adapter_tensors(model, tokenizer, lang), path)
    paths.append(path)
  return paths


def load_mms_adapter(model, tokenizer, path: str, lang: str,
                     vocab: dict[str, int] | None = None) -> None:
  """Loads an MMS `adapter.<xx>.safetensors` (transformers names) into `lang`'s slot, in place.

  The file carries no vocabulary of its own: its head rows follow the base model's
  vocab.json table for the language. Pass that table as `vocab` ({token: HF id}) and the rows
  are permuted into mlasr's ids by symbol; without it the rows must already be in mlasr's id
  order (files written by `write_mms_adapters`).
  """
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel
  if model.adapters is None or lang not in model.langs:
    raise ValueError(f"the model has no adapter slot for {lang!r} (languages "
                     f"{list(getattr(model, 'langs', ()))}, adapters "
                     f"{'on' if model.adapters is not None else 'off'})")
  sd = {convert_hf._strip(k): np.asarray(v, np.float32)  # pylint: disable=protected-access
        for k, v in load_file(path).items()}
  errors = []
  adapters = model.adapters.per_lang[lang].layers
  for slot, block in enumerate(model.adapters.blocks):
    convert_hf._load_pairs(convert_hf.adapter_pairs(adapters[slot], block), sd, errors,  # pylint: disable=protected-access
                           set())
  weight, bias = sd.get("lm_head.weight"), sd.get("lm_head.bias")
  if weight is None or bias is None:
    errors.append("missing lm_head.weight / lm_head.bias")
  elif model.heads is None:
    errors.append("the model has one shared head; an MMS adapter brings a per-language head "
                  "(train with config.model.head='per_language')")
  else:
    size = _table_size(tokenizer, lang, model.heads.per_lang[lang].kernel.shape[1])
    rows = (np.arange(size) if vocab is None else
            np.array([vocab.get(s, -1) for s in tokenizer.symbols(lang)]))
    if vocab is not None and (missing := sorted(set(vocab) - set(tokenizer.symbols(lang)))):
      errors.append(f"tokens {missing} of the file's vocabulary are not in mlasr's {lang!r} "
                    "vocabulary")
    elif weight.shape[0] != (size if vocab is None else len(vocab)):
      errors.append(f"lm_head has {weight.shape[0]} outputs, the {lang!r} vocabulary {size}")
    else:
      kernel, full_bias = convert_hf.permute_head(weight, bias, rows,
                                                  model.heads.per_lang[lang].kernel.shape[1])
      model.heads.per_lang[lang].kernel[...] = jnp.asarray(kernel)
      model.heads.per_lang[lang].bias[...] = jnp.asarray(full_bias)
  if errors:
    raise ValueError(f"{path} does not fit language {lang!r}:\n  " + "\n  ".join(errors))


def to_transformers(model, tokenizer, out_dir: str, lang: str | None = None) -> str:
  """Writes a Wav2Vec2ForCTC / HubertForCTC directory; returns out_dir."""
  from safetensors.numpy import save_file  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  lang = _choose_lang(model, lang)
  weight, bias = head_for(model, tokenizer, lang)
  config = hf_config(model, weight.shape[0])
  vocab = hf_vocab(tokenizer, model.langs, lang)
  prefix = "hubert." if config["model_type"] == "hubert" else "wav2vec2."
  tensors = {prefix + p.hf_key: p.to_hf(_np(p.var))
             for p in convert_hf.encoder_pairs(model.encoder)}
  tensors["lm_head.weight"], tensors["lm_head.bias"] = weight, bias
  if model.adapters is not None:
    tensors.update(adapter_tensors(model, tokenizer, lang, prefix))
  os.makedirs(out_dir, exist_ok=True)
  save_file({k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()},
            os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
  cls = transformers.HubertConfig if config["model_type"] == "hubert" else \
      transformers.Wav2Vec2Config
  fields = {k: v for k, v in config.items() if k not in ("model_type", "architectures")}
  hf_cfg = cls(**fields)
  hf_cfg.architectures = config["architectures"]
  hf_cfg.save_pretrained(out_dir)
  if model.adapters is not None:
    write_mms_adapters(model, tokenizer, out_dir)

  vocab_path = os.path.join(out_dir, "vocab.json")
  with open(vocab_path, "w", encoding="utf-8") as f:
    json.dump(vocab, f, ensure_ascii=False, indent=1)
  symbols = tokenizer.symbols(lang or "*")
  hf_tok = transformers.Wav2Vec2CTCTokenizer(
      vocab_path, pad_token=symbols[tokenizer_lib.BLANK_ID],
      unk_token=symbols[tokenizer_lib.UNK_ID], word_delimiter_token=tokenizer.space_symbol,
      bos_token=None, eos_token=None, do_lower_case=False,
      target_lang=lang if tokenizer.per_language else None,
      # " ." -> "." style clean-up would change transcripts that mlasr writes verbatim.
      clean_up_tokenization_spaces=False)
  group_norm = model.encoder.config.extractor_mode == "default"
  fe = transformers.Wav2Vec2FeatureExtractor(
      feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0,
      do_normalize=model.encoder.config.normalize_waveform,
      return_attention_mask=not group_norm)
  transformers.Wav2Vec2Processor(feature_extractor=fe, tokenizer=hf_tok).save_pretrained(out_dir)
  # preprocessor_config.json on its own too: transformers 5 folds it into
  # processor_config.json, which 4.x's AutoFeatureExtractor does not read.
  fe.save_pretrained(out_dir)
  # save_pretrained rewrites vocab.json; for nested vocabularies keep every language's table.
  with open(vocab_path, "w", encoding="utf-8") as f:
    json.dump(vocab, f, ensure_ascii=False, indent=1)
  return out_dir


def to_onnx(model, out_path: str, lang: str | None = None, opset: int = 17) -> str:
  """Writes the model as ONNX (dynamic batch and length); returns the path."""
  from mlasr.models import torch_port  # pylint: disable=import-outside-toplevel
  return torch_port.export_onnx(model, out_path, opset=opset)


def main(argv):
  del argv
  from absl import flags  # pylint: disable=import-outside-toplevel
  from mlasr import evaluate  # pylint: disable=import-outside-toplevel
  f = flags.FLAGS
  config, tokenizer, model, step = evaluate.restore_model(f.workdir, f.step)
  if config.task != "ctc":
    raise ValueError(f"--workdir {f.workdir} is a {config.task!r} run; only CTC models export")
  lang = f.lang or None
  if f.to == "transformers":
    to_transformers(model, tokenizer, f.out, lang)
    print(f"Wrote a transformers {hf_config(model, 1)['architectures'][0]} (step {step}) to "
          f"{f.out}")
  elif f.to == "mms_adapters":
    paths = write_mms_adapters(model, tokenizer, f.out)
    print(f"Wrote {len(paths)} adapter files to {f.out}")
  else:
    os.makedirs(f.out, exist_ok=True)
    path = to_onnx(model, os.path.join(f.out, "model.onnx"))
    tokenizer.save(os.path.join(f.out, "tokenizer"))
    with open(os.path.join(f.out, "model_info.json"), "w", encoding="utf-8") as fh:
      json.dump({"langs": list(getattr(model, "langs", ())), "step": step,
                 "sample_rate": SAMPLE_RATE, "blank_id": tokenizer_lib.BLANK_ID,
                 "inputs": ["audio [B, T] float32", "audio_mask [B, T] int64"] +
                           (["lang_id [B] int64"] if _needs_lang(model) else []),
                 "outputs": ["logits [B, F, V] float32", "frame_mask [B, F] bool"]}, fh,
                indent=1)
    print(f"Wrote {path} (step {step}) and its tokenizer to {f.out}")


def _needs_lang(model) -> bool:
  return (model.adapters is not None or model.heads is not None or
          model.output_mask is not None)


if __name__ == "__main__":
  from absl import app, flags  # pylint: disable=import-outside-toplevel
  flags.DEFINE_string("workdir", None, "Training workdir (config.json, tokenizer, checkpoints).")
  flags.DEFINE_enum("to", "transformers", ["transformers", "onnx", "mms_adapters"],
                    "Target format.")
  flags.DEFINE_string("out", None, "Output directory.")
  flags.DEFINE_string("lang", "", "Language whose adapter/head the transformers base model "
                      "gets (default: the model's first).")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
  flags.mark_flags_as_required(["workdir", "out"])
  app.run(main)
