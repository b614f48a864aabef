r"""Scores a trained model on every language of a split, or on any other test set.

  python -m mlasr.evaluate --workdir ~/mlasr_runs/demo_ctc --split test
  python -m mlasr.evaluate --workdir RUN --data_root ~/cv-corpus-17.0 \
      --sources commonvoice:en,commonvoice:ru --split test,dev
  python -m mlasr.evaluate --workdir RUN --manifest colleague_test.tsv

Reads the config saved in the workdir, restores the latest checkpoint (`--checkpoint best`: the
parameters of the best dev metric, reported in eval_<split>_best/), decodes every utterance
of the split (greedy CTC by default, over the outputs of the utterance's language; with
`--adapter_lang auto` the language is identified first), and writes
`<workdir>/eval_<split>/`: results.json, results.md
(per-language CER/WER with 95% bootstrap CIs, S/D/I counts, macro average, and the same table
per speaker group, e.g. seen/unseen voices), cer_by_lang.png, NIST trn files for sclite,
per_utt.tsv, and the error analysis of mlasr.evaluators.errors (errors.md, errors.json,
cer_by_snr.png, cer_by_length.png). CER/WER are corpus-level: total edits / total reference
units, on normalized text.

Other test sets leave the run's config alone: `--data_root` (another Common Voice / VoxPopuli
root, prepared on first use into ITS OWN `<data_root>/tfds`, as mlasr.data.tfds_builder.prepare
does), `--sources` (corpus:lang pairs, default the run's), several comma-separated `--split`s,
or `--manifest` (TSV/JSONL with path, text, lang, optional speaker; mlasr.data.manifest). Their
reports go to `<workdir>/eval_on_<test set name>[_<decoder>]/`, never over the run's own
eval_<split>/. Languages the model was not trained on fail before anything is decoded;
reference characters its tokenizer does not know are counted in the report.
"""
from __future__ import annotations

import collections
import copy
import dataclasses
import importlib
import json
import os
import re

from absl import app, flags, logging
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mlasr import checkpoint as ckpt_lib
from mlasr import decoding
from mlasr import logs
from mlasr import config_lib
from mlasr import fileio
from mlasr import lm as lm_lib
from mlasr import sharding as sharding_lib
from mlasr.data import corpora
from mlasr.data import inputs
from mlasr.data import manifest as manifest_lib
from mlasr.evaluators import errors
from mlasr.evaluators import lid
from mlasr.evaluators import report
from mlasr.evaluators.asr import beam_transcribe, greedy_transcribe, score, utterance_log_probs
from mlasr.models import adapters as adapters_lib
from mlasr.models import surgery


def tuned_lm_settings(lm_dir: str, lm_kind: str) -> dict[str, dict]:
  """{lang: {lm_weight, word_bonus}} that `mlasr.lm --tune` chose on dev, per language."""
  path = os.path.join(lm_dir, "tuned.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} is missing: run python -m mlasr.lm --workdir RUN --tune "
                            "first (or pass --lm_weight and --word_bonus)")
  with open(path, encoding="utf-8") as f:
    return {lang: kinds[lm_kind] for lang, kinds in json.load(f).items() if lm_kind in kinds}


def _benchmark_tsv_rows(root: str, name: str):
  """Rows (header -> value dicts) of `<root>/<name>`; none when the corpus has no such file."""
  path = os.path.join(os.path.expanduser(root), name)
  if not os.path.exists(path):
    return
  with open(path, encoding="utf-8") as f:
    header = f.readline().rstrip("\n").split("\t")
    for line in f:
      yield dict(zip(header, line.rstrip("\n").split("\t")))


def speaker_groups(root: str) -> dict[tuple[str, str, str], str]:
  """(corpus, lang, speaker) -> group from `<root>/speakers.tsv` when the corpus has one.

  The generated benchmark marks the festival voices that no training clip was spoken by
  "unseen"; real corpora have no such file and get no group rows.
  """
  return {(row["corpus"], row["lang"], row["speaker_id"]): row["group"]
          for row in _benchmark_tsv_rows(root, "speakers.tsv")}


