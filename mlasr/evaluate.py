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
import json
import os

from absl import app, flags, logging
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mlasr import checkpoint as ckpt_lib
from mlasr import config_lib
from mlasr import sharding as sharding_lib
from mlasr.data import inputs
from mlasr.evaluators import report
from mlasr.models import adapters as adapters_lib
from mlasr.models import surgery
from mlasr.tasks import lid

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
  """(config, tokenizer, model, step) with the parameters of a checkpoint in `workdir`.

  The tokenizer is None for tasks without one (lid).
  """
  config = config_lib.load_config(workdir)
  task = importlib.import_module(f"mlasr.tasks.{config.task}")
  targets = task.setup(config, workdir)
  model_lib = importlib.import_module(f"mlasr.models.{config.model.name}")
  model = model_lib.build(config, targets["num_outputs"], nnx.Rngs(params=0, dropout=0),
                          **targets.get("model_kwargs", {}))
  tokenizer = targets["tokenizer"]
  step = ckpt_lib.latest_step(workdir) if step is None else step
  if step is None:
    raise FileNotFoundError(f"No checkpoint in {workdir}/checkpoints; train first.")
  surgery.assign_params(model, surgery.read_params(workdir, step))
  return config, tokenizer, model, step


def jitted_predict(config, model):
  """batch (host numpy) -> task.predict outputs, jitted once per batch shape."""
  task = importlib.import_module(f"mlasr.tasks.{config.task}")
  graphdef, state = nnx.split(model)
  predict = jax.jit(lambda state, batch: task.predict(nnx.merge(graphdef, state), batch))
  batch_sharding = sharding_lib.batch_sharding(sharding_lib.make_mesh(config.get("mesh")),
                                               sharding_lib.get_rules(config))
  return lambda batch: predict(state, sharding_lib.to_device(batch, batch_sharding))


