"""Per-language bottleneck adapters and CTC heads (MMS): a few MB per language, shared encoder.

After transformer block i, for an example of language l (Pratap et al. 2023, MMS):

    x <- x + W_up[l, i] · relu(W_down[l, i] · LN[l, i](x))

Each language owns separate parameters, `adapters/per_lang/<lang>/layers/<i>/...` and (with
per-language heads) `heads/per_lang/<lang>/...`. That is what makes the MMS overwrite bug
impossible: training language B with every other language's leaves frozen (`optim.freeze`)
gives A's leaves exactly zero updates, and exporting or loading one language touches only its
own leaves. Inside the jitted step the languages' weights are stacked [L, ...] and gathered by
`lang_id`, so one batch mixes languages with no Python-level switching and no recompilation
per language.

    bank = AdapterBank(langs, num_blocks=6, dim=192, bottleneck=16, rngs=rngs)
    x = bank(block_index, x, lang_id)      # inside the encoder's block loop

Export / import of one language (`export_language`, `import_language`) use safetensors files,
as MMS ships `adapter.<lang>.safetensors`.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mlasr.models import layers

ADAPTER_FILE = "adapter.{lang}.safetensors"


class Adapter(nnx.Module):
  """LayerNorm -> Linear(d->b) -> ReLU -> Linear(b->d); the caller adds the residual."""

  def __init__(self, dim: int, bottleneck: int, *, eps: float, dtype, rngs: nnx.Rngs):
    self.layer_norm = layers.LayerNorm(dim, eps=eps, dtype=dtype, rngs=rngs)
    self.down = layers.Dense(dim, bottleneck, ("embed", "adapter"), dtype=dtype, rngs=rngs)
    # Zero-initialised up-projection: a new adapter is the identity, so training starts from
    # the frozen encoder's own features (Houlsby et al. 2019 start near identity too).
    self.up = layers.Dense(bottleneck, dim, ("adapter", "embed"), dtype=dtype, rngs=rngs,
                           kernel_init=jax.nn.initializers.zeros)


class LanguageAdapters(nnx.Module):
  """One language's adapters, one per adapted block."""

  def __init__(self, num_adapters: int, dim: int, bottleneck: int, *, eps: float, dtype,
               rngs: nnx.Rngs):
    self.layers = nnx.List([Adapter(dim, bottleneck, eps=eps, dtype=dtype, rngs=rngs)
                            for _ in range(num_adapters)])


def _gathered(modules: Sequence[nnx.Module], get, lang_id: jax.Array) -> jax.Array:
  """The parameter `get(module)` of each example's language: [B, ...]."""
  return jnp.stack([get(m)[...] for m in modules])[lang_id]


