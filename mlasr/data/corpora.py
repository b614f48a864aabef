"""Loaders for Common Voice and VoxPopuli directories as downloaded, and the DataReport.

Loaders only read metadata and stat files (cheap on a million clips); decoding happens in the
TFDS builder, which counts undecodable clips in the same report. Bad rows are skipped and
counted by (corpus, lang, split, reason), never fatal, never silent:

- TSVs are read as bytes and split on LF (CRLF stripped) or, in a file without any LF, on CR
  (old Mac line endings, otherwise one header line and every row lost).
- Each line is decoded as strict UTF-8. A row that is not UTF-8 is skipped as `invalid_utf8`
  (never kept with U+FFFD in its transcript) and the file gets a `not_utf8` warning: the
  encoding is not guessed (Latin-1 and Windows-1252 read alike), the user re-encodes it.
- A TSV whose header lacks a required column is counted by its rows (`bad_header(...)`).
- A clip path that leaves the language's `clips/` folder (`../`, absolute) is refused
  (`path_outside_clips`), as is a VoxPopuli id that leaves its language folder.
- Common Voice's `clip_durations.tsv`, where a release has one, gives each utterance its
  stated duration; the builder refuses clips whose decoded length disagrees (truncated).

Unknown language codes (not in `mlasr.data.languages.LANGUAGES`) are KEPT with a warning in
the report: loaders must work on real downloads with languages we have no TTS voice for, and
language metadata is only needed by text normalisation, which has its own fallback rules.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
from typing import Iterable, Sequence

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
# Where each corpus keeps its language folders, under the corpus root.
CORPUS_DIRS = {"commonvoice": ("commonvoice",), "voxpopuli": ("voxpopuli", "transcribed_data")}
SUBSETS = ("train_10min", "train_1h")
# Demographic columns carried into Utterance.attributes: attribute -> the TSV columns that
# hold it, first present wins (Common Voice renamed `accent` to `accents` in release 8).
ATTRIBUTE_COLUMNS = {"gender": ("gender",), "age": ("age",), "accent": ("accents", "accent")}
# Values that state nothing: VoxPopuli writes "None" for a missing accent.
_NO_VALUE = {"", "none", "nan", "n/a"}
_MAX_EXAMPLES = 5


@dataclasses.dataclass(frozen=True)
class Utterance:
  corpus: str  # "commonvoice" | "voxpopuli"
  lang: str
  split: str  # "train" | "dev" | "test" (and subsets "train_10min", "train_1h")
  utt_id: str
  audio_path: str  # absolute path
  text: str  # raw transcript as in the corpus
  speaker: str
  stated_seconds: float | None = None  # duration the corpus states (clip_durations.tsv)
  # Speaker demographics the corpus states, as (name, value) pairs with non-empty values:
  # gender, age, accent (Common Voice's `accents`/`accent`, VoxPopuli's `accent`). A tuple,
  # not a dict, so the record stays hashable; error analysis breaks CER down by them.
  attributes: tuple[tuple[str, str], ...] = ()


class DataReport:
  """Counts kept and skipped items by (corpus, lang, split[, reason]) with example paths."""

  def __init__(self):
    self.skipped = collections.defaultdict(lambda: {"count": 0, "examples": []})
    self.kept = collections.defaultdict(lambda: {"count": 0, "seconds": 0.0})
    self.warnings: list[dict[str, str]] = []

  def skip(self, corpus: str, lang: str, split: str, reason: str, path: str,
           count: int = 1) -> None:
    """Counts `count` skipped items (rows of one rejected file: count = its rows)."""
    entry = self.skipped[(corpus, lang, split, reason)]
    if entry["count"] == 0:
      log.warning("skipping %s/%s/%s: %s (%s); further ones are counted in the data report",
                  corpus, lang, split, reason, path)
    entry["count"] += count
    if len(entry["examples"]) < _MAX_EXAMPLES:
      entry["examples"].append(str(path))

  def keep(self, corpus: str, lang: str, split: str, seconds: float | None = None) -> None:
    entry = self.kept[(corpus, lang, split)]
    entry["count"] += 1
    if seconds is not None:
      entry["seconds"] += float(seconds)

  def warn(self, corpus: str, lang: str, reason: str, detail: str) -> None:
    w = {"corpus": corpus, "lang": lang, "reason": reason, "detail": detail}
    if w not in self.warnings:
      log.warning("%s/%s: %s (%s)", corpus, lang, reason, detail)
      self.warnings.append(w)

  def skip_counts(self, corpus: str | None = None, lang: str | None = None,
                  split: str | None = None) -> dict[str, int]:
    """Skipped counts by reason, filtered by the given keys."""
    out = collections.Counter()
    for (c, l, s, reason), entry in self.skipped.items():
      if (corpus in (None, c)) and (lang in (None, l)) and (split in (None, s)):
        out[reason] += entry["count"]
    return dict(out)

  def kept_count(self, corpus: str | None = None, lang: str | None = None,
                 split: str | None = None) -> int:
    return sum(e["count"] for (c, l, s), e in self.kept.items()
               if (corpus in (None, c)) and (lang in (None, l)) and (split in (None, s)))

  def merge(self, other: "DataReport") -> "DataReport":
    for key, e in other.skipped.items():
      mine = self.skipped[key]
      mine["count"] += e["count"]
      mine["examples"] = (mine["examples"] + e["examples"])[:_MAX_EXAMPLES]
    for key, e in other.kept.items():
      self.kept[key]["count"] += e["count"]
      self.kept[key]["seconds"] += e["seconds"]
    for w in other.warnings:
      if w not in self.warnings:
        self.warnings.append(w)
    return self

  def to_dict(self) -> dict:
    return {
        "kept": [dict(corpus=c, lang=l, split=s, count=e["count"],
                      hours=round(e["seconds"] / 3600, 6))
                 for (c, l, s), e in sorted(self.kept.items())],
        "skipped": [dict(corpus=c, lang=l, split=s, reason=r, count=e["count"],
                         examples=list(e["examples"]))
                    for (c, l, s, r), e in sorted(self.skipped.items())],
        "warnings": list(self.warnings),
    }

  def to_json(self, path: str) -> None:
    """Writes atomically: a reader (or a re-run after a crash) sees the old file or the
    complete new one, never half a report."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
      json.dump(self.to_dict(), f, indent=1, ensure_ascii=False)
    os.replace(tmp, path)

  @classmethod
  def from_json(cls, path: str) -> "DataReport":
    with open(path, encoding="utf-8") as f:
      d = json.load(f)
    r = cls()
    for e in d["kept"]:
      r.kept[(e["corpus"], e["lang"], e["split"])] = {"count": e["count"],
                                                      "seconds": e["hours"] * 3600}
    for e in d["skipped"]:
      r.skipped[(e["corpus"], e["lang"], e["split"], e["reason"])] = {
          "count": e["count"], "examples": e["examples"]}
    r.warnings = d.get("warnings", [])
    return r

  def summary(self) -> str:
    lines = []
    for (c, l, s), e in sorted(self.kept.items()):
      lines.append(f"kept    {c}/{l}/{s}: {e['count']} ({e['seconds'] / 3600:.3f} h)")
    for (c, l, s, r), e in sorted(self.skipped.items()):
      lines.append(f"skipped {c}/{l}/{s}: {e['count']} {r} (e.g. {e['examples'][0]})")
    for w in self.warnings:
      lines.append(f"warning {w['corpus']}/{w['lang']}: {w['reason']} ({w['detail']})")
    return "\n".join(lines) if lines else "(empty data report)"