def tag_speaker_groups(utts: list[dict], groups: dict[tuple[str, str, str], str]) -> None:
  """Sets u["group"] (e.g. seen/unseen) for each utterance whose speaker `groups` knows."""
  for u in utts:
    if (group := groups.get((u["corpus"], u["lang"], u["speaker"]))) is not None:
      u["group"] = group


def benchmark_conditions(root: str) -> dict[tuple[str, str, str], dict[str, str]]:
  """(corpus, lang, utt_id) -> {noise, snr_db} from `<root>/clips.tsv` when the corpus has one.

  The generated benchmark records there which noise (none/white/pink/babble) it added to each
  clip and at what SNR; real corpora have no such file.
  """
  return {(row["corpus"], row["lang"], row["utt_id"]): {"noise": row.get("noise", ""),
                                                         "snr_db": row.get("snr_db", "")}
          for row in _benchmark_tsv_rows(root, "clips.tsv")}


def corpus_attributes(root: str, datasets, splits) -> dict[tuple[str, str, str], dict]:
  """(corpus, lang, utt_id) -> what the corpus states about the utterance: the speaker's
  gender, age and accent from its TSVs (corpora.Utterance.attributes), and the benchmark's
  noise and SNR. The prepared TFDS datasets do not carry them: they are read from the TSVs at
  scoring time, so datasets prepared before this existed need no rebuild."""
  out = collections.defaultdict(dict)
  wanted = [s for s in splits if s in corpora.SPLITS]  # subsets are rows of train
  wanted += ["train"] if len(wanted) < len(splits) else []
  for corpus, lang in datasets:
    try:
      utts = corpora.read_corpus(root, corpus, [lang], wanted)
    except (FileNotFoundError, ValueError):
      continue  # a dataset prepared from a root that has since moved: no attributes
    for u in utts:
      out[(corpus, lang, u.utt_id)].update(u.attributes)
  for key, conditions in benchmark_conditions(root).items():
    if key in out:
      out[key].update(conditions)
  return dict(out)


def tag_attributes(utts: list[dict], attributes: dict[tuple[str, str, str], dict]) -> None:
  """Sets u["attributes"] ({name: value}) for each utterance."""
  for u in utts:
    u["attributes"] = dict(attributes.get((u["corpus"], u["lang"], u["utt_id"]), {}))


@dataclasses.dataclass
class TestSet:
  """What mlasr.evaluate scores: batches plus what is known about their utterances."""
  name: str        # "" for the run's own split (reports in eval_<split>/)
  data: object     # .batches() -> eval batches (pipeline.EvalData or manifest.ManifestData)
  attributes: dict  # (corpus, lang, utt_id) -> {attribute: value}
  groups: dict     # (corpus, lang, speaker) -> speaker group
  meta: dict       # where it came from, for results.json


class _Splits:
  """Batches of several splits' EvalData one after the other."""

  def __init__(self, parts):
    self.parts = list(parts)

  def batches(self):
    for part in self.parts:
      yield from part.batches()


def _slug(text: str) -> str:
  return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_") or "set"


def check_languages(langs, model_langs, tokenizer, where: str) -> None:
  """Raises ValueError, naming them, for languages the model's heads or tokenizer lack."""
  known = list(model_langs)
  tok_langs = getattr(tokenizer, "lang_chars", None)
  if tok_langs:
    known = [l for l in known if l in tok_langs]
  if missing := sorted(set(langs) - set(known)):
    raise ValueError(
        f"{where}: the model's tokenizer does not know the language(s) {missing}; it was "
        f"trained on {known}. Score a language the model has, or add the language to the "
        "model first (train with config.tokenizer.from_dir, see the README).")


