r"""Scores a trained model on every language of a split.

  python -m mlasr.evaluate --workdir ~/mlasr_runs/demo_ctc --split test

Reads the config saved in the workdir, restores the latest checkpoint, decodes every utterance
of the split (greedy CTC), and writes `<workdir>/eval_<split>/`: results.json, results.md
(per-language CER/WER with 95% bootstrap CIs, S/D/I counts, macro average, and the same table
per speaker group, e.g. seen/unseen voices), cer_by_lang.png, NIST trn files for sclite and
per_utt.tsv. CER/WER are corpus-level: total edits / total reference units, on normalized text.
"""
from __future__ import annotations

import collections
import importlib
import os

from absl import app, flags, logging
import jax
import numpy as np
from flax import nnx

from mlasr import checkpoint as ckpt_lib
from mlasr import config_lib
from mlasr import sharding as sharding_lib
from mlasr.data import inputs
from mlasr.evaluators import report
from mlasr.models import surgery

def transcribe(predict_fn, eval_data, tokenizer) -> list[dict]:
  """Runs `predict_fn(host batch) -> (tokens, lengths)` over `eval_data`; a dict per utterance."""
  utts = []
  for batch in eval_data.batches():
    tokens, lengths = jax.device_get(predict_fn(batch))
    for i in np.flatnonzero(batch["example_mask"]):
      lang = str(batch["lang"][i])
      utts.append(dict(
          utt_id=str(batch["utt_id"][i]), lang=lang, corpus=str(batch["corpus"][i]),
          speaker=str(batch["speaker"][i]), ref=str(batch["text_norm"][i]),
          hyp=tokenizer.decode(tokens[i, :lengths[i]].tolist(), lang),
          seconds=float(batch["audio_mask"][i].sum()) / inputs.SAMPLE_RATE))
  return utts


def score(utts: list[dict], n_boot: int = 1000, meta: dict | None = None) -> dict:
  """Results structure of mlasr.evaluators.report (languages, groups, macro, all)."""
  return report.build_results(utts, n_boot=n_boot, seed=0, meta=meta or {})


def speaker_groups(root: str) -> dict[tuple[str, str, str], str]:
  """(corpus, lang, speaker) -> group from `<root>/speakers.tsv` when the corpus has one.

  The generated benchmark marks festival voices "unseen" (no such engine in training);
  real corpora have no such file and get no group rows.
  """
  path = os.path.join(os.path.expanduser(root), "speakers.tsv")
  if not os.path.exists(path):
    return {}
  groups = {}
  with open(path, encoding="utf-8") as f:
    header = f.readline().rstrip("\n").split("\t")
    for line in f:
      row = dict(zip(header, line.rstrip("\n").split("\t")))
      groups[(row["corpus"], row["lang"], row["speaker_id"])] = row["group"]
  return groups


def restore_model(workdir: str, step: int | None = None):
  """(config, tokenizer, model) with the parameters of a checkpoint in `workdir`."""
  config = config_lib.load_config(workdir)
  tokenizer = inputs.get_tokenizer(config, workdir)
  model_lib = importlib.import_module(f"mlasr.models.{config.model.name}")
  model = model_lib.build(config, tokenizer.vocab_size, nnx.Rngs(params=0, dropout=0))
  step = ckpt_lib.latest_step(workdir) if step is None else step
  if step is None:
    raise FileNotFoundError(f"No checkpoint in {workdir}/checkpoints; train first.")
  state = nnx.state(model, nnx.Param)
  nnx.replace_by_pure_dict(state, surgery.read_params(workdir, step))
  nnx.update(model, state)
  return config, tokenizer, model, step


def run(workdir: str, split: str, n_boot: int = 1000, step: int | None = None) -> dict:
  config, tokenizer, model, step = restore_model(workdir, step)
  task = importlib.import_module(f"mlasr.tasks.{config.task}")
  graphdef, state = nnx.split(model)
  predict = jax.jit(lambda state, batch: task.predict(nnx.merge(graphdef, state), batch))
  batch_sharding = sharding_lib.batch_sharding(sharding_lib.make_mesh(config.get("mesh")),
                                               sharding_lib.get_rules(config))
  utts = transcribe(lambda batch: predict(state, sharding_lib.to_device(batch, batch_sharding)),
                    inputs.eval_data(config, split), tokenizer)
  groups = speaker_groups(config.data.root)
  for u in utts:
    if (group := groups.get((u["corpus"], u["lang"], u["speaker"]))) is not None:
      u["group"] = group
  meta = dict(workdir=os.path.abspath(workdir), split=split, step=step,
              sources=list(config.data.sources))
  results = score(utts, n_boot, meta)
  by_group = collections.defaultdict(list)
  for u in utts:
    if "group" in u:
      by_group[u["group"]].append(u)
  results["by_group"] = {group: score(group_utts, n_boot, dict(meta, group=group))
                         for group, group_utts in sorted(by_group.items())}
  out_dir = os.path.join(workdir, f"eval_{split}")
  paths = report.write_report(results, out_dir, utts)
  config_lib.save_config(config, out_dir)
  print(report.to_markdown(results))
  print(f"Results written to {out_dir}: {', '.join(sorted(paths))}")
  return results


def main(argv):
  del argv
  run(flags.FLAGS.workdir, flags.FLAGS.split, flags.FLAGS.n_boot, flags.FLAGS.step)


if __name__ == "__main__":
  # Flags are defined here, not at import, so train.py can import this module.
  flags.DEFINE_string("workdir", None, "Training workdir (holds config.json and checkpoints).")
  flags.DEFINE_string("split", "test", "Split to score: dev, test, ...")
  flags.DEFINE_integer("n_boot", 1000, "Bootstrap resamples for the confidence intervals.")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
  flags.mark_flags_as_required(["workdir"])
  app.run(main)