@dataclasses.dataclass
class _Tsv:
  header: list[str]  # empty when the header line is not UTF-8
  rows: list[tuple[int, list[str]]]  # (1-based file line, fields) of the non-blank rows
  invalid_lines: list[int]  # non-blank rows that are not UTF-8
  cr_only: bool  # line endings were CR alone

  @property
  def num_rows(self) -> int:
    return len(self.rows) + len(self.invalid_lines)


def _read_tsv(path: str) -> _Tsv:
  """Rows split on tabs. No quoting: sentences contain bare quotes."""
  with open(path, "rb") as f:
    data = f.read()
  if data.startswith(b"\xef\xbb\xbf"):
    data = data[3:]
  cr_only = b"\n" not in data and b"\r" in data
  lines = data.split(b"\r" if cr_only else b"\n")
  header, rows, invalid = [], [], []
  for i, raw in enumerate(lines):
    raw = raw.rstrip(b"\r")
    if i > 0 and not raw.strip():
      continue
    try:
      fields = raw.decode("utf-8").split("\t")
    except UnicodeDecodeError:
      if i > 0:
        invalid.append(i + 1)
      continue
    if i == 0:
      header = fields
    else:
      rows.append((i + 1, fields))
  return _Tsv(header, rows, invalid, cr_only)


