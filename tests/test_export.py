"""Into and out of JAX: transformers CTC import/export, MMS adapter files, ONNX.

References are independent of mlasr: transformers' own models, tokenizer, load_adapter and
ASR pipeline (fp32, CPU), and onnxruntime. Tiny models (2 layers, hidden 32) keep it fast.
"""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
ort = pytest.importorskip("onnxruntime")

from mlasr import evaluate, export  # noqa: E402
from mlasr.data import tokenizer as tokenizer_lib  # noqa: E402
from mlasr.models import convert_hf, ctc, encoder as encoder_lib  # noqa: E402
from mlasr.tasks import ctc as ctc_task  # noqa: E402

LENGTHS = (6400, 4000, 5337)
TINY_HF = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
               conv_dim=(32,) * 7, num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=4,
               mask_time_prob=0.05, attn_implementation="eager")
# An HF-ordered vocabulary: pad (= blank) at 0, <s>/</s> specials, unk and delimiter not at
# mlasr's ids, so the import really has to permute.
HF_VOCAB = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "a": 5, "b": 6, "c": 7,
            "d": 8, "e": 9, "é": 10}


def _randomise(model, seed, scale=0.2, only=("",)):
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if not any(o in name for o in only):
        continue
      if "bias" in name or "norm" in name or "masked_spec" in name or "original0" in name:
        p.add_(scale * torch.randn(p.shape, generator=g))
      if name.startswith("lm_head") or "adapter_layer" in name:
        p.add_(torch.randn(p.shape, generator=g))  # distinct transcripts per frame


def _batch(seed=0, lengths=LENGTHS):
  rng = np.random.default_rng(seed)
  audio = np.zeros((len(lengths), max(lengths)), np.float32)
  mask = np.zeros(audio.shape, np.int64)
  for i, n in enumerate(lengths):
    audio[i, :n] = rng.standard_normal(n) * 0.3
    mask[i, :n] = 1
  return audio, mask


@nnx.jit
def _forward(model, audio, mask, lang_id):
  return model(audio, mask, deterministic=True, lang_id=lang_id)


def _mlasr_logits(model, audio, mask, lang_id=None):
  # Jitted: one compile per shape is faster on CPU than the eager op-by-op path.
  logits, frame_mask = _forward(model, jnp.asarray(audio), jnp.asarray(mask),
                                None if lang_id is None else jnp.asarray(lang_id))
  return np.asarray(logits), np.asarray(frame_mask)


def _greedy(logits, frame_mask, tokenizer, lang="*"):
  tokens, lengths = ctc_task.greedy_decode(jnp.asarray(logits), jnp.asarray(frame_mask))
  return [tokenizer.decode(np.asarray(t[:n]).tolist(), lang) for t, n in zip(tokens, lengths)]


def _save_hf_tokenizer(path, vocab, **kw):
  vocab_file = os.path.join(path, "vocab_src.json")
  with open(vocab_file, "w", encoding="utf-8") as f:
    json.dump(vocab, f, ensure_ascii=False)
  tok = transformers.Wav2Vec2CTCTokenizer(vocab_file, **kw)
  tok.save_pretrained(path)
  os.remove(vocab_file)
  return tok


def test_import_wav2vec2_for_ctc_head_vocab_and_normalisation(tmp_path):
  torch.manual_seed(0)
  cfg = transformers.Wav2Vec2Config(**TINY_HF, vocab_size=len(HF_VOCAB), pad_token_id=0,
                                    feat_extract_norm="group", do_stable_layer_norm=False)
  hf = transformers.Wav2Vec2ForCTC(cfg).eval()
  _randomise(hf, 0)
  path = str(tmp_path / "hf")
  hf.save_pretrained(path)
  hf_tok = _save_hf_tokenizer(path, HF_VOCAB)
  fe = transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
  fe.save_pretrained(path)

  audio, mask = _batch(0)
  clips = [audio[i, :n] for i, n in enumerate(LENGTHS)]
  inputs = fe(clips, sampling_rate=16000, padding=True, return_tensors="pt",
              return_attention_mask=True)
  with torch.no_grad():
    ref = hf(inputs.input_values, attention_mask=inputs.attention_mask).logits.numpy()
  # transformers' GroupNorm takes statistics over the padding: masked_group_norm=False.
  imported = convert_hf.load_hf_ctc(path, masked_group_norm=False)
  assert imported.encoder_config.normalize_waveform
  tok = imported.tokenizer
  assert tok.symbols("*")[:3] == ["<pad>", "<unk>", "|"]
  logits, frame_mask = _mlasr_logits(imported.model, audio, mask)
  rows = np.array([HF_VOCAB[s] for s in tok.symbols("*")])
  diff = np.abs(logits - ref[..., rows])[frame_mask].max()
  print("import CTC: max |logit diff| on valid frames", diff)
  assert diff <= 1e-4
  # Greedy transcripts: transformers' argmax + its own tokenizer decode.
  ours = _greedy(logits, frame_mask, tok)
  lengths = hf._get_feat_extract_output_lengths(torch.tensor(LENGTHS)).numpy()
  theirs = [hf_tok.decode(np.argmax(ref[i, :n], -1)) for i, n in enumerate(lengths)]
  # The two documented differences: transformers strips, and spells unknown "<unk>".
  ours = [t.strip().replace(tokenizer_lib.UNK_SURFACE, "<unk>") for t in ours]
  assert ours == theirs and any(theirs)

  # A run directory that mlasr's own loader (evaluate, transcribe, export) restores.
  run = convert_hf.write_workdir(imported, str(tmp_path / "run"))
  _, tok2, restored, step = evaluate.restore_model(run)
  assert step == 0 and tok2.symbols("*") == tok.symbols("*")
  got, _ = _mlasr_logits(restored, audio, mask)
  assert np.abs(got - ref[..., rows])[frame_mask].max() <= 1e-4


