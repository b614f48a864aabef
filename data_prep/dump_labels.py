r"""Frame labels (k-means cluster ids) for every utterance of the listed TFDS datasets.

  python -m data_prep.dump_labels --data_dir ~/mlasr_data/demo/tfds \
      --datasets commonvoice:en:train,commonvoice:en:dev,voxpopuli:cs:train \
      --kmeans ~/mlasr_runs/hubert_it1/kmeans --out ~/mlasr_runs/hubert_it1/labels

Features are recomputed with the spec saved beside the k-means model (features.json), then
assigned to the nearest centroid. Output layout: see mlasr.targets.labels. Resumable: each
shard of `shard_size` utterances is written atomically and skipped when present; a split's
index is written last, so an interrupted run is finished by rerunning the same command.
Writes diagnostics.{json,md}: cluster usage (histogram, entropy, perplexity) and a CRUDE
character purity / PNMI (characters of text_norm spread uniformly over each utterance's
frames; a stand-in for the phone purity of the HuBERT paper, not a forced alignment).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
from typing import Sequence

import numpy as np
import tqdm
from array_record.python import array_record_module as arm

from data_prep import extract_features
from mlasr import features
from mlasr.data import tfds_builder
from mlasr.targets import kmeans as kmeans_lib, labels as labels_lib

log = logging.getLogger(__name__)


def _meta(kmeans_dir: str, model: kmeans_lib.KMeans, feat_meta: dict, datasets) -> dict:
  return dict(label_rate=feat_meta["label_rate"], num_classes=int(len(model.centroids)),
              frame_spec=feat_meta["frame_spec"], features=feat_meta["spec"],
              feature_dim=feat_meta["dim"], kmeans="kmeans",
              kmeans_source=os.path.abspath(kmeans_dir),
              datasets=[list(d) for d in datasets],
              dtype=str(labels_lib.label_dtype(int(len(model.centroids)))))


def dump(data_dir: str, datasets: Sequence[tuple[str, str, str]], kmeans_dir: str,
         labels_dir: str, *, shard_size: int = 2000, diagnostics: bool = True) -> dict:
  """Dumps labels (see module docstring); returns meta.json's content."""
  with open(os.path.join(kmeans_dir, extract_features.FEATURES_JSON)) as f:
    feat_meta = json.load(f)
  model = kmeans_lib.KMeans.load(kmeans_dir)
  os.makedirs(labels_dir, exist_ok=True)
  meta_path = os.path.join(labels_dir, labels_lib.META_FILE)
  if os.path.isfile(meta_path):
    with open(meta_path) as f:
      old = json.load(f)
    if old["features"] != feat_meta["spec"] or old["num_classes"] != len(model.centroids):
      raise ValueError(f"{labels_dir} holds labels of another feature spec / k-means "
                       f"({old['features']}, K={old['num_classes']}); use a new --out")
    datasets = [tuple(d) for d in old["datasets"]] + [
        d for d in datasets if list(d) not in old["datasets"]]
  km_out = os.path.join(labels_dir, "kmeans")
  if not os.path.isfile(os.path.join(km_out, "kmeans.npz")):
    os.makedirs(km_out, exist_ok=True)
    for name in ("kmeans.json", extract_features.FEATURES_JSON, "fit.json"):
      if os.path.isfile(os.path.join(kmeans_dir, name)):
        shutil.copy(os.path.join(kmeans_dir, name), os.path.join(km_out, name))
    shutil.copy(os.path.join(kmeans_dir, "kmeans.npz"), os.path.join(km_out, "kmeans.npz"))
  meta = _meta(kmeans_dir, model, feat_meta, datasets)
  labels_lib.write_json(meta_path, meta)

  spec = extract_features.FeatureSpec(**feat_meta["spec"])
  featurizer = None
  frame_spec = features.FrameSpec.from_json(feat_meta["frame_spec"])
  k = len(model.centroids)
  for corpus, lang, split in datasets:
    index_path = os.path.join(labels_dir, labels_lib.index_file(corpus, lang, split))
    if os.path.isfile(index_path):
      log.info("%s/%s/%s: labels already dumped", corpus, lang, split)
      continue
    col = tfds_builder.load_index(data_dir, corpus, lang)[split]
    n = len(col["utt_id"])
    num_shards = max(1, math.ceil(n / shard_size))
    names = [labels_lib.shard_file(corpus, lang, split, s) for s in range(num_shards)]
    for s in tqdm.trange(num_shards, desc=f"labels {corpus}/{lang}/{split}", mininterval=5.0):
      path = os.path.join(labels_dir, names[s])
      if os.path.isfile(path):
        continue
      featurizer = featurizer or extract_features.make_featurizer(spec)
      rows = range(s * shard_size, min(n, (s + 1) * shard_size))
      waves = [w for _, _, w in extract_features.iter_audio(
          data_dir, [(corpus, lang, split)], rows=rows)]
      feats = featurizer(waves)
      out = []
      for i, f in zip(rows, feats):
        want = frame_spec.num_frames(col["num_samples"][i])
        if len(f) != want:
          raise RuntimeError(f"{corpus}/{lang}/{split} {col['utt_id'][i]}: {len(f)} feature "
                             f"frames, expected {want}; feature/frame-spec mismatch")
        out.append(model.predict(f) if len(f) else np.zeros([0], np.int32))
      labels_lib.write_shard(path, out, k)
    utts = {}
    for s, name in enumerate(names):
      reader = arm.ArrayRecordReader(os.path.join(labels_dir, name))
      lengths = [len(r) // labels_lib.label_dtype(k).itemsize
                 for r in reader.read(list(range(reader.num_records())))]
      reader.close()
      for r, length in enumerate(lengths):
        utts[col["utt_id"][s * shard_size + r]] = [s, r, length]
    if len(utts) != n:
      raise RuntimeError(f"{index_path}: {len(utts)} labelled utterances for {n} in the index;"
                         " delete the split's shards and rerun")
    labels_lib.write_json(index_path, dict(shards=names, utts=utts))
  if diagnostics:
    write_diagnostics(data_dir, labels_dir)
  return meta


