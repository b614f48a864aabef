"""Parity of the mlasr encoder with transformers' HubertModel / Wav2Vec2Model (fp32, CPU).

Small widths/depths, but the real structure: 7-layer conv stack, grouped weight-normed
pos conv with 16 groups, post-LN "group" (Base) and pre-LN "layer" (Large) variants, padded
batches compared on valid frames, and every intermediate hidden state.
"""

import os

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from mlasr.models import convert_hf  # noqa: E402

LENGTHS = (9000, 6000, 7337)
SMALL = dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=128,
             conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=16,
             hidden_dropout=0.1, attention_dropout=0.1, activation_dropout=0.1,
             feat_proj_dropout=0.1, layerdrop=0.1, mask_time_prob=0.05)


def _randomise(model, seed):
  # transformers inits LayerNorms to (1, 0) and biases to 0; make them non-trivial so that
  # a swapped or missing weight shows up in the outputs.
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if "bias" in name or "norm" in name or "masked_spec" in name or "original0" in name:
        p.add_(0.2 * torch.randn(p.shape, generator=g))


def _hf_model(tmp_path, cls, cfg_cls, seed, **kw):
  torch.manual_seed(seed)
  model = cls(cfg_cls(**{**SMALL, **kw}, attn_implementation="eager")).eval()
  _randomise(model, seed)
  path = os.path.join(tmp_path, cls.__name__)
  model.save_pretrained(path)
  return model, path


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  t = max(LENGTHS)
  audio = np.zeros((len(LENGTHS), t), np.float32)
  mask = np.zeros((len(LENGTHS), t), np.int64)
  for i, n in enumerate(LENGTHS):
    audio[i, :n] = rng.standard_normal(n) * 0.3
    mask[i, :n] = 1
  return audio, mask


def _compare(hf, ours, audio, mask, time_mask=None):
  with torch.no_grad():
    ref = hf(torch.from_numpy(audio), attention_mask=torch.from_numpy(mask),
             mask_time_indices=None if time_mask is None else torch.from_numpy(time_mask),
             output_hidden_states=True)
  out = ours(jnp.asarray(audio), jnp.asarray(mask), deterministic=True,
             time_mask=None if time_mask is None else jnp.asarray(time_mask),
             output_hidden_states=True)
  valid = np.asarray(out.frame_mask)
  n_frames = hf._get_feat_extract_output_lengths(torch.tensor(LENGTHS)).numpy()
  np.testing.assert_array_equal(valid.sum(-1), n_frames)
  diffs = [np.abs(np.asarray(out.hidden) - ref.last_hidden_state.numpy())[valid].max()]
  assert len(out.layer_hiddens) == len(ref.hidden_states)
  for a, b in zip(out.layer_hiddens, ref.hidden_states):
    diffs.append(np.abs(np.asarray(a) - b.numpy())[valid].max())
  return diffs


def test_base_style_post_ln_group_norm_hubert(tmp_path):
  hf, path = _hf_model(tmp_path, transformers.HubertModel, transformers.HubertConfig, 0,
                       feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False)
  audio, mask = _batch()
  # transformers takes GroupNorm statistics over the padding too.
  cfg, ours = convert_hf.load_hf_encoder(path, masked_group_norm=False)
  assert cfg.extractor_mode == "default" and not cfg.layer_norm_first
  diffs = _compare(hf, ours, audio, mask)
  print("base/group max abs diff (last, per layer):", diffs)
  assert max(diffs) <= 1e-4
  # With masked statistics every utterance equals transformers run on it alone.
  _, ours_masked = convert_hf.load_hf_encoder(path)
  out = ours_masked(jnp.asarray(audio), jnp.asarray(mask))
  for i, n in enumerate(LENGTHS):
    with torch.no_grad():
      ref = hf(torch.from_numpy(audio[i:i + 1, :n])).last_hidden_state[0].numpy()
    assert np.abs(np.asarray(out.hidden[i, :len(ref)]) - ref).max() <= 1e-4


def test_large_style_pre_ln_layer_norm_wav2vec2_with_time_mask(tmp_path):
  hf, path = _hf_model(tmp_path, transformers.Wav2Vec2Model, transformers.Wav2Vec2Config, 1,
                       feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)
  audio, mask = _batch(1)
  cfg, ours = convert_hf.load_hf_encoder(path)
  assert cfg.extractor_mode == "layer_norm" and cfg.layer_norm_first and cfg.conv_bias
  frames = int(ours.frame_lengths(max(LENGTHS)))
  time_mask = np.random.default_rng(0).random((len(LENGTHS), frames)) < 0.3
  for tm in (None, time_mask):
    diffs = _compare(hf, ours, audio, mask, tm)
    print("large/layer max abs diff (last, per layer):", diffs)
    assert max(diffs) <= 1e-4


def test_legacy_weight_norm_names_and_bin_checkpoint(tmp_path):
  hf, path = _hf_model(tmp_path, transformers.HubertModel, transformers.HubertConfig, 2,
                       feat_extract_norm="layer", do_stable_layer_norm=True, num_hidden_layers=1)
  sd = {}
  for k, v in hf.state_dict().items():
    k = k.replace("parametrizations.weight.original0", "weight_g")
    sd["hubert." + k.replace("parametrizations.weight.original1", "weight_v")] = v
  sd["lm_head.weight"] = torch.zeros(3, 64)  # a task head: ignored
  legacy = os.path.join(tmp_path, "legacy")
  os.makedirs(legacy)
  os.rename(os.path.join(path, "config.json"), os.path.join(legacy, "config.json"))
  torch.save(sd, os.path.join(legacy, "pytorch_model.bin"))
  _, ours = convert_hf.load_hf_encoder(legacy)
  audio, mask = _batch(2)
  assert max(_compare(hf, ours, audio, mask)) <= 1e-4


def test_missing_weights_are_listed(tmp_path):
  _, path = _hf_model(tmp_path, transformers.HubertModel, transformers.HubertConfig, 3,
                      num_hidden_layers=1)
  from safetensors.numpy import load_file, save_file
  f = os.path.join(path, "model.safetensors")
  sd = load_file(f)
  del sd["encoder.layers.0.attention.q_proj.bias"]
  save_file(sd, f)
  with pytest.raises(ValueError, match="missing encoder.layers.0.attention.q_proj.bias"):
    convert_hf.load_hf_encoder(path)


def test_frame_lengths_match_transformers():
  hf_cfg = transformers.HubertConfig(**SMALL)
  hf = transformers.HubertModel(hf_cfg)
  lengths = np.concatenate([np.arange(400, 2000),
                            np.random.default_rng(0).integers(400, 10**6, 500)])
  ref = hf._get_feat_extract_output_lengths(torch.from_numpy(lengths)).numpy()
  cfg = convert_hf.config_from_hf(hf_cfg.to_dict())
  from mlasr.models import frontends
  ours = frontends.WaveformFrontend(cfg, rngs=__import__("flax").nnx.Rngs(0))
  np.testing.assert_array_equal(ours.frame_lengths(lengths), ref)
  np.testing.assert_array_equal(np.asarray(ours.frame_lengths(jnp.asarray(lengths))), ref)
  assert [int(ours.frame_lengths(n)) for n in (0, 399)] == [0, 0]