def _mlasr_waveform_model(seed, **enc):
  cfg = encoder_lib.get_config("base", conv_dim=(32,) * 7, d_model=32, num_layers=2, num_heads=2,
                          ffn_dim=64, pos_conv_kernel=8, pos_conv_groups=4, **enc)
  return cfg


def _perturb(model, seed, scale=0.1):
  state = nnx.state(model, nnx.Param)
  leaves, treedef = jax.tree.flatten(state)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  nnx.update(model, jax.tree.unflatten(treedef, [
      l + scale * jax.random.normal(k, l.shape) for l, k in zip(leaves, keys)]))


def test_export_to_transformers_logits_and_pipeline(tmp_path):
  tok = tokenizer_lib.CharTokenizer.build({"xx": ["abc de", "cab ed é"]})
  cfg = _mlasr_waveform_model(0, extractor_mode="layer_norm", conv_bias=True,
                              layer_norm_first=True)
  model = ctc.CTCModel(cfg, tok.vocab_size, 0.0, rngs=nnx.Rngs(0))
  _perturb(model, 0)
  model.head.kernel[...] = model.head.kernel[...] * 20  # varied argmax along the clip
  out = str(tmp_path / "hf")
  export.to_transformers(model, tok, out)
  hf, info = transformers.Wav2Vec2ForCTC.from_pretrained(out, output_loading_info=True)
  assert not info["missing_keys"] and not info["unexpected_keys"], info
  hf.eval()
  audio, mask = _batch(3)
  with torch.no_grad():
    ref = hf(torch.from_numpy(audio), attention_mask=torch.from_numpy(mask)).logits.numpy()
  logits, frame_mask = _mlasr_logits(model, audio, mask)
  diff = np.abs(logits - ref)[frame_mask].max()
  print("export transformers: max |logit diff| on valid frames", diff)
  assert diff <= 1e-4
  asr = transformers.pipeline("automatic-speech-recognition", model=out, device="cpu")
  clip, clip_mask = _batch(6, (16000,))  # one second: a transcript of several words
  text = asr({"raw": clip[0], "sampling_rate": 16000})["text"]
  ours = _greedy(*_mlasr_logits(model, clip, clip_mask), tok)[0]
  print("pipeline:", repr(text), "mlasr:", repr(ours))
  # Documented differences: transformers strips and spells the unknown id "<unk>".
  assert text == ours.strip().replace(tokenizer_lib.UNK_SURFACE, "<unk>") and " " in text


def test_log_mel_conformer_refuses_transformers_with_reason(tmp_path):
  cfg = encoder_lib.get_config("tiny", d_model=32, num_layers=1, num_heads=2, ffn_dim=64,
                          pos_conv_kernel=8, pos_conv_groups=4, conv_module_kernel=5, n_mels=16)
  tok = tokenizer_lib.CharTokenizer.build({"xx": ["ab"]})
  model = ctc.CTCModel(cfg, tok.vocab_size, 0.0, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="transformers cannot express.*logmel front end.*"
                                       "conformer convolution.*--to onnx"):
    export.to_transformers(model, tok, str(tmp_path / "x"))


MMS_VOCABS = {"aaa": {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "a": 5, "b": 6,
                      "c": 7},
              "bbb": {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "x": 5, "y": 6,
                      "z": 7, "w": 8, "v": 9}}


