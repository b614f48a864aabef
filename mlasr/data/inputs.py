"""From `config.data` to batches on devices: the one place train.py and evaluate.py get data.

config.data.sources lists "corpus:lang" pairs; each becomes a TFDS array_record dataset under
config.data.data_dir (default <root>/tfds), built on first use from the corpus files
(mlasr.data.tfds_builder.prepare, idempotent). Language ids are positions in `languages()`.

Unlabeled sources ("voxpopuli_unlabelled:<lang>", "audio_dir:<lang>"; corpora.
UNLABELED_CORPORA) are recordings without transcripts, cut into segments as
config.data.unlabeled says: they train pretraining tasks only (check_task_sources refuses
them for CTC and LID), have a train split only, and dev evaluation uses the labeled sources.
"""
from __future__ import annotations

import json
import os

import jax
import ml_collections
import tqdm

from mlasr import fileio
from mlasr.data import augment, corpora, pipeline, tfds_builder
from mlasr.data import tokenizer as tokenizer_lib

SAMPLE_RATE = tfds_builder.SAMPLE_RATE


LABELED_CORPORA = ("commonvoice", "voxpopuli")
# Tasks that need a transcript (CTC) or a checked language label (LID) for every example.
SUPERVISED_TASKS = ("ctc", "lid")


def datasets(data_cfg: ml_collections.ConfigDict) -> list[tuple[str, str]]:
  out = []
  for source in data_cfg.sources:
    corpus, sep, lang = source.partition(":")
    if not sep or not lang or corpus not in LABELED_CORPORA + corpora.UNLABELED_CORPORA:
      raise ValueError(f"config.data.sources entry {source!r} must look like "
                       "'commonvoice:<lang>' or 'voxpopuli:<lang>' (transcribed), or "
                       "'voxpopuli_unlabelled:<lang>' or 'audio_dir:<lang>' (unlabeled audio).")
    out.append((corpus, lang))
  return out


def labeled_datasets(data_cfg: ml_collections.ConfigDict) -> list[tuple[str, str]]:
  """The sources with transcripts: the ones dev and test splits come from."""
  return [(c, l) for c, l in datasets(data_cfg) if c not in corpora.UNLABELED_CORPORA]