def corpus_path(root: str, corpus: str) -> str:
  """The folder of `corpus`'s language folders under `root` (absolute)."""
  if corpus not in CORPUS_DIRS:
    raise ValueError(f"unknown corpus {corpus!r}; known: {sorted(CORPUS_DIRS)}")
  return os.path.abspath(os.path.join(root, *CORPUS_DIRS[corpus]))


def check_root(root: str, corpus: str, lang: str) -> None:
  """Raises FileNotFoundError, naming the path and what it holds, unless ROOT has the
  language folder of (corpus, lang). Run before writing anything: a mistyped root must not
  leave folders under it."""
  corpus_dir = corpus_path(root, corpus)
  rel = os.path.join(*CORPUS_DIRS[corpus])
  if not os.path.isdir(root):
    raise FileNotFoundError(f"{root}: no such corpus root (config.data.root); it must hold "
                            f"{rel}/<lang>/ folders")
  if not os.path.isdir(corpus_dir):
    raise FileNotFoundError(f"{root}: not a {corpus} corpus root, it has no {rel}/ folder "
                            f"(it holds {sorted(os.listdir(root))[:20]})")
  if not os.path.isdir(os.path.join(corpus_dir, lang)):
    found = sorted(d for d in os.listdir(corpus_dir)
                   if os.path.isdir(os.path.join(corpus_dir, d)))
    raise FileNotFoundError(f"{corpus_dir}: no language folder {lang!r}; languages there: "
                            f"{found[:50]}")


def _check_lang(corpus: str, lang: str, report: DataReport) -> None:
  try:
    from mlasr.data import languages  # pylint: disable=g-import-not-at-top
  except ImportError:
    return
  if lang not in languages.LANGUAGES:
    report.warn(corpus, lang, "unknown_language_code",
                "not in mlasr.data.languages.LANGUAGES; kept, text normalisation uses generic "
                "rules")


def _list_langs(corpus_dir: str, langs: Sequence[str] | None) -> list[str]:
  if langs is not None:
    return list(langs)
  if not os.path.isdir(corpus_dir):
    return []
  return sorted(d for d in os.listdir(corpus_dir) if os.path.isdir(os.path.join(corpus_dir, d)))


def _inside(folder: str, path: str) -> bool:
  """Whether `path` lies in `folder` by its name (`..` and absolute paths leave it; symlinks
  inside are the user's choice and followed)."""
  return os.path.normpath(path).startswith(os.path.normpath(folder) + os.sep)


def _check_audio(path: str) -> str | None:
  try:
    size = os.path.getsize(path)
  except OSError:
    return "missing_audio"
  return "empty_audio" if size == 0 else None