def test_mms_adapters_both_ways(tmp_path):
  torch.manual_seed(1)
  cfg = transformers.Wav2Vec2Config(**TINY_HF, vocab_size=8, pad_token_id=0, adapter_attn_dim=8,
                                    feat_extract_norm="layer", conv_bias=True,
                                    do_stable_layer_norm=True)
  hf = transformers.Wav2Vec2ForCTC(cfg).eval()
  _randomise(hf, 1)
  path = str(tmp_path / "mms")
  hf.save_pretrained(path)
  _save_hf_tokenizer(path, MMS_VOCABS, target_lang="aaa")
  from safetensors.torch import save_file
  audio, mask = _batch(4)
  refs = {}
  for seed, (lang, vocab) in enumerate(MMS_VOCABS.items()):
    # Each language: its own adapters and a head of its own vocabulary size, saved the way
    # transformers' load_adapter reads them (the _get_adapters() dict as safetensors).
    hf.lm_head = torch.nn.Linear(32, len(vocab))
    hf.init_adapter_layers()
    _randomise(hf, 10 + seed, only=("adapter_layer", "lm_head"))
    save_file({k: v.detach().contiguous() for k, v in hf._get_adapters().items()},
              os.path.join(path, f"adapter.{lang}.safetensors"))
    with torch.no_grad():
      refs[lang] = hf(torch.from_numpy(audio), attention_mask=torch.from_numpy(mask)).logits
  imported = convert_hf.load_hf_ctc(path)
  model, tok = imported.model, imported.tokenizer
  assert imported.langs == ("aaa", "bbb") and tok.per_language
  for i, lang in enumerate(imported.langs):
    logits, fm = _mlasr_logits(model, audio, mask, np.full(len(LENGTHS), i))
    rows = np.array([MMS_VOCABS[lang][s] for s in tok.symbols(lang)])
    size = len(rows)
    diff = np.abs(logits[..., :size] - refs[lang].numpy()[..., rows])[fm].max()
    print(f"MMS import {lang}: max |logit diff|", diff)
    assert diff <= 1e-4
    assert (logits[..., size:] == ctc.MASKED_LOGIT).all()  # ids beyond the language's table

  # Out again: a base directory plus adapter.<lang>.safetensors that transformers loads.
  out = str(tmp_path / "back")
  export.to_transformers(model, tok, out, lang="bbb")
  assert sorted(f for f in os.listdir(out) if f.startswith("adapter.")) == [
      "adapter.aaa.safetensors", "adapter.bbb.safetensors"]
  back = transformers.Wav2Vec2ForCTC.from_pretrained(out, target_lang="bbb").eval()
  for i, lang in enumerate(("bbb", "aaa")):
    if lang == "aaa":
      back.load_adapter("aaa")
    with torch.no_grad():
      got = back(torch.from_numpy(audio), attention_mask=torch.from_numpy(mask)).logits.numpy()
    ours, fm = _mlasr_logits(model, audio, mask,
                             np.full(len(LENGTHS), imported.langs.index(lang)))
    assert got.shape[-1] == tok.lang_vocab_size(lang)
    assert np.abs(got - ours[..., :got.shape[-1]])[fm].max() <= 1e-4
  with open(os.path.join(out, "vocab.json"), encoding="utf-8") as f:
    assert set(json.load(f)) == {"aaa", "bbb"}

  # An MMS adapter file loaded into an mlasr model's slot (after clobbering that slot).
  _perturb(model.adapters.per_lang["aaa"], 7, scale=1.0)
  export.load_mms_adapter(model, tok, os.path.join(path, "adapter.aaa.safetensors"), "aaa",
                          vocab=MMS_VOCABS["aaa"])
  again, fm = _mlasr_logits(model, audio, mask, np.zeros(len(LENGTHS), int))
  rows = np.array([MMS_VOCABS["aaa"][s] for s in tok.symbols("aaa")])
  assert np.abs(again[..., :len(rows)] - refs["aaa"].numpy()[..., rows])[fm].max() <= 1e-4


@pytest.mark.parametrize("kind", ["logmel_conformer_adapters", "waveform"])
def test_onnx_matches_mlasr_on_padded_batches(tmp_path, kind):
  langs, kw = (), {}
  if kind == "waveform":
    cfg = _mlasr_waveform_model(0, normalize_waveform=True)
  else:
    # The demo's architecture (log-mel, conformer conv modules), plus the multilingual parts.
    cfg = encoder_lib.get_config("tiny", d_model=32, num_layers=2, num_heads=2, ffn_dim=64,
                            pos_conv_kernel=8, pos_conv_groups=4, conv_module_kernel=5,
                            n_mels=16, layer_norm_first=True)
    langs = ("aa", "bb")
    kw = dict(adapter_bottleneck=8, head="per_language",
              output_mask=np.array([[1] * 10, [1] * 6 + [0] * 4], bool))
  model = ctc.CTCModel(cfg, 10, 0.0, rngs=nnx.Rngs(0), langs=langs, **kw)
  _perturb(model, 2)
  path = export.to_onnx(model, str(tmp_path / "model.onnx"))
  sess = ort.InferenceSession(path)
  worst = 0.0
  for lengths in (LENGTHS, (3200, 2000)):  # two batch sizes and lengths: dynamic axes
    audio, mask = _batch(5, lengths)
    feeds = {"audio": audio, "audio_mask": mask}
    lang_id = np.arange(len(lengths)) % 2 if langs else None
    if langs:
      feeds["lang_id"] = lang_id.astype(np.int64)
    logits, frame_mask = sess.run(None, feeds)
    ref, ref_mask = _mlasr_logits(model, audio, mask, lang_id)
    np.testing.assert_array_equal(frame_mask, ref_mask)
    worst = max(worst, float(np.abs(logits - ref)[ref_mask].max()))
  print(f"ONNX {kind}: max |logit diff| on valid frames", worst)
  assert worst <= 1e-4