def test_set(config, workdir: str, split: str, data_root: str = "", sources=(),
             manifest: str = "", tokenizer=None) -> TestSet:
  """The split of the run's own data, or the test set the flags name (see module doc)."""
  splits = [s.strip() for s in split.split(",") if s.strip()]
  if not splits:
    raise ValueError(f"--split={split!r}: name at least one split")
  fileio.require_local(data_root, "--data_root")
  model_langs = inputs.languages(config.data)
  if manifest:
    if data_root or sources:
      raise ValueError("--manifest scores the manifest's rows; drop --data_root/--sources")
    rows = manifest_lib.read_manifest(manifest)
    check_languages({r.lang for r in rows}, model_langs, tokenizer, manifest)
    data = manifest_lib.ManifestData(manifest, model_langs, inputs.buckets(config.data),
                                     config.data.eval_batch_size, jax.process_index(),
                                     jax.process_count())
    name = "manifest-" + _slug(os.path.splitext(os.path.basename(manifest))[0])
    return TestSet(name, data, data.attributes(), {},
                   dict(test_set=name, manifest=os.path.abspath(manifest),
                        skipped=data.report.skip_counts()))
  run_root = os.path.abspath(os.path.expanduser(config.data.root))
  root = os.path.abspath(os.path.expanduser(data_root)) if data_root else run_root
  sources = tuple(sources) or tuple(config.data.sources)
  own = root == run_root and sources == tuple(config.data.sources)
  data_cfg = copy.deepcopy(config.data)
  with data_cfg.unlocked():
    data_cfg.sources = sources
    data_cfg.langs = model_langs  # lang_id must index the model's adapters and heads
    data_cfg.train_split = data_cfg.eval_split = ""  # only the splits scored are required
    if root != run_root:
      # That root's own TFDS dir: prepare() treats a dataset dir that exists as prepared,
      # so another root's commonvoice/en built into the run's data dir would be read as the
      # run's (or the run's as it), silently.
      data_cfg.root, data_cfg.data_dir = root, ""
  datasets = inputs.datasets(data_cfg)
  check_languages({l for _, l in datasets}, model_langs, tokenizer, "--sources")
  out_dir = inputs.data_dir(data_cfg)
  for inside, what in ((workdir, "the run's workdir"), (inputs.data_dir(config.data),
                                                        "the run's data dir")):
    if fileio.is_remote(inside):
      continue  # a gs:// workdir: no local TFDS dir lies inside it
    inside = os.path.abspath(os.path.expanduser(inside))
    if root != run_root and (out_dir == inside or out_dir.startswith(inside + os.sep)):
      raise ValueError(f"--data_root={data_root}: its TFDS dir {out_dir} lies inside {what} "
                       f"{inside}; put the corpus elsewhere")
  if not own:
    inputs.prepare_sources(data_cfg)
  data = _Splits(inputs.eval_data(with_data(config, data_cfg), s) for s in splits)
  name = "" if own and len(splits) == 1 else _slug(
      ("" if own else os.path.basename(root.rstrip(os.sep)) + "-")
      + "+".join(f"{c}_{l}" for c, l in datasets) + "-" + "+".join(splits))
  return TestSet(name, data, corpus_attributes(root, datasets, splits), speaker_groups(root),
                 dict(test_set=name or split, data_root=root, sources=list(sources),
                      splits=splits))


def with_data(config, data_cfg):
  """`config` with `data_cfg` as its data section (a copy; the run's config is untouched)."""
  out = copy.deepcopy(config)
  with out.unlocked():
    out.data = data_cfg
  return out


def restore_model(workdir: str, step: int | None = None, checkpoint: str = "latest"):
  """(config, tokenizer, model, step) with the parameters of a checkpoint in `workdir`.

  checkpoint: "latest" (<workdir>/checkpoints: the newest, or `step`) or "best"
  (<workdir>/best: the parameters of the best dev metric). The tokenizer is None for tasks
  without one (lid).
  """
  config = config_lib.load_config(workdir)
  config_lib.enable_compilation_cache(config.compilation_cache)
  task = importlib.import_module(f"mlasr.tasks.{config.task}")
  task_setup = task.setup(config, workdir)
  model_lib = importlib.import_module(f"mlasr.models.{config.model.name}")
  model = model_lib.build(config, task_setup["num_outputs"], nnx.Rngs(params=0, dropout=0),
                          **task_setup["model_kwargs"])
  tokenizer = task_setup["tokenizer"]
  step = ckpt_lib.latest_step(workdir, checkpoint) if step is None else step
  if step is None:
    raise FileNotFoundError(f"No checkpoint in {ckpt_lib.checkpoint_dir(workdir, checkpoint)}; "
                            "train first.")
  ckpt_lib.assign_params(model, ckpt_lib.read_params(workdir, step, which=checkpoint))
  return config, tokenizer, model, step