class AdapterBank(nnx.Module):
  """Adapters for every language in `langs` (lang_id indexes it) after the chosen blocks."""

  def __init__(self, langs: Sequence[str], num_blocks: int, dim: int, bottleneck: int, *,
               blocks: Sequence[int] | None = None, eps: float = 1e-5, dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.langs = tuple(langs)
    blocks = tuple(range(num_blocks)) if blocks is None else tuple(int(b) for b in blocks)
    if not blocks or any(not 0 <= b < num_blocks for b in blocks):
      raise ValueError(f"adapter blocks {blocks} must be non-empty indices into the "
                       f"{num_blocks} transformer blocks")
    self.blocks = blocks
    self.eps = eps
    self.dtype = dtype
    self.per_lang = nnx.Dict({lang: LanguageAdapters(len(blocks), dim, bottleneck, eps=eps,
                                                     dtype=dtype, rngs=rngs)
                              for lang in self.langs})

  def __call__(self, block: int, x: jax.Array, lang_id: jax.Array) -> jax.Array:
    """x [B, F, D] after block `block` -> x plus each example's own language adapter."""
    if block not in self.blocks:
      return x
    slot = self.blocks.index(block)
    adapters = [self.per_lang[lang].layers[slot] for lang in self.langs]
    scale = _gathered(adapters, lambda a: a.layer_norm.scale, lang_id)[:, None, :]
    shift = _gathered(adapters, lambda a: a.layer_norm.bias, lang_id)[:, None, :]
    w_down = _gathered(adapters, lambda a: a.down.kernel, lang_id).astype(self.dtype)
    b_down = _gathered(adapters, lambda a: a.down.bias, lang_id).astype(self.dtype)
    w_up = _gathered(adapters, lambda a: a.up.kernel, lang_id).astype(self.dtype)
    b_up = _gathered(adapters, lambda a: a.up.bias, lang_id).astype(self.dtype)
    h = layers.layer_norm(x, scale, shift, self.eps, self.dtype)
    h = jax.nn.relu(jnp.einsum("bfd,bdk->bfk", h, w_down) + b_down[:, None, :])
    return x + (jnp.einsum("bfk,bkd->bfd", h, w_up) + b_up[:, None, :]).astype(x.dtype)


class HeadBank(nnx.Module):
  """A linear CTC head per language (MMS: per-language character vocabularies).

  Every head has `vocab_size` outputs (the largest language's table); the ids a language
  does not use are masked by the caller's output mask.
  """

  def __init__(self, langs: Sequence[str], dim: int, vocab_size: int, *, dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.langs = tuple(langs)
    self.dtype = dtype
    self.per_lang = nnx.Dict({
        lang: layers.Dense(dim, vocab_size, ("embed", "vocab"), dtype=dtype, rngs=rngs)
        for lang in self.langs})

  def __call__(self, x: jax.Array, lang_id: jax.Array) -> jax.Array:
    heads = [self.per_lang[lang] for lang in self.langs]
    kernel = _gathered(heads, lambda h: h.kernel, lang_id).astype(self.dtype)
    bias = _gathered(heads, lambda h: h.bias, lang_id).astype(self.dtype)
    return jnp.einsum("bfd,bdv->bfv", x.astype(self.dtype), kernel) + bias[:, None, :]


# -------------------------------------------------------------------------------------------
# One language's weights as a standalone file.
# -------------------------------------------------------------------------------------------
def language_prefixes(lang: str) -> tuple[str, ...]:
  """Parameter-path prefixes that belong to `lang` alone (adapters and its own head)."""
  return (f"adapters/per_lang/{lang}/", f"heads/per_lang/{lang}/")


def freeze_all_but(langs: Sequence[str]) -> tuple[tuple[str, int], ...]:
  """config.optim.freeze rules that train only the adapters and heads of `langs`.

  Everything else (the encoder, a shared head, every other language) is frozen for good: it
  gets no optimizer state and exactly zero updates. Used to add or retrain languages.
  """
  keep = "|".join(langs)
  return ((rf"adapters/per_lang/(?!(?:{keep})/).*", -1),
          (rf"heads/per_lang/(?!(?:{keep})/).*", -1),
          (r"(?!adapters/|heads/).*", -1))


def export_language(flat_params: Mapping[str, np.ndarray], lang: str, path: str,
                    meta: Mapping[str, object] | None = None) -> dict:
  """Writes `lang`'s adapter (+ head) leaves of flattened params to a safetensors file.

  Returns {"path", "num_params", "bytes"}. `meta` (JSON-able) is stored in the file's header,
  e.g. the adapter config and the language's vocabulary.
  """
  from safetensors.numpy import save_file  # pylint: disable=import-outside-toplevel
  prefixes = language_prefixes(lang)
  tensors = {name: np.ascontiguousarray(np.asarray(v)) for name, v in flat_params.items()
             if name.startswith(prefixes)}
  if not tensors:
    raise KeyError(f"No adapter parameters for language {lang!r} (looked for {prefixes}).")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  save_file(tensors, path, metadata={"lang": lang, "meta": json.dumps(dict(meta or {}))})
  return dict(path=path, num_params=int(sum(t.size for t in tensors.values())),
              bytes=os.path.getsize(path))


def import_language(flat_params: Mapping[str, np.ndarray], path: str,
                    lang: str | None = None) -> tuple[dict, str, dict]:
  """(params with one language's leaves replaced from `path`, lang, meta).

  `lang` loads the file into another language's slot (e.g. an adapter trained elsewhere).
  Raises ValueError when a tensor has no slot or the wrong shape, so a mismatched file never
  half-loads.
  """
  from safetensors import safe_open  # pylint: disable=import-outside-toplevel
  with safe_open(path, framework="numpy") as f:
    header = f.metadata() or {}
    src = header.get("lang")
    tensors = {k: f.get_tensor(k) for k in f.keys()}
  lang = lang or src
  out = dict(flat_params)
  problems = []
  for name, value in tensors.items():
    target = name.replace(f"/per_lang/{src}/", f"/per_lang/{lang}/", 1)
    if target not in out:
      problems.append(f"{target}: no such parameter in the model")
    elif tuple(np.shape(out[target])) != value.shape:
      problems.append(f"{target}: shape {value.shape} in the file, "
                      f"{tuple(np.shape(out[target]))} in the model")
    else:
      out[target] = value
  if problems:
    raise ValueError(f"{path} does not fit this model (language {lang!r}):\n  " +
                     "\n  ".join(problems))
  return out, lang, json.loads(header.get("meta", "{}"))
