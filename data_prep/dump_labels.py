r"""Frame labels (k-means cluster ids) for every utterance of the listed TFDS datasets.

  python -m data_prep.dump_labels --data_dir ~/mlasr_data/demo/tfds \
      --datasets commonvoice:en:train,commonvoice:en:dev,voxpopuli:cs:train \
      --kmeans ~/mlasr_runs/hubert_it1/kmeans --out ~/mlasr_runs/hubert_it1/labels

Features are recomputed with the spec saved beside the k-means model (features.json), then
assigned to the nearest centroid. Output layout: see mlasr.targets.labels; the k-means model
and its features.json / fit.json are copied into `<out>/kmeans/`.

Resumable: each shard of `shard_size` utterances is written atomically, then its done marker
(`*.done.json`: utterance ids and label counts); a shard with both is skipped, so an
interrupted run is finished by rerunning the same command. Sharded over processes or hosts:

  python -m data_prep.dump_labels ... --process_index $I --num_processes $P   # I = 0..P-1

(defaults: jax.process_index() / jax.process_count()). The (dataset, shard) list is fixed by
the datasets and shard_size; process I labels units I, I + P, ... of it. A split's index is
written by whichever process finds all of that split's done markers (the last to finish, or
any rerun), and the result is byte-identical to a one-process dump.

The call that finds every split indexed writes diagnostics.{json,md}: cluster usage
(histogram, entropy, perplexity) and a CRUDE character purity / PNMI (characters of text_norm
spread uniformly over each utterance's frames; a stand-in for the phone purity of the HuBERT
paper, not a forced alignment).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import uuid
from typing import Sequence

import jax
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


def _copy_atomic(src: str, dst: str) -> None:
  tmp = f"{dst}.{uuid.uuid4().hex}.tmp"
  shutil.copy(src, tmp)
  os.replace(tmp, dst)


def _local_mesh() -> jax.sharding.Mesh:
  """This process's devices only: each dump process assigns its own shards."""
  devices = jax.local_devices()
  return jax.make_mesh((len(devices),), ("data",), devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,))


def work_units(data_dir: str, datasets: Sequence[tuple[str, str, str]], shard_size: int
               ) -> list[tuple[tuple[str, str, str], int, range]]:
  """Every (dataset, shard, rows) of a dump, in one fixed order (datasets, then shards).

  Process p of P takes units p, p + P, p + 2P, ... of this list (`dump`), so the split of the
  work depends only on the datasets, the index files and shard_size."""
  units = []
  for d in datasets:
    n = len(tfds_builder.load_index(data_dir, d[0], d[1])[d[2]]["utt_id"])
    for s in range(max(1, math.ceil(n / shard_size))):
      units.append((tuple(d), s, range(s * shard_size, min(n, (s + 1) * shard_size))))
  return units


def _read_done(labels_dir: str, dataset, shard: int, rows: range, ids, shard_size: int
               ) -> dict | None:
  """The shard's done marker if the shard is finished (marker and shard both present)."""
  path = os.path.join(labels_dir, labels_lib.done_file(*dataset, shard))
  if not (os.path.isfile(path)
          and os.path.isfile(os.path.join(labels_dir, labels_lib.shard_file(*dataset, shard)))):
    return None
  with open(path, encoding="utf-8") as f:
    done = json.load(f)
  if done["shard_size"] != shard_size or done["utt_ids"] != [ids[i] for i in rows]:
    raise ValueError(f"{path}: shard dumped with shard_size {done['shard_size']} or other "
                     f"utterances; rerun with --shard_size {done['shard_size']} or a new --out")
  return done


