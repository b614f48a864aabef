"""Corpus conversion throughput: clips per second per core, single process vs Beam DirectRunner.

Both conversions of the same (corpus, lang) datasets run in one process, one after the
other, into fresh data dirs: `tfds_builder.prepare` with one decoding thread (one core), and
the Beam path on the DirectRunner with `--workers` SDK worker processes
(`--direct_running_mode=multi_processing`), each worker one core. Their indexes and data
reports are checked equal. Also timed: the index written from the rows the build kept
against the earlier full read of every record (`_write_index` without rows).

  python -m benchmarks.conversion_throughput --root ~/mlasr_data/demo \\
      [--datasets commonvoice:hi,voxpopuli:fi] [--workers 2] [--out benchmarks/results/DIR]

Writes conversion_throughput.json and conversion_throughput.md under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import tempfile
import time

from mlasr.data import tfds_builder


def _cpu() -> float:
  own = resource.getrusage(resource.RUSAGE_SELF)
  kids = resource.getrusage(resource.RUSAGE_CHILDREN)
  return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def convert(root: str, data_dir: str, datasets, **kwargs) -> dict:
  """Wall and CPU seconds of preparing every dataset; clips = records + refused clips."""
  t0, c0 = time.perf_counter(), _cpu()
  for corpus, lang in datasets:
    tfds_builder.prepare(root, data_dir, corpus, lang, **kwargs)
  wall, cpu = time.perf_counter() - t0, _cpu() - c0
  records = clips = 0
  seconds = 0.0
  for corpus, lang in datasets:
    report = tfds_builder.load_report(data_dir, corpus, lang).to_dict()
    kept = [e for e in report["kept"] if not e["split"].startswith("train_")]  # subsets
    records += sum(e["count"] for e in kept)  # are copies of train clips: not counted
    seconds += sum(e["hours"] for e in kept) * 3600
    clips += sum(e["count"] for e in kept) + sum(
        e["count"] for e in report["skipped"]
        if e["reason"].startswith(("audio_", "error(", "too_short", "text_too_long")))
  return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "clips": clips,
          "records": records, "audio_hours": round(seconds / 3600, 4)}


def _same(a: str, b: str, datasets) -> bool:
  for corpus, lang in datasets:
    for name in (tfds_builder.INDEX_FILE, tfds_builder.REPORT_FILE):
      files = [os.path.join(tfds_builder.dataset_dir(d, corpus, lang), name) for d in (a, b)]
      with open(files[0], encoding="utf-8") as f, open(files[1], encoding="utf-8") as g:
        if json.load(f) != json.load(g):
          return False
  return True


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--root", default=os.path.expanduser("~/mlasr_data/demo"))
  p.add_argument("--datasets", default="commonvoice:hi,voxpopuli:fi")
  p.add_argument("--workers", type=int, default=2)
  p.add_argument("--chunk_size", type=int, default=tfds_builder.BEAM_CHUNK_CLIPS)
  p.add_argument("--out", default=os.path.join("benchmarks", "results", "conversion"))
  args = p.parse_args()
  datasets = [tuple(d.split(":")) for d in args.datasets.split(",")]
  tmp = tempfile.mkdtemp(prefix="conversion_throughput_")
  try:
    single_dir, beam_dir = os.path.join(tmp, "single"), os.path.join(tmp, "beam")
    runs = {"single_process": convert(args.root, single_dir, datasets, num_workers=1)}
    runs["single_process"]["cores"] = 1
    print("single process:", runs["single_process"], flush=True)
    runs["beam_direct"] = convert(
        args.root, beam_dir, datasets, beam_runner="DirectRunner", chunk_size=args.chunk_size,
        beam_options=f"--direct_num_workers={args.workers} "
        "--direct_running_mode=multi_processing")
    runs["beam_direct"]["cores"] = args.workers
    print("beam DirectRunner:", runs["beam_direct"], flush=True)
    for r in runs.values():
      r["clips_per_s"] = round(r["clips"] / r["wall_s"], 2)
      r["clips_per_s_per_core"] = round(r["clips"] / r["wall_s"] / r["cores"], 2)
      r["cpu_s_per_clip"] = round(r["cpu_s"] / r["clips"], 4)
    index = {}
    for corpus, lang in datasets:  # the earlier second pass: every record read back
      out = tfds_builder.dataset_dir(single_dir, corpus, lang)
      t0 = time.perf_counter()
      tfds_builder._write_index(out)  # pylint: disable=protected-access
      index[f"{corpus}:{lang}"] = round(time.perf_counter() - t0, 2)
    same = _same(single_dir, beam_dir, datasets)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  result = {"root": args.root, "datasets": args.datasets, "workers": args.workers,
            "chunk_size": args.chunk_size, "cpu_count": os.cpu_count(),
            "machine": platform.processor() or platform.machine(), "runs": runs,
            "index_full_read_s": index, "index_and_report_equal": same,
            "date": time.strftime("%Y-%m-%d")}
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "conversion_throughput.json"), "w", encoding="utf-8") as f:
    json.dump(result, f, indent=1)
  lines = [f"# Conversion throughput ({args.datasets}, {result['date']})", "",
           f"Root `{args.root}`; {os.cpu_count()} cores; Beam chunk {args.chunk_size} clips; "
           f"index and report equal between the two: {same}.", "",
           "| path | cores | clips | audio h | wall s | CPU s | clips/s | clips/s/core | "
           "CPU s/clip |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for name, r in runs.items():
    lines.append(f"| {name} | {r['cores']} | {r['clips']} | {r['audio_hours']} | "
                 f"{r['wall_s']} | {r['cpu_s']} | {r['clips_per_s']} | "
                 f"{r['clips_per_s_per_core']} | {r['cpu_s_per_clip']} |")
  lines += ["", "Index by a full read of the records (the earlier second pass; now written "
            "from the build's rows): " + ", ".join(f"{k} {v} s" for k, v in index.items())]
  with open(os.path.join(args.out, "conversion_throughput.md"), "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))
  print(f"wrote {args.out}/conversion_throughput.{{json,md}}")
  if not same:
    raise SystemExit("the Beam conversion differs from the single-process one")


if __name__ == "__main__":
  main()
