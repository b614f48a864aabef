"""Model surgery: start a fine-tuning model from a pretraining checkpoint (`config.init_from`).

big_vision style: `merge_params(loaded, inited, dont_load)` takes every parameter the model
has from the checkpoint, except the `dont_load` patterns, and raises a ValueError listing
every unexpected mismatch (missing, extra, wrong shape). `load_pretrained_encoder` applies
it to the `encoder/*` subtree of a HuBERT pretraining checkpoint and reports what happened.
Reading the checkpoint is mlasr.checkpoint's (`read_params`); surgery only merges:

    params = checkpoint.read_params("~/runs/hubert_it1")     # latest step, params only
    report = surgery.load_pretrained_encoder(ctc_model, params)
    # report.loaded: encoder/*; report.dropped: final_proj/*, label_embs/*;
    # report.initialised: head/* (the new CTC head keeps its fresh init)
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping

import jax
import numpy as np
from absl import logging
from flax import nnx

from mlasr.checkpoint import assign_params

SEP = "/"


def flatten(tree: Mapping, prefix: str = "") -> dict[str, object]:
  """Nested dicts (nnx pure dicts, orbax restores) -> {'a/b/0/c': leaf}. Keys become str."""
  out = {}
  for k, v in tree.items():
    name = f"{prefix}{SEP}{k}" if prefix else str(k)
    if isinstance(v, Mapping):
      out.update(flatten(v, name))
    else:
      out[name] = v
  return out


def unflatten_like(template: Mapping, flat: Mapping[str, object], prefix: str = "") -> dict:
  """A nested dict shaped (and keyed, int or str) like `template`, leaves from `flat`."""
  out = {}
  for k, v in template.items():
    name = f"{prefix}{SEP}{k}" if prefix else str(k)
    out[k] = unflatten_like(v, flat, name) if isinstance(v, Mapping) else flat[name]
  return out


def _listing(title: str, names: Iterable[str], mark: str = "  ") -> str:
  names = sorted(names)
  return f"{title} ({len(names)}):\n" + "\n".join(f"{mark}{n}" for n in names) if names else ""


def merge_params(loaded: Mapping, inited: Mapping, dont_load: Iterable[str] = ()) -> dict:
  """Params shaped like `inited`, taken from `loaded` except names matching `dont_load`.

  Args:
    loaded: nested dict from a checkpoint.
    inited: nested dict of the freshly initialised model (its structure is the result's).
    dont_load: regexes (full match on 'a/b/c' names); matching names keep their init and may
      be missing from `loaded` or only in `loaded`.
  Raises:
    ValueError listing every name missing from the checkpoint, present only in the checkpoint,
    or of a different shape, that `dont_load` does not cover.
  """
  patterns = [re.compile(p) for p in dont_load]

  def skipped(name):
    return any(p.fullmatch(name) for p in patterns)

  loaded_flat, inited_flat = flatten(loaded), flatten(inited)
  merged, shape_errors = {}, []
  for name, init in inited_flat.items():
    if name in loaded_flat and not skipped(name):
      value = loaded_flat[name]
      if np.shape(value) != np.shape(init):
        shape_errors.append(f"{name}: checkpoint {np.shape(value)} vs model {np.shape(init)}")
      merged[name] = value
    else:
      merged[name] = init
  missing = {n for n in inited_flat.keys() - loaded_flat.keys() if not skipped(n)}
  extra = {n for n in loaded_flat.keys() - inited_flat.keys() if not skipped(n)}
  if missing or extra or shape_errors:
    raise ValueError("\n".join(s for s in (
        "Checkpoint and model parameters do not match (add patterns to dont_load for the "
        "intended differences).",
        _listing("In the model but not in the checkpoint", missing, " - "),
        _listing("In the checkpoint but not in the model", extra, " + "),
        _listing("Shape mismatches", shape_errors, " ! ")) if s))
  return unflatten_like(inited, merged)


@dataclasses.dataclass
class SurgeryReport:
  loaded: list[str]        # copied from the checkpoint
  dropped: list[str]       # in the checkpoint, not wanted (pretraining heads)
  initialised: list[str]   # new in the model, fresh init kept (e.g. the CTC head)
  unused: list[str]        # loaded but unused by this model's config (e.g. mask embedding)

  def summary(self) -> str:
    return "\n".join(s for s in (
        f"Loaded {len(self.loaded)} pretrained parameter arrays.",
        _listing("Dropped from the checkpoint", self.dropped),
        _listing("Newly initialised", self.initialised),
        _listing("Loaded but unused (mask embedding without fine-tuning masking)",
                 self.unused)) if s)


def load_pretrained_encoder(model: nnx.Module, pretrained_params: Mapping, *,
                            prefix: str = "encoder", log: Callable[[str], None] = logging.info
                            ) -> SurgeryReport:
  """Copies `<prefix>/*` params of a pretraining checkpoint into `model` (in place).

  Everything under `prefix` must match exactly (names and shapes, else ValueError listing
  the differences); everything outside it is dropped (checkpoint) or keeps its init (model).
  """
  inited = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  if prefix not in inited:
    raise ValueError(f"model has no {prefix!r} parameters; top-level: {sorted(inited)}")
  if prefix not in pretrained_params:
    raise ValueError(f"checkpoint params have no {prefix!r} subtree; top-level: "
                     f"{sorted(pretrained_params)}. Is this a pretraining checkpoint?")
  outside = f"(?!{re.escape(prefix)}{SEP}).*"
  merged = merge_params(pretrained_params, inited, dont_load=[outside])
  assign_params(model, jax.tree.map(np.asarray, merged))

  loaded_flat, inited_flat = flatten(pretrained_params), flatten(inited)
  in_prefix = lambda n: n.startswith(prefix + SEP)  # noqa: E731
  uses_mask = getattr(model, "uses_mask_embedding", True)
  report = SurgeryReport(
      loaded=sorted(n for n in inited_flat if in_prefix(n)),
      dropped=sorted(n for n in loaded_flat if not in_prefix(n)),
      initialised=sorted(n for n in inited_flat if not in_prefix(n)),
      unused=[] if uses_mask else sorted(n for n in inited_flat
                                         if n == f"{prefix}{SEP}mask_embedding"))
  log(report.summary())
  return report


def load_matching(model: nnx.Module, params: Mapping, *,
                  log: Callable[[str], None] = logging.info) -> SurgeryReport:
  """Copies every parameter of `model` that `params` has (same name, same shape; in place).

  For growing a trained model, e.g. a multilingual adapter model getting a new language: the
  new language's adapter and head keep their fresh init, everything else arrives unchanged.
  A name present in both with different shapes is an error, never silently re-initialised.
  """
  inited = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  loaded_flat, inited_flat = flatten(params), flatten(inited)
  new = [n for n in inited_flat if n not in loaded_flat]
  merged = merge_params(params, inited, dont_load=[re.escape(n) for n in new])
  assign_params(model, jax.tree.map(np.asarray, merged))
  report = SurgeryReport(loaded=sorted(n for n in inited_flat if n in loaded_flat),
                         dropped=sorted(n for n in loaded_flat if n not in inited_flat),
                         initialised=sorted(new), unused=[])
  log(report.summary())
  return report