def _read_rows(corpus: str, lang: str, split: str, tsv: str, required: Sequence[str],
               report: DataReport) -> Iterable[dict[str, str]]:
  if not os.path.isfile(tsv):
    report.skip(corpus, lang, split, "missing_tsv", tsv)
    return
  table = _read_tsv(tsv)
  header = table.header
  if table.cr_only:
    report.warn(corpus, lang, "cr_line_endings", f"{tsv}: lines end in CR alone; read as such")
  if table.invalid_lines:
    report.warn(corpus, lang, "not_utf8",
                f"{tsv}: {len(table.invalid_lines)} rows are not UTF-8 (skipped as "
                "invalid_utf8; Latin-1 or another legacy encoding?): re-encode the file, "
                "e.g. iconv -f latin1 -t utf-8")
  missing = [c for c in required if c not in header]
  if missing:
    # Every row of the file is lost: count them, not the file.
    reason = f"bad_header(no {','.join(missing)})"
    if table.num_rows:
      report.skip(corpus, lang, split, reason, tsv, count=table.num_rows)
    else:
      report.warn(corpus, lang, reason, f"{tsv}: no rows either")
    return
  if not table.num_rows:
    report.warn(corpus, lang, "no_rows", f"{tsv}: a header and no rows; split {split!r} is empty")
  for lineno in table.invalid_lines:
    report.skip(corpus, lang, split, "invalid_utf8", f"{tsv}:{lineno}")
  for lineno, fields in table.rows:
    if len(fields) != len(header):
      report.skip(corpus, lang, split, "bad_row", f"{tsv}:{lineno}")
      continue
    yield dict(zip(header, fields))


def _language_dirs(corpus: str, corpus_dir: str, langs, splits, tsv_pattern: str,
                   report: DataReport):
  """(lang, folder) of each requested language whose folder holds at least one split TSV;
  the others are skipped and counted."""
  for lang in _list_langs(corpus_dir, langs):
    lang_dir = os.path.join(corpus_dir, lang)
    if not os.path.isdir(lang_dir):
      report.skip(corpus, lang, "*", "missing_language_dir", lang_dir)
      continue
    if not any(os.path.isfile(os.path.join(lang_dir, tsv_pattern.format(s))) for s in splits):
      report.skip(corpus, lang, "*", "no_split_tsvs", lang_dir)
      continue
    _check_lang(corpus, lang, report)
    yield lang, lang_dir


def read_commonvoice(root: str, langs: Sequence[str] | None = None,
                     splits: Sequence[str] = SPLITS,
                     report: DataReport | None = None) -> list[Utterance]:
  """Reads ROOT/commonvoice/<lang>/{split}.tsv (any release: only path, sentence and
  client_id are required; gender, age and accent(s) go to `attributes`, other columns are
  ignored)."""
  report = report if report is not None else DataReport()
  corpus_dir = corpus_path(root, "commonvoice")
  out = []
  for lang, lang_dir in _language_dirs("commonvoice", corpus_dir, langs, splits, "{}.tsv",
                                       report):
    clips_dir = os.path.join(lang_dir, "clips")
    durations = _clip_durations(lang_dir, lang, report)
    for split in splits:
      tsv = os.path.join(lang_dir, f"{split}.tsv")
      seen = set()
      for row in _read_rows("commonvoice", lang, split, tsv, ("path", "sentence"), report):
        clip = row["path"].strip()
        audio = os.path.join(clips_dir, clip)
        utt_id = os.path.splitext(clip)[0]
        reason = None
        if not clip:
          reason = "bad_row"
        elif not _inside(clips_dir, audio):
          reason = "path_outside_clips"
        elif utt_id in seen:
          reason = "duplicate_id"
        elif not row["sentence"].strip():
          reason = "empty_text"
        else:
          reason = _check_audio(audio)
        if reason:
          report.skip("commonvoice", lang, split, reason, audio)
          continue
        seen.add(utt_id)
        out.append(Utterance("commonvoice", lang, split, utt_id, audio, row["sentence"].strip(),
                             row.get("client_id", ""), durations.get(clip),
                             row_attributes(row)))
  return out


def row_attributes(row: dict[str, str]) -> tuple[tuple[str, str], ...]:
  """(attribute, value) pairs of ATTRIBUTE_COLUMNS that `row` states (empty ones left out)."""
  out = []
  for name, columns in ATTRIBUTE_COLUMNS.items():
    value = next((row[c].strip() for c in columns if c in row), "")
    if value.lower() not in _NO_VALUE:
      out.append((name, value))
  return tuple(out)