def load_adapter(model, path: str, lang: str | None = None) -> str:
  """Loads an exported language adapter (+ head) into `model` in place; returns the language."""
  current = surgery.flatten(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
  flat, lang, _ = adapters_lib.import_language(current, path, lang)
  # Same dtype, placement and committedness (part of jit's cache key) as the leaves
  # replaced, so compiled steps are reused as they are.
  def like(new, old):
    if new is old:
      return old
    new = new.astype(old.dtype)
    if not isinstance(old, jax.Array):  # a model restored from a checkpoint holds numpy
      return new
    return jax.device_put(new, old.sharding) if old.committed else jnp.asarray(new)
  flat = {k: like(v, current[k]) for k, v in flat.items()}
  surgery.assign_params(model, surgery.unflatten_like(
      nnx.to_pure_dict(nnx.state(model, nnx.Param)), flat))
  return lang


def language_chooser(adapter_lang: str, model_langs, lid_workdir: str = ""):
  """batch -> lang_id [B] for the CTC model: oracle (''), one language, or 'auto' (LID)."""
  if not adapter_lang:
    return None
  if adapter_lang != "auto":
    if adapter_lang not in model_langs:
      raise ValueError(f"--adapter_lang={adapter_lang!r}: the model has {list(model_langs)}")
    index = list(model_langs).index(adapter_lang)
    return lambda batch: np.full_like(batch["lang_id"], index)
  if not lid_workdir:
    raise ValueError("--adapter_lang=auto needs --lid_workdir (a trained experiments/lid.py run)")
  lid_config, _, lid_model, _ = restore_model(lid_workdir)
  lid_langs = list(lid_model.langs)
  if missing := [l for l in lid_langs if l not in model_langs]:
    raise ValueError(f"LID model {lid_workdir} predicts {missing}, which the ASR model lacks.")
  to_model = np.array([list(model_langs).index(l) for l in lid_langs])
  lid_predict = jitted_predict(lid_config, lid_model)
  return lambda batch: to_model[np.asarray(jax.device_get(lid_predict(batch)[0]))]


def run(workdir: str, split: str, n_boot: int = 1000, step: int | None = None,
        adapter_lang: str = "", adapter_file: str = "", lid_workdir: str = "") -> dict:
  """Scores `workdir` on `split` and writes the report to <workdir>/eval_<split>[_<mode>]/.

  adapter_lang: '' uses each utterance's true language (oracle); a code forces that
  language's adapter/head on every utterance; 'auto' picks it per utterance with the LID
  model in `lid_workdir` (and reports LID accuracy beside the CER).
  adapter_file: an exported adapter (adapters.export_language) loaded before decoding.
  """
  config, tokenizer, model, step = restore_model(workdir, step)
  if config.task == "lid":
    return run_lid(config, model, workdir, split, step)
  loaded = load_adapter(model, adapter_file) if adapter_file else None
  choose = language_chooser(adapter_lang, getattr(model, "langs", ()), lid_workdir)
  predict = jitted_predict(config, model)
  chosen_ids = []

  def predict_with_language(batch):
    if choose is not None:
      real = batch["example_mask"] > 0
      chosen = choose(batch)
      chosen_ids.append((batch["lang_id"][real], chosen[real]))
      batch = dict(batch, lang_id=chosen)
    return predict(batch)

  utts = transcribe(predict_with_language, inputs.eval_data(config, split), tokenizer)
  groups = speaker_groups(config.data.root)
  for u in utts:
    if (group := groups.get((u["corpus"], u["lang"], u["speaker"]))) is not None:
      u["group"] = group
  meta = dict(workdir=os.path.abspath(workdir), split=split, step=step,
              sources=list(config.data.sources), adapter_lang=adapter_lang or "oracle",
              adapter_file=adapter_file, adapter_file_lang=loaded,
              lid_workdir=os.path.abspath(lid_workdir) if lid_workdir else "")
  results = score(utts, n_boot, meta)
  by_group = collections.defaultdict(list)
  for u in utts:
    if "group" in u:
      by_group[u["group"]].append(u)
  results["by_group"] = {group: score(group_utts, n_boot, dict(meta, group=group))
                         for group, group_utts in sorted(by_group.items())}
  if adapter_lang == "auto":
    true = np.concatenate([t for t, _ in chosen_ids])
    pred = np.concatenate([p for _, p in chosen_ids])
    results["lid"] = lid.scores(true, pred, list(model.langs))
  suffix = f"_{adapter_lang}" if adapter_lang else ""
  out_dir = os.path.join(workdir, f"eval_{split}{suffix}")
  paths = report.write_report(results, out_dir, utts)
  config_lib.save_config(config, out_dir)
  print(report.to_markdown(results))
  if "lid" in results:
    print(lid.confusion_markdown(results["lid"]))
  print(f"Results written to {out_dir}: {', '.join(sorted(paths))}")
  return results


def run_lid(config, model, workdir: str, split: str, step: int) -> dict:
  """LID accuracy and confusion matrix -> <workdir>/eval_<split>/lid.json and lid.md."""
  eval_data = inputs.eval_data(config, split)
  true, pred, speakers = lid.classify(jitted_predict(config, model), eval_data)
  langs = list(model.langs)
  result = dict(lid.scores(true, pred, langs), split=split, step=step,
                workdir=os.path.abspath(workdir))
  groups = speaker_groups(config.data.root)
  utt_groups = np.array([groups.get(s, "") for s in speakers], dtype=object)
  result["by_group"] = {g: lid.scores(true[utt_groups == g], pred[utt_groups == g], langs)
                        for g in sorted(set(utt_groups) - {""})}
  out_dir = os.path.join(workdir, f"eval_{split}")
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "lid.json"), "w", encoding="utf-8") as f:
    json.dump(result, f, indent=1)
  with open(os.path.join(out_dir, "lid.md"), "w", encoding="utf-8") as f:
    f.write(lid.confusion_markdown(result))
  config_lib.save_config(config, out_dir)
  print(lid.confusion_markdown(result))
  return result


def main(argv):
  del argv
  run(flags.FLAGS.workdir, flags.FLAGS.split, flags.FLAGS.n_boot, flags.FLAGS.step,
      flags.FLAGS.adapter_lang, flags.FLAGS.adapter_file, flags.FLAGS.lid_workdir)


if __name__ == "__main__":
  # Flags are defined here, not at import, so train.py can import this module.
  flags.DEFINE_string("workdir", None, "Training workdir (holds config.json and checkpoints).")
  flags.DEFINE_string("split", "test", "Split to score: dev, test, ...")
  flags.DEFINE_integer("n_boot", 1000, "Bootstrap resamples for the confidence intervals.")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
  flags.DEFINE_string("adapter_lang", "", "Per-language adapters/heads: '' = each utterance's "
                      "true language, a code = that language for all, 'auto' = LID picks.")
  flags.DEFINE_string("adapter_file", "", "Load this exported adapter (.safetensors) first.")
  flags.DEFINE_string("lid_workdir", "", "Trained LID run for --adapter_lang=auto.")
  for name in ("adapter_lang", "adapter_file", "lid_workdir"):
    flags.DEFINE_alias(name.replace("_", "-"), name)  # --adapter-lang, as MMS spells it
  flags.mark_flags_as_required(["workdir"])
  app.run(main)