def dump(data_dir: str, datasets: Sequence[tuple[str, str, str]], kmeans_dir: str,
         labels_dir: str, *, shard_size: int = 2000, diagnostics: bool = True,
         process_index: int | None = None, num_processes: int | None = None) -> dict:
  """Dumps labels (see module docstring); returns meta.json's content.

  With num_processes P > 1 (default: jax.process_count(); process_index: jax.process_index()),
  this call labels only its share of the shards (`work_units`); the split indexes (and the
  diagnostics) are written by whichever call finds every shard of a split done, so the last
  process to finish, or any rerun, completes the directory. Output is identical for any P.
  """
  process_index = jax.process_index() if process_index is None else process_index
  num_processes = jax.process_count() if num_processes is None else num_processes
  if not 0 <= process_index < num_processes:
    raise ValueError(f"process_index {process_index} not in [0, {num_processes})")
  with open(os.path.join(kmeans_dir, extract_features.FEATURES_JSON)) as f:
    feat_meta = json.load(f)
  model = kmeans_lib.KMeans.load(kmeans_dir, mesh=_local_mesh())
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
    for name in ("kmeans.json", extract_features.FEATURES_JSON, "fit.json", "kmeans.npz"):
      if os.path.isfile(os.path.join(kmeans_dir, name)):  # the .npz last: it marks the copy
        _copy_atomic(os.path.join(kmeans_dir, name), os.path.join(km_out, name))
  meta = _meta(kmeans_dir, model, feat_meta, datasets)
  labels_lib.write_json(meta_path, meta)

  spec = extract_features.FeatureSpec(**feat_meta["spec"])
  featurizer = None
  frame_spec = features.FrameSpec.from_json(feat_meta["frame_spec"])
  k = len(model.centroids)
  todo = [d for d in datasets if not os.path.isfile(
      os.path.join(labels_dir, labels_lib.index_file(*d)))]
  for d in datasets:
    if d not in todo:
      log.info("%s/%s/%s: labels already dumped", *d)
  # Units of every dataset (finished splits included), so the share of each process does not
  # depend on what other processes have already indexed when it starts.
  units = work_units(data_dir, datasets, shard_size)
  cols = {d: tfds_builder.load_index(data_dir, d[0], d[1])[d[2]] for d in todo}
  mine = [u for u in units[process_index::num_processes] if u[0] in cols]
  done_here = 0
  for dataset, s, rows in tqdm.tqdm(mine, desc=f"labels (process {process_index}/"
                                    f"{num_processes})", mininterval=5.0):
    col = cols[dataset]
    if _read_done(labels_dir, dataset, s, rows, col["utt_id"], shard_size) is not None:
      continue
    featurizer = featurizer or extract_features.make_featurizer(spec)
    waves = [w for _, _, w in extract_features.iter_audio(data_dir, [dataset], rows=rows)]
    feats = featurizer(waves)
    out = []
    for i, f in zip(rows, feats):
      want = frame_spec.num_frames(col["num_samples"][i])
      if len(f) != want:
        raise RuntimeError(f"{'/'.join(dataset)} {col['utt_id'][i]}: {len(f)} feature "
                           f"frames, expected {want}; feature/frame-spec mismatch")
      out.append(model.predict(f) if len(f) else np.zeros([0], np.int32))
    labels_lib.write_shard(os.path.join(labels_dir, labels_lib.shard_file(*dataset, s)), out, k)
    labels_lib.write_json(  # the done marker, after the shard
        os.path.join(labels_dir, labels_lib.done_file(*dataset, s)),
        dict(shard_size=shard_size, rows=[rows.start, rows.stop],
             utt_ids=[col["utt_id"][i] for i in rows], lengths=[int(len(o)) for o in out]))
    done_here += 1
  log.info("process %d/%d: %d of its %d shards labelled now, the rest were done", process_index,
           num_processes, done_here, len(mine))

  complete = True
  for dataset in todo:
    col = cols[dataset]
    shards = [(s, rows) for d, s, rows in units if d == dataset]
    dones = [_read_done(labels_dir, dataset, s, rows, col["utt_id"], shard_size)
             for s, rows in shards]
    if any(x is None for x in dones):
      complete = False
      log.info("%s: %d of %d shards done; the index is written by the process that finishes "
               "the last one (or by a rerun)", "/".join(dataset),
               sum(x is not None for x in dones), len(dones))
      continue
    names = [labels_lib.shard_file(*dataset, s) for s, _ in shards]
    utts = {}
    for (s, rows), name, done in zip(shards, names, dones):
      reader = arm.ArrayRecordReader(os.path.join(labels_dir, name))
      records = reader.num_records()
      reader.close()
      if records != len(rows):
        raise RuntimeError(f"{name}: {records} records for {len(rows)} utterances; delete it "
                           "and its .done.json and rerun")
      for r, (utt, length) in enumerate(zip(done["utt_ids"], done["lengths"])):
        utts[utt] = [s, r, length]
    n = len(col["utt_id"])
    index_path = os.path.join(labels_dir, labels_lib.index_file(*dataset))
    if len(utts) != n:
      raise RuntimeError(f"{index_path}: {len(utts)} labelled utterances for {n} in the index;"
                         " delete the split's shards and rerun")
    labels_lib.write_json(index_path, dict(shards=names, utts=utts))
  if diagnostics and complete:
    write_diagnostics(data_dir, labels_dir)
  meta["complete"] = complete  # not in meta.json: whether this call finished the directory
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
  md = os.path.join(labels_dir, "diagnostics.md")
  with open(f"{md}.{uuid.uuid4().hex}.tmp", "w", encoding="utf-8") as f:
    f.write("\n".join(lines))
  os.replace(f.name, md)
  return out


def main(argv: Sequence[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--data_dir", required=True)
  p.add_argument("--datasets", required=True, help="corpus:lang[:split],...")
  p.add_argument("--kmeans", required=True, help="dir written by fit_kmeans")
  p.add_argument("--out", required=True, help="labels dir")
  p.add_argument("--shard_size", type=int, default=2000)
  p.add_argument("--process_index", type=int, default=None,
                 help="this process's share of the shards (default: jax.process_index())")
  p.add_argument("--num_processes", type=int, default=None,
                 help="processes/hosts dumping into --out (default: jax.process_count())")
  args = p.parse_args(argv)
  logging.basicConfig(level=logging.INFO)
  meta = dump(os.path.expanduser(args.data_dir),
              extract_features.parse_datasets(args.datasets), os.path.expanduser(args.kmeans),
              os.path.expanduser(args.out), shard_size=args.shard_size,
              process_index=args.process_index, num_processes=args.num_processes)
  if meta["complete"]:
    print(f"labels ({meta['num_classes']} classes at {meta['label_rate']} Hz) in {args.out}; "
          f"see {os.path.join(args.out, 'diagnostics.md')}")
  else:
    print(f"this process's shards are in {args.out}; other processes' shards are missing "
          "(their process writes the indexes when it finishes, or rerun)")


if __name__ == "__main__":
  main()
