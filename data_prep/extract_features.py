r"""Frame features for k-means fitting: MFCC (HuBERT iteration 1) or layer L of a trained model.

  python -m data_prep.extract_features --data_dir ~/mlasr_data/demo/tfds \
      --datasets commonvoice:en:train,voxpopuli:cs:train --features mfcc \
      --fraction 0.1 --out ~/mlasr_runs/hubert_it1/features
  python -m data_prep.extract_features ... --features layer:6 --workdir ~/mlasr_runs/hubert_it1

Writes `<out>/features-NNNNN.npy` ([n, D] float32 chunks, whole utterances, ~`chunk_rows`
rows each) and `<out>/features.json` (feature spec, dim, rows, utterances, datasets). A
deterministic `fraction` of the utterances is used (hash of seed and utt_id, so the subset
does not depend on dataset order or on which other datasets are listed).

The helpers here (`FeatureSpec`, `make_featurizer`, `iter_audio`, `load_encoder`,
`feature_chunks`) are shared with fit_kmeans.py and dump_labels.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import os
from typing import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from mlasr.data import tfds_builder
from mlasr import features
from mlasr.targets import mfcc

log = logging.getLogger(__name__)
SAMPLE_RATE = tfds_builder.SAMPLE_RATE
FEATURES_JSON = "features.json"


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
  """"mfcc", or "layer" (transformer input = 0, block i's output = i) of the model in workdir."""
  kind: str = "mfcc"
  layer: int = 6
  workdir: str = ""
  step: int | None = None

  @classmethod
  def parse(cls, text: str, workdir: str = "", step: int | None = None) -> "FeatureSpec":
    if text == "mfcc":
      return cls("mfcc")
    kind, _, layer = text.partition(":")
    if kind != "layer" or not layer.isdigit() or not workdir:
      raise ValueError(f"--features must be 'mfcc' or 'layer:<L>' (with --workdir), got {text!r}")
    return cls("layer", int(layer), os.path.abspath(os.path.expanduser(workdir)), step)

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


def parse_datasets(text: str | Sequence[str]) -> list[tuple[str, str, str]]:
  """"corpus:lang:split,..." (split defaults to train) -> [(corpus, lang, split)]."""
  items = text.split(",") if isinstance(text, str) else list(text)
  out = []
  for item in items:
    parts = item.strip().split(":")
    if len(parts) == 2:
      parts.append("train")
    if len(parts) != 3 or not all(parts):
      raise ValueError(f"dataset {item!r} must look like corpus:lang[:split]")
    out.append(tuple(parts))
  return out


def selected(utt_id: str, fraction: float, seed: int) -> bool:
  """Deterministic subset membership from a hash of (seed, utt_id)."""
  if fraction >= 1.0:
    return True
  h = hashlib.sha1(f"{seed}:{utt_id}".encode()).digest()
  return int.from_bytes(h[:8], "little") / 2.0**64 < fraction


def load_encoder(workdir: str, step: int | None = None, checkpoint: str = "latest"):
  """The trained `encoder_lib.Encoder` of a workdir (CTC, LID or pretraining run).

  Built from config.model.encoder; its parameters are the `encoder` subtree of the run's
  checkpoint (mlasr.checkpoint.read_params: `latest` or `best`; what every model with an
  `.encoder` attribute saves). Nothing is written into the workdir.
  """
  from flax import nnx  # pylint: disable=import-outside-toplevel
  from mlasr import checkpoint as ckpt_lib, config_lib  # pylint: disable=import-outside-toplevel
  from mlasr.models import encoder as encoder_lib  # pylint: disable=import-outside-toplevel

  config = config_lib.load_config(workdir)
  encoder = encoder_lib.Encoder(encoder_lib.config_from_fields(config.model.encoder),
                                rngs=nnx.Rngs(params=0, dropout=0))
  ckpt_lib.assign_params(encoder, ckpt_lib.read_params(workdir, step, which=checkpoint,
                                                       subtree="encoder"))
  return encoder


class Featurizer:
  """Batched, padding-aware features of whole clips: __call__(waves) -> [[F_i, D], ...].

  Clips are padded to a power-of-two multiple of `min_seconds` (so a handful of shapes are
  compiled) and batched up to `batch_seconds` of padded audio.
  """

  def __init__(self, fn: Callable, dim: int, frame_spec: features.FrameSpec,
               batch_seconds: float = 64.0, min_seconds: float = 1.0):
    self.fn = jax.jit(fn)
    self.dim = dim
    self.frame_spec = frame_spec
    self.label_rate = frame_spec.rate
    self.batch_seconds = batch_seconds
    self.min_samples = int(min_seconds * SAMPLE_RATE)

  def padded_length(self, n: int) -> int:
    return self.min_samples * 2 ** max(0, math.ceil(math.log2(max(n, 1) / self.min_samples)))

  def __call__(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
    out: list[np.ndarray | None] = [None] * len(waves)
    groups: dict[int, list[int]] = {}
    for i, w in enumerate(waves):
      groups.setdefault(self.padded_length(len(w)), []).append(i)
    for length, members in sorted(groups.items()):
      bs = max(1, int(self.batch_seconds * SAMPLE_RATE // length))
      for s in range(0, len(members), bs):
        rows = members[s:s + bs]
        audio = np.zeros((bs, length), np.float32)
        mask = np.zeros((bs, length), bool)
        for r, i in enumerate(rows):
          audio[r, :len(waves[i])] = waves[i]
          mask[r, :len(waves[i])] = True
        feats = np.asarray(self.fn(audio, mask))
        for r, i in enumerate(rows):
          out[i] = feats[r, :self.frame_spec.num_frames(len(waves[i]))]
    return out


def make_featurizer(spec: FeatureSpec, batch_seconds: float = 64.0) -> Featurizer:
  if spec.kind == "mfcc":
    cfg = mfcc.MfccConfig()
    return Featurizer(lambda a, m: mfcc.mfcc(a, m, cfg)[0], cfg.dim, cfg.frame_spec,
                      batch_seconds)
  from flax import nnx  # pylint: disable=import-outside-toplevel
  encoder = load_encoder(spec.workdir, spec.step)
  if not 0 <= spec.layer <= encoder.config.num_layers:
    raise ValueError(f"layer {spec.layer} not in [0, {encoder.config.num_layers}] for "
                     f"{spec.workdir}")
  graphdef, state = nnx.split(encoder)

  def fn(audio, mask):
    out = nnx.merge(graphdef, state)(audio, mask, deterministic=True, output_hidden_states=True)
    return out.layer_hiddens[spec.layer].astype(jnp.float32)

  return Featurizer(fn, encoder.config.d_model, encoder.frame_spec,
                    batch_seconds)


def iter_audio(data_dir: str, datasets: Sequence[tuple[str, str, str]], fraction: float = 1.0,
               seed: int = 0, rows: Sequence[int] | None = None
               ) -> Iterator[tuple[str, int, np.ndarray]]:
  """(utt_id, num_samples, float waveform) of the selected utterances of datasets, in order."""
  for corpus, lang, split in datasets:
    source = tfds_builder.data_source(data_dir, corpus, lang, split)
    ids = tfds_builder.load_index(data_dir, corpus, lang)[split]["utt_id"]
    want = range(len(ids)) if rows is None else rows
    for i in want:
      if not selected(ids[i], fraction, seed):
        continue
      ex = source[i]
      wave = ex["audio"].astype(np.float32) / 32767.0
      yield ids[i], len(wave), wave


def extract(data_dir: str, datasets: Sequence[tuple[str, str, str]], spec: FeatureSpec,
            out_dir: str, *, fraction: float = 0.1, seed: int = 0, chunk_rows: int = 200_000,
            utts_per_call: int = 64) -> dict:
  """Writes feature chunks + features.json (see module docstring); returns the json dict."""
  os.makedirs(out_dir, exist_ok=True)
  feat = make_featurizer(spec)
  pending, buf, buf_rows, chunk, rows_total, utts = [], [], 0, 0, 0, 0

  def flush(final=False):
    nonlocal buf, buf_rows, chunk
    if buf and (final or buf_rows >= chunk_rows):
      path = os.path.join(out_dir, f"features-{chunk:05d}.npy")
      np.save(path + ".tmp.npy", np.concatenate(buf).astype(np.float32))
      os.replace(path + ".tmp.npy", path)
      chunk, buf, buf_rows = chunk + 1, [], 0

  def run():
    nonlocal pending, buf_rows, rows_total, utts
    for f in feat([w for w in pending]):
      if len(f):
        buf.append(f)
        buf_rows += len(f)
        rows_total += len(f)
      utts += 1
    pending = []
    flush()

  for _, _, wave in tqdm.tqdm(iter_audio(data_dir, datasets, fraction, seed), desc="features",
                              mininterval=5.0):
    pending.append(wave)
    if len(pending) >= utts_per_call:
      run()
  run()
  flush(final=True)
  meta = dict(spec=spec.to_json(), dim=feat.dim, label_rate=feat.label_rate,
              frame_spec=feat.frame_spec.to_json(), rows=rows_total, utterances=utts,
              chunks=chunk, fraction=fraction, seed=seed,
              datasets=[list(d) for d in datasets], data_dir=os.path.abspath(data_dir))
  with open(os.path.join(out_dir, FEATURES_JSON), "w") as f:
    json.dump(meta, f, indent=1)
  log.info("%d feature rows of %d utterances in %s", rows_total, utts, out_dir)
  return meta


def feature_chunks(feat_dir: str) -> Callable[[], Iterator[np.ndarray]]:
  """A callable returning a fresh iterator over the saved chunks (memory-mapped)."""
  with open(os.path.join(feat_dir, FEATURES_JSON)) as f:
    n = json.load(f)["chunks"]
  paths = [os.path.join(feat_dir, f"features-{i:05d}.npy") for i in range(n)]

  def chunks():
    for p in paths:
      yield np.load(p, mmap_mode="r")

  return chunks


def main(argv: Sequence[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--data_dir", required=True, help="TFDS data dir (tfds_builder.prepare)")
  p.add_argument("--datasets", required=True, help="corpus:lang[:split],... (split: train)")
  p.add_argument("--features", default="mfcc", help="mfcc | layer:<L>")
  p.add_argument("--workdir", default="", help="trained model workdir for layer features")
  p.add_argument("--step", type=int, default=None)
  p.add_argument("--fraction", type=float, default=0.1)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", required=True)
  args = p.parse_args(argv)
  logging.basicConfig(level=logging.INFO)
  spec = FeatureSpec.parse(args.features, args.workdir, args.step)
  meta = extract(os.path.expanduser(args.data_dir), parse_datasets(args.datasets), spec,
                 os.path.expanduser(args.out), fraction=args.fraction, seed=args.seed)
  print(f"{meta['rows']} x {meta['dim']} features of {meta['utterances']} utterances -> "
        f"{args.out}")


if __name__ == "__main__":
  main()
