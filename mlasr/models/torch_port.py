"""The mlasr CTC model re-expressed in torch, for ONNX export (`mlasr.export --to onnx`).

Why torch: jax2onnx (the direct JAX route) pins orbax-checkpoint < 0.11.37, below the
orbax this project runs on, and its tracer failed on mlasr's length masks with symbolic
shapes (`jnp.arange(T)[None]` and `x[:, :1]` on dynamic dims, measured with jax2onnx 0.17.1);
jax.export -> StableHLO has no maintained ONNX converter without TensorFlow. torch.onnx's
exporter handles dynamic batch and length, so every mlasr encoder (waveform or log-mel front
end, conformer conv modules, MMS adapters, per-language heads and output masks) is mirrored
here operation by operation, with mlasr's weights copied in. tests/test_export.py checks the
ONNX graph under onnxruntime against mlasr's own logits on padded batches.

Differences by construction: the STFT is a strided conv with a windowed DFT basis instead of
an FFT (float32 rounding differs, ~1e-6 relative), and clips must be at least one STFT
window (n_fft samples, 25 ms) long for log-mel models, where mlasr zero-pads shorter ones.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mlasr.models import ctc, frontends

_NEG = float(np.finfo(np.float32).min)


def _t(x) -> torch.Tensor:
  return torch.from_numpy(np.array(x, np.float32))


def _conv_out(n: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
  # Guarded: ONNX integer division truncates, torch floors; both agree for n >= kernel.
  return torch.where(n >= kernel, torch.div(n - kernel, stride, rounding_mode="floor") + 1,
                     torch.zeros_like(n))


def _lengths_to_mask(lengths: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
  """[B] lengths -> [B, like.shape[1]] bool (dynamic length from `like`)."""
  pos = torch.ones_like(like[0, :, 0], dtype=torch.int64).cumsum(0) - 1
  return pos[None, :] < lengths[:, None]


def _masked_time_norm(x: torch.Tensor, mask: torch.Tensor, eps: float) -> torch.Tensor:
  m = mask[..., None].to(x.dtype)
  count = m.sum(1, keepdim=True).clamp(min=1.0)
  mean = (x * m).sum(1, keepdim=True) / count
  var = ((x - mean).square() * m).sum(1, keepdim=True) / count
  return (x - mean) * torch.rsqrt(var + eps)


def _layer_norm(x, scale, bias, eps):
  mean = x.mean(-1, keepdim=True)
  var = (x - mean).square().mean(-1, keepdim=True)
  return (x - mean) * torch.rsqrt(var + eps) * scale + bias


class TorchCTC(torch.nn.Module):
  """forward(audio [B, T], audio_mask [B, T], lang_id [B]) -> (logits [B, F, V], frame_mask)."""

  def __init__(self, model: ctc.CTCModel):
    super().__init__()
    enc = model.encoder
    self.cfg = cfg = enc.config
    self.p = torch.nn.ParameterDict()

    def put(name, value):
      self.p[name.replace(".", "_")] = torch.nn.Parameter(_t(value), requires_grad=False)

    fe = enc.frontend
    if cfg.frontend == "waveform":
      for i in range(len(cfg.conv_dim)):
        put(f"conv{i}", np.asarray(fe.kernels[i][...]).transpose(2, 1, 0))  # [out, in, K]
        if cfg.conv_bias:
          put(f"conv{i}_b", fe.biases[i][...])
      for i in range(len(fe.norm_scales)):
        put(f"conv{i}_ns", fe.norm_scales[i][...])
        put(f"conv{i}_nb", fe.norm_biases[i][...])
    else:
      basis = self._dft_basis(cfg)
      self.register_buffer("dft", torch.from_numpy(basis))
      self.register_buffer("mel_fb", torch.from_numpy(
          frontends.mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels)))
      if cfg.subsampler == "conv2d":
        put("sub1", np.asarray(fe.conv1[...]).transpose(3, 2, 0, 1))  # HWIO -> OIHW
        put("sub2", np.asarray(fe.conv2[...]).transpose(3, 2, 0, 1))
        put("sub1_b", fe.conv1_bias[...])
        put("sub2_b", fe.conv2_bias[...])
    if enc.feature_layer_norm is not None:
      put("feat_ln_s", enc.feature_layer_norm.scale[...])
      put("feat_ln_b", enc.feature_layer_norm.bias[...])
    put("proj_w", enc.projection.kernel[...])
    put("proj_b", enc.projection.bias[...])
    if enc.pos_conv is not None:
      v = np.asarray(enc.pos_conv.weight_v[...], np.float64)
      g = np.asarray(enc.pos_conv.weight_g[...], np.float64)
      w = v * (g / np.sqrt(np.square(v).sum((1, 2))))[:, None, None]  # weight norm, folded
      put("pos_w", w.transpose(2, 1, 0))
      put("pos_b", enc.pos_conv.bias[...])
    put("ln_s", enc.layer_norm.scale[...])
    put("ln_b", enc.layer_norm.bias[...])
    for i, blk in enumerate(enc.layers):
      a = blk.attention
      for n in ("q", "k", "v"):
        put(f"b{i}_{n}_w", np.asarray(getattr(a, f"{n}_kernel")[...]).reshape(cfg.d_model, -1))
        put(f"b{i}_{n}_b", np.asarray(getattr(a, f"{n}_bias")[...]).reshape(-1))
      put(f"b{i}_o_w", np.asarray(a.out_kernel[...]).reshape(-1, cfg.d_model))
      put(f"b{i}_o_b", a.out_bias[...])
      for name, ln in (("ln", blk.layer_norm), ("fln", blk.final_layer_norm)):
        put(f"b{i}_{name}_s", ln.scale[...])
        put(f"b{i}_{name}_b", ln.bias[...])
      put(f"b{i}_ff1_w", blk.feed_forward.intermediate.kernel[...])
      put(f"b{i}_ff1_b", blk.feed_forward.intermediate.bias[...])
      put(f"b{i}_ff2_w", blk.feed_forward.output.kernel[...])
      put(f"b{i}_ff2_b", blk.feed_forward.output.bias[...])
      if blk.conv_module is not None:
        cm = blk.conv_module
        put(f"b{i}_cin_w", cm.pointwise_in.kernel[...])
        put(f"b{i}_cin_b", cm.pointwise_in.bias[...])
        put(f"b{i}_dw", np.asarray(cm.depthwise[...]).T[:, None, :])  # [C, 1, K]
        put(f"b{i}_dw_b", cm.depthwise_bias[...])
        put(f"b{i}_cln_s", cm.norm.scale[...])
        put(f"b{i}_cln_b", cm.norm.bias[...])
        put(f"b{i}_cout_w", cm.pointwise_out.kernel[...])
        put(f"b{i}_cout_b", cm.pointwise_out.bias[...])
        put(f"b{i}_cn_s", blk.conv_norm.scale[...])
        put(f"b{i}_cn_b", blk.conv_norm.bias[...])
    self.num_layers = cfg.num_layers
    self.conv_module = cfg.conv_module_kernel
    # Per-language parts, stacked [L, ...] and gathered by lang_id as mlasr does.
    self.adapter_blocks = ()
    if model.adapters is not None:
      bank = model.adapters
      self.adapter_blocks = tuple(bank.blocks)
      self.adapter_eps = bank.eps
      for slot in range(len(bank.blocks)):
        ads = [bank.per_lang[l].layers[slot] for l in bank.langs]
        for name, get in (("s", lambda x: x.layer_norm.scale), ("b", lambda x: x.layer_norm.bias),
                          ("dw", lambda x: x.down.kernel), ("db", lambda x: x.down.bias),
                          ("uw", lambda x: x.up.kernel), ("ub", lambda x: x.up.bias)):
          put(f"ad{slot}_{name}", np.stack([np.asarray(get(x)[...]) for x in ads]))
    self.per_language_head = model.heads is not None
    if model.heads is not None:
      put("head_w", np.stack([np.asarray(model.heads.per_lang[l].kernel[...])
                              for l in model.langs]))
      put("head_b", np.stack([np.asarray(model.heads.per_lang[l].bias[...])
                              for l in model.langs]))
    else:
      put("head_w", model.head.kernel[...])
      put("head_b", model.head.bias[...])
    self.has_output_mask = model.output_mask is not None
    if model.output_mask is not None:
      shape, bits = model.output_mask
      allowed = np.unpackbits(np.frombuffer(bits, np.uint8))[:np.prod(shape)].reshape(shape)
      self.register_buffer("allowed", torch.from_numpy(allowed.astype(bool)))
    self.needs_lang = bool(self.adapter_blocks) or self.per_language_head or \
        self.has_output_mask

  @staticmethod
  def _dft_basis(cfg) -> np.ndarray:
    """[2 * (n_fft // 2 + 1), 1, n_fft] windowed cos / -sin rows (conv weights)."""
    n = cfg.n_fft
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)  # periodic Hann, as mlasr
    k = np.arange(n // 2 + 1)[:, None]
    phase = 2 * np.pi * k * np.arange(n)[None, :] / n
    basis = np.concatenate([np.cos(phase), -np.sin(phase)], 0) * window[None, :]
    return basis[:, None, :].astype(np.float32)

  def w(self, name):
    return self.p[name]

  # --- front ends -----------------------------------------------------------------------
  def _waveform(self, audio, mask):
    cfg = self.cfg
    lengths = mask.sum(-1)
    x = audio * mask.to(audio.dtype)
    if cfg.normalize_waveform:
      m = mask.to(x.dtype)
      count = m.sum(-1, keepdim=True).clamp(min=1.0)
      mean = (x * m).sum(-1, keepdim=True) / count
      var = ((x - mean).square() * m).sum(-1, keepdim=True) / count
      x = (x - mean) * torch.rsqrt(var + 1e-7) * m
    x = x[:, None, :]
    for i, (k, s) in enumerate(zip(cfg.conv_kernel, cfg.conv_stride)):
      x = F.conv1d(x, self.w(f"conv{i}"), self.p[f"conv{i}_b"] if cfg.conv_bias else None,
                   stride=s)
      lengths = _conv_out(lengths, k, s)
      if cfg.extractor_mode == "layer_norm":
        x = _layer_norm(x.transpose(1, 2), self.w(f"conv{i}_ns"), self.w(f"conv{i}_nb"),
                        1e-5).transpose(1, 2)
      elif i == 0:
        xt = x.transpose(1, 2)
        valid = (_lengths_to_mask(lengths, xt) if cfg.masked_group_norm
                 else torch.ones_like(xt[..., 0], dtype=torch.bool))
        x = (_masked_time_norm(xt, valid, 1e-5) * self.w("conv0_ns") +
             self.w("conv0_nb")).transpose(1, 2)
      x = F.gelu(x)
    x = x.transpose(1, 2)
    return x, _lengths_to_mask(lengths, x)

  def _logmel(self, audio, mask):
    cfg = self.cfg
    lengths = mask.sum(-1)
    x = (audio * mask.to(audio.dtype))[:, None, :]
    spec = F.conv1d(x, self.dft, stride=cfg.hop_length)          # [B, 2 * bins, F]
    bins = cfg.n_fft // 2 + 1
    power = spec[:, :bins].square() + spec[:, bins:].square()
    feats = torch.log(torch.matmul(power.transpose(1, 2), self.mel_fb) + 1e-6)
    mel_len = _conv_out(lengths, cfg.win_length, cfg.hop_length)
    mel_mask = _lengths_to_mask(mel_len, feats)
    if cfg.logmel_norm == "utterance":
      feats = _masked_time_norm(feats, mel_mask, 1e-5)
    feats = feats * mel_mask[..., None].to(feats.dtype)
    s = cfg.logmel_subsample
    if cfg.subsampler == "stack":
      b, f, m = feats.shape
      f_out = torch.div(f, s, rounding_mode="floor")
      x = feats[:, :f_out * s].reshape(b, f_out, s * m)
      out_len = torch.div(mel_len, s, rounding_mode="floor")
    else:
      y = F.relu(F.conv2d(feats[:, None], self.w("sub1"), self.w("sub1_b"), stride=(2, 2)))
      y = F.relu(F.conv2d(y, self.w("sub2"), self.w("sub2_b"), stride=(s // 2, 2)))
      b, ch, f2, m2 = y.shape
      x = y.permute(0, 2, 3, 1).reshape(b, f2, m2 * ch)  # mlasr's NHWC flatten order
      out_len = _conv_out(_conv_out(mel_len, 3, 2), 3, s // 2)
    return x, _lengths_to_mask(out_len, x)

  # --- encoder ------------------------------------------------------------------------
  def _attention(self, i, x, frame_mask):
    b, f, d = x.shape
    h = self.cfg.num_heads

    def proj(n):
      return (x @ self.w(f"b{i}_{n}_w") + self.w(f"b{i}_{n}_b")).reshape(b, f, h, d // h)

    q, k, v = proj("q"), proj("k"), proj("v")
    q = q * (d // h) ** -0.5
    scores = torch.einsum("bqhk,bshk->bhqs", q, k)
    scores = scores.masked_fill(~frame_mask[:, None, None, :], _NEG)
    probs = torch.softmax(scores, -1)
    out = torch.einsum("bhqs,bshk->bqhk", probs, v).reshape(b, f, d)
    return out @ self.w(f"b{i}_o_w") + self.w(f"b{i}_o_b")

  def _conv_module(self, i, x, frame_mask):
    a, g = (x @ self.w(f"b{i}_cin_w") + self.w(f"b{i}_cin_b")).chunk(2, -1)
    h = (a * torch.sigmoid(g)) * frame_mask[..., None].to(x.dtype)
    k = self.conv_module
    half = k // 2
    h = F.conv1d(F.pad(h.transpose(1, 2), (half, k - 1 - half)), self.w(f"b{i}_dw"),
                 self.w(f"b{i}_dw_b"), groups=h.shape[-1]).transpose(1, 2)
    h = F.silu(_layer_norm(h, self.w(f"b{i}_cln_s"), self.w(f"b{i}_cln_b"), 1e-5))
    return h @ self.w(f"b{i}_cout_w") + self.w(f"b{i}_cout_b")

  def _block(self, i, x, frame_mask):
    eps = self.cfg.layer_norm_eps

    def ln(name, y):
      return _layer_norm(y, self.w(f"b{i}_{name}_s"), self.w(f"b{i}_{name}_b"), eps)

    def ffn(y):
      y = F.gelu(y @ self.w(f"b{i}_ff1_w") + self.w(f"b{i}_ff1_b"))
      return y @ self.w(f"b{i}_ff2_w") + self.w(f"b{i}_ff2_b")

    if self.cfg.layer_norm_first:
      x = x + self._attention(i, ln("ln", x), frame_mask)
      if self.conv_module:
        x = x + self._conv_module(i, ln("cn", x), frame_mask)
      return x + ffn(ln("fln", x))
    x = ln("ln", x + self._attention(i, x, frame_mask))
    if self.conv_module:
      x = ln("cn", x + self._conv_module(i, x, frame_mask))
    return ln("fln", x + ffn(x))

  def _adapter(self, slot, x, lang_id):
    def g(name):
      return self.w(f"ad{slot}_{name}")[lang_id]
    h = _layer_norm(x, g("s")[:, None, :], g("b")[:, None, :], self.adapter_eps)
    h = F.relu(torch.einsum("bfd,bdk->bfk", h, g("dw")) + g("db")[:, None, :])
    return x + torch.einsum("bfk,bkd->bfd", h, g("uw")) + g("ub")[:, None, :]

  def forward(self, audio, audio_mask, lang_id=None):
    cfg = self.cfg
    mask = audio_mask > 0
    x, frame_mask = (self._waveform(audio, mask) if cfg.frontend == "waveform"
                     else self._logmel(audio, mask))
    if "feat_ln_s" in self.p:
      x = _layer_norm(x, self.w("feat_ln_s"), self.w("feat_ln_b"), cfg.layer_norm_eps)
    x = x @ self.w("proj_w") + self.w("proj_b")
    x = x * frame_mask[..., None].to(x.dtype)
    if "pos_w" in self.p:
      k = cfg.pos_conv_kernel
      y = F.conv1d(x.transpose(1, 2), self.w("pos_w"), None, padding=k // 2,
                   groups=cfg.pos_conv_groups).transpose(1, 2)
      if k % 2 == 0:
        y = y[:, :-1]
      x = x + F.gelu(y + self.w("pos_b"))
    if not cfg.layer_norm_first:
      x = _layer_norm(x, self.w("ln_s"), self.w("ln_b"), cfg.layer_norm_eps)
    for i in range(self.num_layers):
      x = self._block(i, x, frame_mask)
      if i in self.adapter_blocks:
        x = self._adapter(self.adapter_blocks.index(i), x, lang_id)
    if cfg.layer_norm_first:
      x = _layer_norm(x, self.w("ln_s"), self.w("ln_b"), cfg.layer_norm_eps)
    if self.per_language_head:
      logits = torch.einsum("bfd,bdv->bfv", x, self.w("head_w")[lang_id]) + \
          self.w("head_b")[lang_id][:, None, :]
    else:
      logits = x @ self.w("head_w") + self.w("head_b")
    if self.has_output_mask:
      logits = logits.masked_fill(~self.allowed[lang_id][:, None, :], ctc.MASKED_LOGIT)
    return logits, frame_mask


def export_onnx(model: ctc.CTCModel, path: str, opset: int = 17) -> str:
  """Writes `model` as ONNX with dynamic batch and length; returns `path`."""
  port = TorchCTC(model).eval()
  n = 16000
  audio = torch.zeros(2, n)
  mask = torch.ones(2, n, dtype=torch.int64)
  args = (audio, mask)
  names = ["audio", "audio_mask"]
  axes = {"audio": {0: "batch", 1: "samples"}, "audio_mask": {0: "batch", 1: "samples"},
          "logits": {0: "batch", 1: "frames"}, "frame_mask": {0: "batch", 1: "frames"}}
  if port.needs_lang:
    args += (torch.zeros(2, dtype=torch.int64),)
    names.append("lang_id")
    axes["lang_id"] = {0: "batch"}
  with torch.no_grad():
    # The TorchScript exporter: it takes dynamic_axes directly and needs no onnxscript.
    torch.onnx.export(port, args, path, input_names=names,
                      output_names=["logits", "frame_mask"], dynamic_axes=axes,
                      opset_version=opset, dynamo=False)
  return path