def check_task_sources(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the unlabeled sources of a CTC or LID config (before anything
  is prepared): they have no transcripts, and their language is only their folder's name."""
  if config.task not in SUPERVISED_TASKS:
    return
  bad = [f"{c}:{l}" for c, l in datasets(config.data) if c in corpora.UNLABELED_CORPORA]
  if bad:
    raise ValueError(
        f"config.data.sources has unlabeled audio {bad}: task {config.task!r} trains on "
        "transcribed sources only (commonvoice:<lang>, voxpopuli:<lang>). Unlabeled sources "
        "are for pretraining (experiments/hubert_pretrain.py, config.task='hubert'); remove "
        f"{bad[0]!r} from config.data.sources.")


def languages(data_cfg: ml_collections.ConfigDict) -> list[str]:
  """Language codes; lang_id indexes this list (and a model's per-language adapters/heads).

  `config.data.langs` when set (a model's languages can be a superset of the data's, e.g.
  when adding a language to a trained multilingual model), else the sources' languages.
  """
  from_sources = pipeline.source_languages(datasets(data_cfg))
  langs = list(data_cfg.langs or ())
  if not langs:
    return from_sources
  if missing := [l for l in from_sources if l not in langs]:
    raise ValueError(f"config.data.langs={langs} lacks the languages {missing} of "
                     "config.data.sources.")
  return langs


def check_data_paths(data_cfg: ml_collections.ConfigDict) -> None:
  """Raises ValueError for a gs:// (or other remote) config.data.root or data_dir: the
  array_record reader opens local files only, so a bucket is read through a gcsfuse mount
  (fileio.require_local says how). Run folders may be remote; datasets may not."""
  fileio.require_local(data_cfg.root, "config.data.root")
  fileio.require_local(data_cfg.data_dir, "config.data.data_dir")


def data_dir(data_cfg: ml_collections.ConfigDict) -> str:
  check_data_paths(data_cfg)
  return os.path.expanduser(data_cfg.data_dir or os.path.join(data_cfg.root, "tfds"))


def prepare_sources(data_cfg: ml_collections.ConfigDict) -> list[tuple[str, str]]:
  """Builds the array_record datasets that are missing (only process 0 writes)."""
  check_data_paths(data_cfg)
  root = os.path.expanduser(data_cfg.root)
  if jax.process_index() == 0:
    todo = datasets(data_cfg)
    for corpus, lang in tqdm.tqdm(todo, desc="prepare", unit="dataset",
                                  disable=len(todo) < 2):
      tfds_builder.prepare(root, data_dir(data_cfg), corpus, lang,
                           num_workers=data_cfg.prepare_workers,
                           train_from_validated=data_cfg.train_from_validated,
                           segment=(dict(data_cfg.unlabeled)
                                    if corpus in corpora.UNLABELED_CORPORA else None))
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    multihost_utils.sync_global_devices("mlasr_prepare_sources")
  # Before any model is built: a release whose dev.tsv holds only a header has no dev split.
  for setting in ("train_split", "eval_split"):
    if data_cfg[setting]:
      require_split(data_cfg, data_cfg[setting], f"config.data.{setting}")
  return datasets(data_cfg)


def require_split(data_cfg: ml_collections.ConfigDict, split: str, setting: str) -> None:
  """Raises ValueError, naming `setting`, why the split is empty and which splits exist,
  unless every source's prepared dataset has `split` (for an eval split: every labeled
  source; unlabeled ones have a train split only)."""
  problems, common = [], None
  is_eval = setting.endswith("eval_split")
  for corpus, lang in (labeled_datasets(data_cfg) if is_eval else datasets(data_cfg)):
    index = tfds_builder.load_index(data_dir(data_cfg), corpus, lang)
    common = set(index) if common is None else common & set(index)
    if split in index:
      continue
    try:
      report = tfds_builder.load_report(data_dir(data_cfg), corpus, lang)
    except FileNotFoundError:  # deleted by hand; the error is still clear without it
      report = corpora.DataReport()
    why = [f"{n} {reason}" for reason, n in report.skip_counts(corpus, lang, split).items()]
    why += [w["detail"] for w in report.warnings
            if w["lang"] == lang and f"split {split!r}" in w["detail"]]
    problems.append(f"{corpus}/{lang} has no {split!r} split ({'; '.join(why) or 'no rows'}; "
                    f"it has {sorted(index)})")
  if problems:
    usable = sorted(common or ())
    also = " (mlasr.evaluate: --split)" if is_eval else ""
    example = next((s for s in (("test", "dev") if is_eval else ("train",)) if s in usable),
                   usable[0] if usable else "test")
    raise ValueError(
        f"{setting}={split!r}: {'; '.join(problems)}. Set --{setting}{also} to a split every "
        f"source has ({usable}), e.g. --{setting}={example}; the data reports are under "
        f"{os.path.join(data_dir(data_cfg), tfds_builder.NAME)}.")


def get_tokenizer(config: ml_collections.ConfigDict, workdir: str):
  """Loads `<workdir>/tokenizer`, or builds it on the normalized training transcripts.

  With `config.tokenizer.from_dir` (a trained model's tokenizer, when adding languages to
  it) that tokenizer is reused; languages it lacks are added (tokenizer.extended_with).
  """
  out_dir = fileio.join(workdir, "tokenizer")  # local or gs:// (tokenizer.py writes both)
  if fileio.exists(fileio.join(out_dir, tokenizer_lib.CONFIG_FILE)):
    return tokenizer_lib.load_tokenizer(out_dir)
  texts = {}
  for corpus, lang in datasets(config.data):
    index = tfds_builder.load_index(data_dir(config.data), corpus, lang)
    texts.setdefault(lang, []).extend(t for t in index[config.data.train_split]["text_norm"] if t)
  for lang, extra in tokenizer_text(config.data).items():
    texts.setdefault(lang, []).extend(extra)
  tok_cfg = config.tokenizer
  if tok_cfg.from_dir:
    base = tokenizer_lib.load_tokenizer(fileio.absolute(tok_cfg.from_dir, expanduser=True))
    tok = base.extended_with(texts)
    tok.save(out_dir)
    return tok
  return tokenizer_lib.build_tokenizer(
      tok_cfg.kind, texts, out_dir, per_language=tok_cfg.per_language,
      vocab_size=tok_cfg.vocab_size, alpha=tok_cfg.alpha, seed=config.seed)


def tokenizer_text(data_cfg: ml_collections.ConfigDict) -> dict[str, list[str]]:
  """Normalised sentences of the Common Voice text corpora named in
  config.data.tokenizer_text ("validated_sentences", "unvalidated_sentences"), per language,
  as prepare() wrote them (without dev/test or reported sentences); {} by default."""
  from mlasr.data import text as text_lib  # pylint: disable=import-outside-toplevel
  names = list(data_cfg.tokenizer_text or ())
  if bad := [n for n in names if n not in corpora.TEXT_CORPORA]:
    raise ValueError(f"config.data.tokenizer_text: unknown {bad}; known: {corpora.TEXT_CORPORA}")
  out = {}
  langs = dict.fromkeys(l for c, l in datasets(data_cfg) if c == "commonvoice")
  for lang in langs:
    for name in names:
      path = tfds_builder.text_corpus_path(data_dir(data_cfg), lang, name)
      if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
          out.setdefault(lang, []).extend(
              t for t in (text_lib.normalize(line.strip(), lang) for line in f) if t)
  return out


def buckets(data_cfg: ml_collections.ConfigDict) -> list[tuple[int, int]]:
  return pipeline.make_buckets(seconds=data_cfg.bucket_seconds,
                               batch_seconds=data_cfg.batch_seconds,
                               batch_multiple=jax.local_device_count())


SOURCE_WEIGHTS_FILE = "sampling_weights_sources.json"


def train_iterator(config: ml_collections.ConfigDict, tokenizer=None, labels=None,
                   workdir: str | None = None):
  """(grain iterator of train batches, {lang: sampling weight}, pipeline skip report).

  CTC passes a tokenizer (batches get `labels`), HuBERT a LabelStore (batches get `targets`),
  BEST-RQ neither (its targets are computed from the audio inside the step). With `workdir`,
  both sampling levels (languages by config.data.alpha, sources within a language by
  config.data.source_alpha) are written to <workdir>/sampling_weights_sources.json, next to
  the sampling_weights.json that train.py writes from the returned language weights.
  """
  require_split(config.data, config.data.train_split, "config.data.train_split")
  train = pipeline.train_data(
      data_dir(config.data), datasets(config.data), split=config.data.train_split,
      langs=languages(config.data), tokenizer=tokenizer, labels=labels, alpha=config.data.alpha,
      buckets=buckets(config.data), seed=config.seed, shard_index=jax.process_index(),
      shard_count=jax.process_count(), worker_count=config.data.worker_count,
      long_clips=config.data.long_clips,
      augment=augment.AugmentConfig.from_dict(config.data.augment),
      source_alpha=config.data.source_alpha)
  if workdir and jax.process_index() == 0:
    write_sampling_weights(train, workdir)
  return train.iterator(), train.weights, train.report


def write_sampling_weights(train: pipeline.TrainData, workdir: str) -> str:
  """Writes both sampling levels of `train` (TrainData.weights_dict) as JSON; returns the path."""
  fileio.makedirs(workdir)
  path = fileio.join(workdir, SOURCE_WEIGHTS_FILE)
  with fileio.open(path, "w", encoding="utf-8") as f:
    json.dump(train.weights_dict(), f, indent=2, sort_keys=True)
  return path


def eval_data(config: ml_collections.ConfigDict, split: str, labels=None) -> pipeline.EvalData:
  """Every utterance of `split` once, in padded batches (scored against text_norm), from the
  labeled sources (ValueError when there is none: unlabeled audio has no dev or test)."""
  require_split(config.data, split, "config.data.eval_split")
  if not (labeled := labeled_datasets(config.data)):
    raise ValueError(f"no {split!r} split to evaluate: every source in config.data.sources "
                     f"({list(config.data.sources)}) is unlabeled audio, which has a train "
                     "split only; add a transcribed source (commonvoice:<lang>, "
                     "voxpopuli:<lang>) for dev metrics.")
  return pipeline.eval_data(
      data_dir(config.data), labeled, split, langs=languages(config.data),
      buckets=buckets(config.data), batch_size=config.data.eval_batch_size, labels=labels,
      shard_index=jax.process_index(), shard_count=jax.process_count())


def progress_bar(start: int, total: int, enabled: bool = True):
  return tqdm.tqdm(total=total, initial=start, disable=not enabled, desc="train",
                   dynamic_ncols=True, mininterval=2.0)