def _clip_durations(lang_dir: str, lang: str, report: DataReport) -> dict[str, float]:
  """Clip name -> seconds from Common Voice's clip_durations.tsv (`clip`, `duration[ms]`),
  which releases since 2023 ship; {} without one."""
  path = os.path.join(lang_dir, "clip_durations.tsv")
  if not os.path.isfile(path):
    return {}
  table = _read_tsv(path)
  ms_col = next((c for c in table.header if c.startswith("duration")), None)
  if "clip" not in table.header or ms_col is None:
    report.warn("commonvoice", lang, "clip_durations_unreadable",
                f"{path}: header {table.header}, expected clip and duration[ms]; not used")
    return {}
  clip_i, ms_i = table.header.index("clip"), table.header.index(ms_col)
  out, bad = {}, len(table.invalid_lines)
  for _, fields in table.rows:
    try:
      out[fields[clip_i].strip()] = float(fields[ms_i]) / 1000.0
    except (IndexError, ValueError):
      bad += 1
  if bad:
    report.warn("commonvoice", lang, "clip_durations_bad_rows",
                f"{path}: {bad} unreadable rows; those clips are checked without a duration")
  return out


def read_voxpopuli(root: str, langs: Sequence[str] | None = None,
                   splits: Sequence[str] = SPLITS,
                   report: DataReport | None = None) -> list[Utterance]:
  """Reads ROOT/voxpopuli/transcribed_data/<lang>/asr_{split}.tsv; audio <year>/<id>.ogg.

  `text` is raw_text, or normalized_text where raw_text is empty (older releases).
  """
  report = report if report is not None else DataReport()
  corpus_dir = corpus_path(root, "voxpopuli")
  out = []
  for lang, lang_dir in _language_dirs("voxpopuli", corpus_dir, langs, splits, "asr_{}.tsv",
                                       report):
    for split in splits:
      tsv = os.path.join(lang_dir, f"asr_{split}.tsv")
      seen = set()
      for row in _read_rows("voxpopuli", lang, split, tsv, ("id",), report):
        utt_id = row["id"].strip()
        audio = os.path.join(lang_dir, utt_id[:4], f"{utt_id}.ogg")
        text = (row.get("raw_text") or "").strip() or (row.get("normalized_text") or "").strip()
        if not utt_id:
          reason = "bad_row"
        elif not _inside(lang_dir, audio) or os.path.dirname(utt_id):
          reason = "path_outside_corpus"
        elif utt_id in seen:
          reason = "duplicate_id"
        elif not text:
          reason = "empty_text"
        else:
          reason = _check_audio(audio)
        if reason:
          report.skip("voxpopuli", lang, split, reason, audio)
          continue
        seen.add(utt_id)
        out.append(Utterance("voxpopuli", lang, split, utt_id, audio, text,
                             row.get("speaker_id", ""), attributes=row_attributes(row)))
  return out


def read_subset(root: str, corpus: str, lang: str, name: str) -> set[str]:
  """Utterance ids of ROOT/subsets/<corpus>/<lang>/<name>.tsv (header `utt_id`).

  Raises:
    FileNotFoundError: the subset manifest does not exist.
  """
  path = os.path.join(root, "subsets", corpus, lang, f"{name}.tsv")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no subset manifest {name!r} for {corpus}/{lang}; "
                            "build it with data_prep.synth_benchmark or list its ids there")
  table = _read_tsv(path)
  col = table.header.index("utt_id") if "utt_id" in table.header else 0
  return {f[col].strip() for _, f in table.rows if len(f) > col and f[col].strip()}


def read_corpus(root: str, corpus: str, langs: Sequence[str] | None = None,
                splits: Sequence[str] = SPLITS,
                report: DataReport | None = None) -> list[Utterance]:
  """Dispatches to read_commonvoice / read_voxpopuli by corpus name."""
  readers = {"commonvoice": read_commonvoice, "voxpopuli": read_voxpopuli}
  if corpus not in readers:
    raise ValueError(f"unknown corpus {corpus!r}; known: {sorted(readers)}")
  return readers[corpus](root, langs=langs, splits=splits, report=report)