def jitted_log_probs(config, model):
  """batch (host numpy) -> (log_probs, frame_mask) of the CTC model, jitted per shape."""
  return jitted_predict(config, model, "log_probs")


def jitted_predict(config, model, fn: str = "predict"):
  """batch (host numpy) -> task.predict outputs, jitted once per batch shape."""
  task = importlib.import_module(f"mlasr.tasks.{config.task}")
  graphdef, state = nnx.split(model)
  predict_fn = getattr(task, fn)
  predict = jax.jit(lambda state, batch: predict_fn(nnx.merge(graphdef, state), batch))
  batch_sharding = sharding_lib.batch_sharding(sharding_lib.make_mesh(config.mesh),
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
  ckpt_lib.assign_params(model, surgery.unflatten_like(
      nnx.to_pure_dict(nnx.state(model, nnx.Param)), flat))
  return lang


def language_chooser(adapter_lang: str, model_langs, lid_workdir: str = ""):
  """batch -> lang_id [B] (indices into model_langs) for one language or a trained LID run;
  None for the oracle ('') and for 'auto' without `lid_workdir` (decided per utterance from
  the CTC model's own posteriors, decoding.LanguageIdentifier)."""
  if not adapter_lang or (adapter_lang == "auto" and not lid_workdir):
    return None
  if adapter_lang != "auto":
    if adapter_lang not in model_langs:
      raise ValueError(f"--adapter_lang={adapter_lang!r}: the model has {list(model_langs)}")
    index = list(model_langs).index(adapter_lang)
    return lambda batch: np.full_like(batch["lang_id"], index)
  lid_config, _, lid_model, _ = restore_model(lid_workdir)
  lid_langs = list(lid_model.langs)
  if missing := [l for l in lid_langs if l not in model_langs]:
    raise ValueError(f"LID model {lid_workdir} predicts {missing}, which the ASR model lacks.")
  to_model = np.array([list(model_langs).index(l) for l in lid_langs])
  lid_predict = jitted_predict(lid_config, lid_model)
  return lambda batch: to_model[np.asarray(jax.device_get(lid_predict(batch)[0]))]


class _ChosenLanguage:
  """Eval batches whose utterances are decoded in the language `choose(batch)` picks: the
  adapter/head the model uses (lang_id) and the outputs and LM of the decoder
  (decode_lang)."""

  def __init__(self, data, choose, model_langs):
    self.data, self.choose, self.langs = data, choose, np.asarray(list(model_langs), object)

  def batches(self):
    for batch in self.data.batches():
      ids = self.choose(batch)
      yield dict(batch, lang_id=ids, decode_lang=self.langs[ids])


def lid_report(utts: list[dict], langs) -> dict:
  """LID accuracy and confusion of the languages the utterances were decoded in, overall and
  per speaker group."""
  langs = list(langs)
  def scores_of(rows):
    return lid.scores(np.array([langs.index(u["lang"]) for u in rows], int),
                      np.array([langs.index(u["decoded_lang"]) for u in rows], int), langs)
  out = scores_of(utts)
  by_group = collections.defaultdict(list)
  for u in utts:
    if u.get("group"):
      by_group[u["group"]].append(u)
  out["by_group"] = {g: scores_of(rows) for g, rows in sorted(by_group.items())}
  return out


def run(workdir: str, split: str, n_boot: int = 1000, step: int | None = None,
        adapter_lang: str = "", adapter_file: str = "", lid_workdir: str = "",
        decoder: str = "greedy", lm_kind: str = "char", lm_dir: str = "", beam: int = 16,
        lm_weight: float | None = None, word_bonus: float | None = None,
        hotwords: tuple[str, ...] = (), hotword_weight: float = 0.0, data_root: str = "",
        sources: tuple[str, ...] = (), manifest: str = "", checkpoint: str = "latest",
        restrict_output: bool = True) -> dict:
  """Scores `workdir` on `split` and writes the report to <workdir>/eval_<split>[_<mode>]/.

  split: one split or several, comma-separated (scored as one set).
  data_root, sources, manifest: another test set (module docstring); its report goes to
    <workdir>/eval_on_<name>[_<mode>]/ and results.json's meta says what it was.
  checkpoint: "latest" (or `step`) or "best" (the parameters of the best dev metric; the
    report then goes to eval_<split>_best/ or eval_on_<name>_best/).

  adapter_lang: the language each utterance is decoded in (its adapter/head, its outputs and
    its LM): '' its true language (oracle); a code that language for all; 'auto' the one the
    LID model in `lid_workdir` picks, or without one the CTC model itself
    (decoding.LanguageIdentifier with the char LMs of `lm_dir` at the weight of lid.json).
    'auto' reports LID accuracy beside the CER.
  restrict_output: decode over the outputs of the utterance's language only (a Hindi clip
    cannot come out in Cyrillic); False lets a multilingual head emit any output.
  adapter_file: an exported adapter (adapters.export_language) loaded before decoding.
  decoder: "greedy" (best path, on device), "beam" (prefix beam search, no LM) or "beam_lm"
    (with the `lm_kind` LM of `lm_dir`, default <workdir>/lm, at the weights tuned on dev
    unless lm_weight / word_bonus are given). Hotwords work with both beam decoders.
  """
  if decoder not in ("greedy", "beam", "beam_lm"):
    raise ValueError(f"--decoder={decoder!r}; use greedy, beam or beam_lm")
  config, tokenizer, model, step = restore_model(workdir, step, checkpoint)
  # Results go in the run folder: fail now, not after decoding the whole split.
  config_lib.ensure_writable_dir(workdir, "--workdir")
  tset = test_set(config, workdir, split, data_root, tuple(sources), manifest, tokenizer)
  if config.task == "lid":
    return run_lid(config, model, workdir, split, step, tset, checkpoint)
  loaded = load_adapter(model, adapter_file) if adapter_file else None
  model_langs = list(getattr(model, "langs", ()) or inputs.languages(config.data))
  lm_dir = lm_dir or fileio.join(workdir, "lm")
  if fileio.is_remote(lm_dir) and (decoder == "beam_lm" or (adapter_lang == "auto"
                                                             and not lid_workdir)):
    raise ValueError(f"{lm_dir}: KenLM reads its LMs from local files only; copy them "
                     f"(gsutil cp -r {lm_dir} DIR) and pass --lm_dir=DIR")
  data = tset.data
  if (choose := language_chooser(adapter_lang, model_langs, lid_workdir)) is not None:
    data = _ChosenLanguage(tset.data, choose, model_langs)
  identify = None
  if adapter_lang == "auto" and not lid_workdir:
    identifier = decoding.LanguageIdentifier.for_model(
        model, tokenizer, model_langs, lm_dir, lm_lib.lid_lm_weight(lm_dir))
    identify = lambda log_probs: model_langs[identifier(log_probs)]
  log_probs_fn = jitted_log_probs(config, model)
  if decoder == "greedy":
    utts = greedy_transcribe(log_probs_fn, data, tokenizer, restrict_output, identify)
  else:
    kind = lm_kind if decoder == "beam_lm" else ""
    settings = {}
    if kind:
      settings = (tuned_lm_settings(lm_dir, kind) if lm_weight is None and word_bonus is None
                  else collections.defaultdict(lambda: dict(lm_weight=lm_weight or 0.0,
                                                            word_bonus=word_bonus or 0.0)))
    utts = utterance_log_probs(log_probs_fn, data)
    if identify is not None:
      for u in utts:
        u["decoded_lang"] = identify(u["log_probs"])
    beam_transcribe(utts, tokenizer, settings, lm_dir, kind, tuple(hotwords), hotword_weight,
                    beam, restrict_output)
    for u in utts:
      del u["log_probs"]
  tag_speaker_groups(utts, tset.groups)
  tag_attributes(utts, tset.attributes)
  meta = dict(workdir=fileio.absolute(workdir), split=split, step=step,
              sources=list(config.data.sources), adapter_lang=adapter_lang or "oracle",
              adapter_file=adapter_file, adapter_file_lang=loaded,
              lid_workdir=fileio.absolute(lid_workdir) if lid_workdir else "",
              decoder=decoder, lm_kind=lm_kind if decoder == "beam_lm" else "", beam=beam,
              hotwords=list(hotwords), checkpoint=checkpoint, restrict_output=restrict_output,
              lid="" if adapter_lang != "auto" else (
                  "lid_workdir" if lid_workdir else "ctc_char_lm"))
  meta.update(tset.meta)  # what was scored: the test set's sources, root or manifest
  results = score(utts, n_boot, meta)
  # Characters the tokenizer maps to <unk> can never be output: each is an error the model
  # cannot fix, which a corpus from elsewhere (another release, a manifest) can hold many of.
  unknown = errors.count_unknown_chars(utts, tokenizer) if tokenizer is not None else {}
  results["unknown_chars"] = {l: {"count": u["count"], "ref_chars": u["ref_chars"]}
                              for l, u in unknown.items()}
  for lang, u in unknown.items():
    if u["count"]:
      logging.warning("%s: %d of %d reference characters are unknown to the tokenizer (%s)",
                      lang, u["count"], u["ref_chars"], "".join(list(u["chars"])[:20]))
  by_group = collections.defaultdict(list)
  for u in utts:
    if "group" in u:
      by_group[u["group"]].append(u)
  results["by_group"] = {group: score(group_utts, n_boot, dict(meta, group=group))
                         for group, group_utts in sorted(by_group.items())}
  if adapter_lang == "auto":
    results["lid"] = lid_report(utts, model_langs)
  suffix = f"_{adapter_lang}" if adapter_lang else ""
  if decoder != "greedy":
    suffix += f"_{decoder}" + (f"_{lm_kind}" if decoder == "beam_lm" else "")
  suffix += "" if restrict_output else "_unrestricted"
  suffix += "_best" if checkpoint == "best" else ""
  out_dir = fileio.join(workdir, f"eval_on_{tset.name}{suffix}" if tset.name
                        else f"eval_{split}{suffix}")
  paths = report.write_report(results, out_dir, utts)
  paths.update(errors.write(errors.analyze(utts, unknown_chars=unknown, meta=meta), out_dir))
  config_lib.save_config(config, out_dir)
  print(report.to_markdown(results))
  if "lid" in results:
    print(lid.confusion_markdown(results["lid"]))
  print(f"Results written to {out_dir}: {', '.join(sorted(paths))}")
  return results


def run_lid(config, model, workdir: str, split: str, step: int,
            tset: TestSet | None = None, checkpoint: str = "latest") -> dict:
  """LID accuracy and confusion matrix -> <workdir>/eval_<split>/lid.json and lid.md
  (eval_on_<name>/ for another test set)."""
  tset = tset or test_set(config, workdir, split)
  true, pred, speakers = lid.classify(jitted_predict(config, model), tset.data)
  langs = list(model.langs)
  result = dict(lid.scores(true, pred, langs), split=split, step=step, checkpoint=checkpoint,
                workdir=fileio.absolute(workdir), **tset.meta)
  groups = tset.groups
  utt_groups = np.array([groups.get(s, "") for s in speakers], dtype=object)
  result["by_group"] = {g: lid.scores(true[utt_groups == g], pred[utt_groups == g], langs)
                        for g in sorted(set(utt_groups) - {""})}
  suffix = "_best" if checkpoint == "best" else ""
  out_dir = fileio.join(workdir, f"eval_on_{tset.name}{suffix}" if tset.name
                        else f"eval_{split}{suffix}")
  lid.write(result, out_dir)
  config_lib.save_config(config, out_dir)
  print(lid.confusion_markdown(result))
  return result


def main(argv):
  del argv
  logs.quiet_libraries()
  f = flags.FLAGS
  hotwords = tuple(w for w in f.hotwords.split(",") if w.strip())
  if f.hotwords_file:
    with open(f.hotwords_file, encoding="utf-8") as fh:
      hotwords += tuple(l.strip() for l in fh if l.strip())
  run(f.workdir, f.split, f.n_boot, f.step, f.adapter_lang, f.adapter_file, f.lid_workdir,
      f.decoder, f.lm_kind, f.lm_dir, f.beam, f.lm_weight, f.word_bonus, hotwords,
      f.hotword_weight, f.data_root, tuple(f.sources or ()), f.manifest, f.checkpoint,
      f.restrict_output)


if __name__ == "__main__":
  # Flags are defined here, not at import, so train.py can import this module.
  flags.DEFINE_string("workdir", None, "Training workdir (holds config.json and checkpoints).")
  flags.DEFINE_string("split", "test", "Split(s) to score: dev, test, ... (comma-separated: "
                      "scored together).")
  flags.DEFINE_string("data_root", "", "Score another Common Voice / VoxPopuli root (prepared "
                      "into <data_root>/tfds on first use); default: the run's.")
  flags.DEFINE_list("sources", [], "corpus:lang pairs to score, e.g. commonvoice:en "
                    "(default: the run's).")
  flags.DEFINE_string("manifest", "", "Score a TSV/JSONL manifest (path, text, lang, optional "
                      "speaker and any attribute columns) instead of a corpus.")
  flags.DEFINE_integer("n_boot", 1000, "Bootstrap resamples for the confidence intervals.")
  flags.DEFINE_enum("checkpoint", "latest", list(ckpt_lib.CHECKPOINTS),
                    "latest: <workdir>/checkpoints (the newest, or --step); best: <workdir>/best, "
                    "the parameters of the best dev metric (the task's BEST_METRIC).")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest of --checkpoint).")
  flags.DEFINE_string("adapter_lang", "", "Per-language adapters/heads: '' = each utterance's "
                      "true language, a code = that language for all, 'auto' = LID picks.")
  flags.DEFINE_string("adapter_file", "", "Load this exported adapter (.safetensors) first.")
  flags.DEFINE_string("lid_workdir", "", "Trained LID run for --adapter_lang=auto (default: "
                      "the CTC model's own posteriors and the run's char LMs).")
  flags.DEFINE_bool("restrict_output", True, "Decode over the outputs of the utterance's "
                    "language only.")
  flags.DEFINE_enum("decoder", "greedy", ["greedy", "beam", "beam_lm"],
                    "greedy (best path), beam (prefix beam search), beam_lm (with an n-gram LM).")
  flags.DEFINE_enum("lm_kind", "char", ["char", "word"], "Which LM beam_lm uses.")
  flags.DEFINE_string("lm_dir", "", "LMs of `python -m mlasr.lm` (default <workdir>/lm).")
  flags.DEFINE_integer("beam", 16, "Beam width.")
  flags.DEFINE_float("lm_weight", None, "LM weight (default: tuned on dev, lm/tuned.json).")
  flags.DEFINE_float("word_bonus", None, "Word insertion bonus (default: tuned on dev).")
  flags.DEFINE_string("hotwords", "", "Comma-separated words/phrases to boost.")
  flags.DEFINE_string("hotwords_file", "", "File of hotwords, one per line.")
  flags.DEFINE_float("hotword_weight", 2.0, "Bonus per matched hotword character.")
  for name in ("adapter_lang", "adapter_file", "lid_workdir"):
    flags.DEFINE_alias(name.replace("_", "-"), name)  # --adapter-lang, as MMS spells it
  flags.mark_flags_as_required(["workdir"])
  app.run(main)