def _entropy(p: np.ndarray) -> float:
  p = p[p > 0]
  return float(-(p * np.log2(p)).sum())


def write_diagnostics(data_dir: str, labels_dir: str) -> dict:
  """Cluster usage and crude (uniform-duration) character purity; JSON + Markdown."""
  store = labels_lib.LabelStore(labels_dir)
  k = store.num_classes
  usage = np.zeros(k, np.int64)
  joint: dict[str, dict[str, np.ndarray]] = {}
  for corpus, lang, split in (tuple(d) for d in store.meta["datasets"]):
    col = tfds_builder.load_index(data_dir, corpus, lang)[split]
    per_lang = joint.setdefault(lang, {})
    for utt_id, text in zip(col["utt_id"], col["text_norm"]):
      lab = store.get(corpus, lang, split, utt_id)
      usage += np.bincount(lab, minlength=k)
      chars = [c for c in text if not c.isspace()]
      if not chars or not len(lab):
        continue
      which = (np.arange(len(lab)) * len(chars)) // len(lab)
      for ci in np.unique(which):
        per_lang.setdefault(chars[ci], np.zeros(k, np.int64))
        per_lang[chars[ci]] += np.bincount(lab[which == ci], minlength=k)
  p = usage / max(usage.sum(), 1)
  out = dict(num_classes=k, frames=int(usage.sum()), used_clusters=int((usage > 0).sum()),
             entropy_bits=_entropy(p), perplexity=float(2 ** _entropy(p)),
             max_entropy_bits=float(np.log2(k)), usage=usage.tolist(), purity={},
             purity_note="CRUDE: characters of text_norm spread uniformly over the frames of "
                         "each utterance (no forced alignment); compare runs, not papers")
  for lang, table in sorted(joint.items()):
    if not table:
      continue
    m = np.stack([table[c] for c in sorted(table)]).astype(np.float64)  # [chars, K]
    n = m.sum()
    pj = m / n
    pc, pk = pj.sum(1), pj.sum(0)
    mi = _entropy(pc) + _entropy(pk) - _entropy(pj.ravel())
    out["purity"][lang] = dict(
        frames=int(n), chars=len(table),
        char_purity=float(m.max(0).sum() / n),     # HuBERT "phone purity", chars for phones
        cluster_purity=float(m.max(1).sum() / n),
        pnmi=float(mi / max(_entropy(pc), 1e-12)))
  labels_lib.write_json(os.path.join(labels_dir, "diagnostics.json"), out)
  lines = [f"# Label diagnostics: {labels_dir}", "",
           f"K = {k}, frames = {out['frames']}, used clusters = {out['used_clusters']}, "
           f"usage entropy = {out['entropy_bits']:.2f} bits (max {out['max_entropy_bits']:.2f}),"
           f" perplexity = {out['perplexity']:.1f}", "",
           f"Purity ({out['purity_note']}):", "",
           "| lang | frames | chars | char purity | cluster purity | PNMI |",
           "|---|---:|---:|---:|---:|---:|"]
  for lang, r in out["purity"].items():
    lines.append(f"| {lang} | {r['frames']} | {r['chars']} | {r['char_purity']:.3f} | "
                 f"{r['cluster_purity']:.3f} | {r['pnmi']:.3f} |")
  hist = np.sort(usage)[::-1]
  lines += ["", "Cluster usage (frames, most to least used): " +
            " ".join(str(int(v)) for v in hist), ""]
  with open(os.path.join(labels_dir, "diagnostics.md"), "w", encoding="utf-8") as f:
    f.write("\n".join(lines))
  return out


def main(argv: Sequence[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--data_dir", required=True)
  p.add_argument("--datasets", required=True, help="corpus:lang[:split],...")
  p.add_argument("--kmeans", required=True, help="dir written by fit_kmeans")
  p.add_argument("--out", required=True, help="labels dir")
  p.add_argument("--shard_size", type=int, default=2000)
  args = p.parse_args(argv)
  logging.basicConfig(level=logging.INFO)
  meta = dump(os.path.expanduser(args.data_dir),
              extract_features.parse_datasets(args.datasets), os.path.expanduser(args.kmeans),
              os.path.expanduser(args.out), shard_size=args.shard_size)
  print(f"labels ({meta['num_classes']} classes at {meta['label_rate']} Hz) in {args.out}; "
        f"see {os.path.join(args.out, 'diagnostics.md')}")


if __name__ == "__main__":
  main()
