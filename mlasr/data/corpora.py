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
- Common Voice's `clip_durations.tsv`, where a release has one (header `clip` or `filename`,
  and `duration[ms]`), gives each utterance its stated duration; the builder refuses clips
  whose decoded length disagrees (truncated), and the listing counts below use it for hours.

Real release formats (docs/real_corpora.md has the file formats):
- `reported.tsv` (sentence, sentence_id, locale, reason: sentences contributors flagged)
  excludes every clip of a reported sentence, in every split (`reported_sentence`), matched
  by sentence_id where both files have one, else by the text (whitespace and case folded).
- `validated.tsv`: with `train_from_validated` (config.data.train_from_validated, default
  off) the train split is validated.tsv minus every clip of a dev/test speaker
  (`dev_test_speaker`) or of a dev/test sentence (`dev_test_sentence`), train.tsv unused:
  common practice for small languages whose train.tsv is tiny or absent. Off, a
  validated.tsv listing clips that no split TSV has is stated in the report's notes.
- `validated_sentences.tsv` / `unvalidated_sentences.tsv` (text only, no audio) are read by
  read_text_corpus() as LM / tokenizer text, never as audio rows.
- Partial downloads (most listed clips absent): each absent clip is counted as
  `missing_audio`, never fatal; the report's `listing` has listed / absent clips (and hours,
  by clip_durations.tsv) per split, and a split missing most of its clips gets a
  `partial_download` warning. A split whose every listed clip is absent is `lost_split`
  (tfds_builder.prepare fails on it, loudly).

Unlabeled audio (no transcripts; pretraining only), `split` "train" only, `text` "":
- `voxpopuli_unlabelled`: ROOT/voxpopuli/unlabelled_data/<lang>/<year>/<event>_<n>.ogg, as
  facebookresearch/voxpopuli's get_unlabelled_data.py writes it (<year> is the event id's
  first four digits). Other files there are counted (`not_audio`, `outside_year_folder`).
- `audio_dir`: every audio file under ROOT/audio/<lang>/ (recursively, sorted; other files
  counted as `not_audio`), or, instead of that folder, a manifest ROOT/audio/<lang>.tsv
  (header with a `path` column, or fairseq's wav2vec manifest: a root folder on the first
  line, then `relative_path<TAB>num_frames`) or ROOT/audio/<lang>.jsonl ({"path": ...}).
  Relative paths are relative to the manifest's folder (fairseq: to its first line).
Each recording is one Utterance; the TFDS builder cuts it into training segments.

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
CORPUS_DIRS = {"commonvoice": ("commonvoice",), "voxpopuli": ("voxpopuli", "transcribed_data"),
               "voxpopuli_unlabelled": ("voxpopuli", "unlabelled_data"), "audio_dir": ("audio",)}
# Sources of audio without transcripts (a "train" split of segments, for pretraining only).
UNLABELED_CORPORA = ("voxpopuli_unlabelled", "audio_dir")
# What an audio_dir tree may hold (the rest is counted as not_audio): anything soundfile or
# the ffmpeg fallback of mlasr.data.audio reads.
AUDIO_EXTENSIONS = frozenset(".wav .flac .mp3 .ogg .oga .opus .m4a .aac .wma .aif .aiff .au "
                             ".amr .webm .mp4 .mkv".split())
MANIFEST_EXTENSIONS = (".tsv", ".jsonl")
SUBSETS = ("train_10min", "train_1h")
# Demographic columns carried into Utterance.attributes: attribute -> the TSV columns that
# hold it, first present wins (Common Voice renamed `accent` to `accents` in release 8).
ATTRIBUTE_COLUMNS = {"gender": ("gender",), "age": ("age",), "accent": ("accents", "accent")}
# Values that state nothing: VoxPopuli writes "None" for a missing accent.
_NO_VALUE = {"", "none", "nan", "n/a"}
_MAX_EXAMPLES = 5
# Common Voice's text-only files (sentences, no clips), as read by read_text_corpus().
TEXT_CORPORA = ("validated_sentences", "unvalidated_sentences")
# A split missing more than this fraction of its listed clips gets a partial_download warning.
PARTIAL_DOWNLOAD_FRACTION = 0.5


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
    # What a release states, by the loader: (corpus, lang, split) -> clips listed in the
    # split's TSV (rows that reached the audio check), how many are absent, and their hours
    # where clip_durations.tsv states them.
    self.listing = collections.defaultdict(lambda: dict(_EMPTY_LISTING))
    self.notes: list[dict[str, str]] = []  # options in effect, files used (not problems)
    # Unlabeled recordings cut into segments (tfds_builder): (corpus, lang, split) ->
    # recordings decoded and their seconds, segments kept and their seconds, and the seconds
    # left out by reason (short pieces, silence, non-speech): kept + left out = decoded.
    self.segmentation = collections.defaultdict(
        lambda: {"recordings": 0, "recording_seconds": 0.0, "segments": 0,
                 "segment_seconds": 0.0, "left_out_seconds": collections.Counter()})

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

  def list_clip(self, corpus: str, lang: str, split: str, present: bool,
                seconds: float | None = None) -> None:
    """Counts one clip the corpus lists for `split` (present on disk or not)."""
    e = self.listing[(corpus, lang, split)]
    e["listed"] += 1
    e["missing"] += 0 if present else 1
    if seconds is not None:
      e["stated"] += 1
      e["listed_seconds"] += float(seconds)
      e["missing_seconds"] += 0.0 if present else float(seconds)

  def segmented(self, corpus: str, lang: str, split: str, recording_seconds: float,
                segment_seconds: Sequence[float], left_out: dict[str, float]) -> None:
    """Accounts one decoded recording: its segments' lengths and the seconds left out."""
    e = self.segmentation[(corpus, lang, split)]
    e["recordings"] += 1
    e["recording_seconds"] += float(recording_seconds)
    e["segments"] += len(segment_seconds)
    e["segment_seconds"] += float(sum(segment_seconds))
    for reason, seconds in left_out.items():
      e["left_out_seconds"][reason] += float(seconds)

  def note(self, corpus: str, lang: str, reason: str, detail: str) -> None:
    n = {"corpus": corpus, "lang": lang, "reason": reason, "detail": detail}
    if n not in self.notes:
      log.info("%s/%s: %s (%s)", corpus, lang, reason, detail)
      self.notes.append(n)

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
    for key, e in other.listing.items():
      for k, v in e.items():
        self.listing[key][k] += v
    for n in other.notes:
      if n not in self.notes:
        self.notes.append(n)
    for key, e in other.segmentation.items():
      mine = self.segmentation[key]
      for k, v in e.items():
        mine[k] += v
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
        "listing": [dict(corpus=c, lang=l, split=s, listed=e["listed"], missing=e["missing"],
                         stated=e["stated"], listed_hours=round(e["listed_seconds"] / 3600, 6),
                         missing_hours=round(e["missing_seconds"] / 3600, 6),
                         listed_seconds=round(e["listed_seconds"], 3),
                         missing_seconds=round(e["missing_seconds"], 3))
                    for (c, l, s), e in sorted(self.listing.items())],
        "notes": list(self.notes),
        # Only in reports of unlabeled sources: labeled reports stay as they were.
        **({"segmentation": [
            dict(corpus=c, lang=l, split=s, recordings=e["recordings"],
                 recording_seconds=round(e["recording_seconds"], 3), segments=e["segments"],
                 segment_seconds=round(e["segment_seconds"], 3),
                 left_out_seconds={r: round(v, 3) for r, v in sorted(
                     e["left_out_seconds"].items())})
            for (c, l, s), e in sorted(self.segmentation.items())]}
           if self.segmentation else {}),
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
    for e in d.get("listing", []):  # reports written before listings had none
      r.listing[(e["corpus"], e["lang"], e["split"])] = {
          "listed": e["listed"], "missing": e["missing"], "stated": e["stated"],
          "listed_seconds": e.get("listed_seconds", e["listed_hours"] * 3600),
          "missing_seconds": e.get("missing_seconds", e["missing_hours"] * 3600)}
    r.notes = d.get("notes", [])
    for e in d.get("segmentation", []):
      r.segmentation[(e["corpus"], e["lang"], e["split"])] = {
          "recordings": e["recordings"], "recording_seconds": e["recording_seconds"],
          "segments": e["segments"], "segment_seconds": e["segment_seconds"],
          "left_out_seconds": collections.Counter(e["left_out_seconds"])}
    return r

  def lost_splits(self, corpus: str | None = None, lang: str | None = None) -> list[tuple]:
    """(corpus, lang, split) of the splits that list clips and have none of them on disk."""
    return [k for k, e in sorted(self.listing.items())
            if corpus in (None, k[0]) and lang in (None, k[1])
            and e["listed"] > 0 and e["missing"] == e["listed"]]

  def summary(self) -> str:
    lines = []
    for (c, l, s), e in sorted(self.kept.items()):
      lines.append(f"kept    {c}/{l}/{s}: {e['count']} ({e['seconds'] / 3600:.3f} h)")
    for (c, l, s, r), e in sorted(self.skipped.items()):
      lines.append(f"skipped {c}/{l}/{s}: {e['count']} {r} (e.g. {e['examples'][0]})")
    for (c, l, s), e in sorted(self.listing.items()):
      if e["missing"]:
        hours = (f", {e['missing_seconds'] / 3600:.3f} of {e['listed_seconds'] / 3600:.3f} h "
                 "by clip_durations.tsv" if e["stated"] else "")
        lines.append(f"listed  {c}/{l}/{s}: {e['listed']} clips, {e['missing']} absent{hours}")
    for (c, l, s), e in sorted(self.segmentation.items()):
      left = ", ".join(f"{v / 3600:.3f} h {r}" for r, v in sorted(e["left_out_seconds"].items()))
      lines.append(f"cut     {c}/{l}/{s}: {e['recordings']} recordings "
                   f"({e['recording_seconds'] / 3600:.3f} h) into {e['segments']} segments "
                   f"({e['segment_seconds'] / 3600:.3f} h)" + (f"; left out {left}" if left else ""))
    for w in self.warnings:
      lines.append(f"warning {w['corpus']}/{w['lang']}: {w['reason']} ({w['detail']})")
    for n in self.notes:
      lines.append(f"note    {n['corpus']}/{n['lang']}: {n['reason']} ({n['detail']})")
    return "\n".join(lines) if lines else "(empty data report)"


_EMPTY_LISTING = {"listed": 0, "missing": 0, "stated": 0, "listed_seconds": 0.0,
                  "missing_seconds": 0.0}


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
  if corpus == "audio_dir" and audio_dir_manifest(root, lang):
    return
  if not os.path.isdir(root):
    raise FileNotFoundError(f"{root}: no such corpus root (config.data.root); it must hold "
                            f"{rel}/<lang>/ folders")
  if not os.path.isdir(corpus_dir):
    raise FileNotFoundError(f"{root}: not a {corpus} corpus root, it has no {rel}/ folder "
                            f"(it holds {sorted(os.listdir(root))[:20]})")
  if not os.path.isdir(os.path.join(corpus_dir, lang)):
    found = sorted(d for d in os.listdir(corpus_dir)
                   if os.path.isdir(os.path.join(corpus_dir, d)))
    also = (f" (nor a manifest {lang}.tsv / {lang}.jsonl)" if corpus == "audio_dir" else "")
    raise FileNotFoundError(f"{corpus_dir}: no language folder {lang!r}{also}; languages there: "
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
                   report: DataReport, also: Sequence[str] = ()):
  """(lang, folder) of each requested language whose folder holds at least one split TSV
  (or one of the files `also` names); the others are skipped and counted."""
  for lang in _list_langs(corpus_dir, langs):
    lang_dir = os.path.join(corpus_dir, lang)
    if not os.path.isdir(lang_dir):
      report.skip(corpus, lang, "*", "missing_language_dir", lang_dir)
      continue
    names = [tsv_pattern.format(s) for s in splits] + list(also)
    if not any(os.path.isfile(os.path.join(lang_dir, n)) for n in names):
      report.skip(corpus, lang, "*", "no_split_tsvs", lang_dir)
      if corpus == "commonvoice" and os.path.isfile(os.path.join(lang_dir, "validated.tsv")):
        report.warn(corpus, lang, "validated_only",
                    f"{lang_dir} has validated.tsv and no split TSV: "
                    "config.data.train_from_validated=True trains on it")
      continue
    _check_lang(corpus, lang, report)
    yield lang, lang_dir


def _sentence_key(text: str) -> str:
  """A sentence as compared across files: whitespace collapsed, case folded."""
  return " ".join(text.split()).casefold()


@dataclasses.dataclass
class _SentenceSet:
  """Sentences to match clip rows against, by sentence_id or by (folded) text."""
  ids: set = dataclasses.field(default_factory=set)
  texts: set = dataclasses.field(default_factory=set)

  def add(self, row: dict[str, str]) -> None:
    sid, text = (row.get("sentence_id") or "").strip(), (row.get("sentence") or "").strip()
    if sid:
      self.ids.add(sid)
    if text:
      self.texts.add(_sentence_key(text))

  def __contains__(self, row: dict[str, str]) -> bool:
    sid = (row.get("sentence_id") or "").strip()
    return bool(sid and sid in self.ids) or _sentence_key(row.get("sentence") or "") in self.texts


def _raw_rows(path: str) -> list[dict[str, str]]:
  """Rows of a TSV as dicts, unchecked and uncounted (for cross-file lookups only)."""
  if not os.path.isfile(path):
    return []
  table = _read_tsv(path)
  return [dict(zip(table.header, f)) for _, f in table.rows if len(f) == len(table.header)]


def _reported_sentences(lang_dir: str, lang: str, report: DataReport) -> _SentenceSet:
  """Sentences of Common Voice's reported.tsv (sentence, sentence_id, locale, reason)."""
  path = os.path.join(lang_dir, "reported.tsv")
  out = _SentenceSet()
  if not os.path.isfile(path):
    return out
  table = _read_tsv(path)
  if "sentence" not in table.header and "sentence_id" not in table.header:
    report.warn("commonvoice", lang, "reported_unreadable",
                f"{path}: header {table.header[:6]}, expected sentence, sentence_id, locale, "
                "reason; no clip is excluded as reported")
    return out
  reasons = collections.Counter()
  for _, fields in table.rows:
    if len(fields) != len(table.header):
      continue
    row = dict(zip(table.header, fields))
    out.add(row)
    reasons[(row.get("reason") or "").strip() or "?"] += 1
  if reasons:
    report.note("commonvoice", lang, "reported_sentences",
                f"{path}: {sum(reasons.values())} reports ({dict(sorted(reasons.items()))}); "
                "their clips are excluded as reported_sentence")
  return out


def _held_out(lang_dir: str) -> tuple[set[str], _SentenceSet]:
  """(speakers, sentences) listed in dev.tsv and test.tsv, whether or not their clips exist."""
  speakers, sentences = set(), _SentenceSet()
  for split in ("dev", "test"):
    for row in _raw_rows(os.path.join(lang_dir, f"{split}.tsv")):
      if (row.get("client_id") or "").strip():
        speakers.add(row["client_id"].strip())
      sentences.add(row)
  return speakers, sentences


def _check_listing(report: DataReport, corpus: str, lang: str, split: str, tsv: str,
                   folder: str) -> None:
  """Warns about a split whose listed clips are mostly (partial_download) or all (lost_split)
  absent; each absent clip is counted as missing_audio already."""
  e = report.listing.get((corpus, lang, split))
  if not e or not e["missing"]:
    return
  hours = (f"; {e['missing_seconds'] / 3600:.3f} of {e['listed_seconds'] / 3600:.3f} h by "
           "clip_durations.tsv" if e["stated"] else "")
  if e["missing"] == e["listed"]:
    report.warn(corpus, lang, "lost_split",
                f"split {split!r}: all {e['listed']} clips {tsv} lists are absent from "
                f"{folder}{hours} (a partial download?)")
  elif e["missing"] > PARTIAL_DOWNLOAD_FRACTION * e["listed"]:
    report.warn(corpus, lang, "partial_download",
                f"split {split!r}: {e['missing']} of {e['listed']} clips {tsv} lists are "
                f"absent from {folder}{hours}; counted as missing_audio, the rest is used")


def read_commonvoice(root: str, langs: Sequence[str] | None = None,
                     splits: Sequence[str] = SPLITS, report: DataReport | None = None,
                     train_from_validated: bool = False) -> list[Utterance]:
  """Reads ROOT/commonvoice/<lang>/{split}.tsv (any release: only path, sentence and
  client_id are required; gender, age and accent(s) go to `attributes`, other columns are
  ignored).

  With `train_from_validated`, "train" is validated.tsv minus the clips of every speaker and
  every sentence that dev.tsv or test.tsv lists (see the module doc). Clips of sentences in
  reported.tsv are left out of every split.
  """
  report = report if report is not None else DataReport()
  corpus_dir = corpus_path(root, "commonvoice")
  out = []
  for lang, lang_dir in _language_dirs(
      "commonvoice", corpus_dir, langs, splits, "{}.tsv", report,
      also=("validated.tsv",) if train_from_validated and "train" in splits else ()):
    clips_dir = os.path.join(lang_dir, "clips")
    durations = _clip_durations(lang_dir, lang, report)
    reported = _reported_sentences(lang_dir, lang, report)
    for split in splits:
      from_validated = train_from_validated and split == "train"
      tsv = os.path.join(lang_dir, "validated.tsv" if from_validated else f"{split}.tsv")
      speakers, held_out = _held_out(lang_dir) if from_validated else (set(), _SentenceSet())
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
        elif from_validated and (row.get("client_id") or "").strip() in speakers:
          reason = "dev_test_speaker"
        elif from_validated and row in held_out:
          reason = "dev_test_sentence"
        elif row in reported:
          reason = "reported_sentence"
        else:
          reason = _check_audio(audio)
          report.list_clip("commonvoice", lang, split, reason != "missing_audio",
                           durations.get(clip))
        if reason:
          report.skip("commonvoice", lang, split, reason, audio)
          continue
        seen.add(utt_id)
        out.append(Utterance("commonvoice", lang, split, utt_id, audio, row["sentence"].strip(),
                             row.get("client_id", ""), durations.get(clip),
                             row_attributes(row)))
      _check_listing(report, "commonvoice", lang, split, tsv, clips_dir)
      if from_validated:
        n_train = len(_raw_rows(os.path.join(lang_dir, "train.tsv")))
        skips = report.skip_counts("commonvoice", lang, "train")
        report.note("commonvoice", lang, "train_from_validated",
                    f"train = {tsv} minus {skips.get('dev_test_speaker', 0)} clips of dev/test "
                    f"speakers and {skips.get('dev_test_sentence', 0)} of dev/test sentences "
                    f"(config.data.train_from_validated); train.tsv ({n_train} rows) unused")
    if not train_from_validated and "train" in splits:
      _note_unused_validated(lang_dir, lang, clips_dir, report)
  return out


def _note_unused_validated(lang_dir: str, lang: str, clips_dir: str,
                           report: DataReport) -> None:
  """States, once, the clips validated.tsv lists that no split TSV has (the option is off).
  A warning when train has none of its own on disk: then they are all the data there is."""
  validated = {(r.get("path") or "").strip() for r in _raw_rows(
      os.path.join(lang_dir, "validated.tsv"))} - {""}
  if not validated:
    return
  listed = {(r.get("path") or "").strip() for s in SPLITS
            for r in _raw_rows(os.path.join(lang_dir, f"{s}.tsv"))}
  unused = validated - listed
  if not unused:
    return
  on_disk = set(os.listdir(clips_dir)) if os.path.isdir(clips_dir) else set()
  present = len(unused & on_disk)
  detail = (f"validated.tsv lists {len(unused)} clips in no train/dev/test.tsv ({present} of "
            "them in clips/), not used: config.data.train_from_validated=True trains on "
            "validated.tsv minus the dev/test speakers and sentences")
  train = report.listing.get(("commonvoice", lang, "train"))
  if present and (not train or train["missing"] == train["listed"]):
    report.warn("commonvoice", lang, "validated_unused", detail)
  else:
    report.note("commonvoice", lang, "validated_unused", detail)


def row_attributes(row: dict[str, str]) -> tuple[tuple[str, str], ...]:
  """(attribute, value) pairs of ATTRIBUTE_COLUMNS that `row` states (empty ones left out)."""
  out = []
  for name, columns in ATTRIBUTE_COLUMNS.items():
    value = next((row[c].strip() for c in columns if c in row), "")
    if value.lower() not in _NO_VALUE:
      out.append((name, value))
  return tuple(out)


def _clip_durations(lang_dir: str, lang: str, report: DataReport) -> dict[str, float]:
  """Clip name -> seconds from Common Voice's clip_durations.tsv (`clip`, `duration[ms]`;
  `filename` in the datasheets' wording), which releases since 16.1 ship; {} without one."""
  path = os.path.join(lang_dir, "clip_durations.tsv")
  if not os.path.isfile(path):
    return {}
  table = _read_tsv(path)
  ms_col = next((c for c in table.header if c.startswith("duration")), None)
  clip_col = next((c for c in ("clip", "filename", "path") if c in table.header), None)
  if clip_col is None or ms_col is None:
    report.warn("commonvoice", lang, "clip_durations_unreadable",
                f"{path}: header {table.header}, expected clip and duration[ms]; not used")
    return {}
  clip_i, ms_i = table.header.index(clip_col), table.header.index(ms_col)
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
          report.list_clip("voxpopuli", lang, split, reason != "missing_audio")
        if reason:
          report.skip("voxpopuli", lang, split, reason, audio)
          continue
        seen.add(utt_id)
        out.append(Utterance("voxpopuli", lang, split, utt_id, audio, text,
                             row.get("speaker_id", ""), attributes=row_attributes(row)))
      _check_listing(report, "voxpopuli", lang, split, tsv, lang_dir)
  return out


def audio_dir_manifest(root: str, lang: str) -> str | None:
  """ROOT/audio/<lang>.tsv or .jsonl, the manifest an audio_dir source reads instead of the
  folder ROOT/audio/<lang>/; None without one. Both a folder and a manifest is an error."""
  base = corpus_path(root, "audio_dir")
  found = [os.path.join(base, lang + ext) for ext in MANIFEST_EXTENSIONS
           if os.path.isfile(os.path.join(base, lang + ext))]
  if found and os.path.isdir(os.path.join(base, lang)) or len(found) > 1:
    raise ValueError(f"audio_dir:{lang}: both {found + [os.path.join(base, lang)]} exist; keep "
                     "one (a folder of recordings or a manifest), so what is read is not a guess")
  return found[0] if found else None


def _unlabeled(corpus: str, lang: str, utt_id: str, path: str) -> Utterance:
  return Utterance(corpus, lang, "train", utt_id, path, "", "")


def _add_recording(out: list, seen: set, report: DataReport, corpus: str, lang: str,
                   utt_id: str, path: str) -> None:
  """Keeps a listed recording, or counts it (duplicate_id, missing_audio, empty_audio)."""
  reason = "duplicate_id" if utt_id in seen else _check_audio(path)
  if reason != "duplicate_id":
    report.list_clip(corpus, lang, "train", reason != "missing_audio")
  if reason:
    report.skip(corpus, lang, "train", reason, path)
    return
  seen.add(utt_id)
  out.append(_unlabeled(corpus, lang, utt_id, path))


def read_voxpopuli_unlabelled(root: str, langs: Sequence[str] | None = None,
                              report: DataReport | None = None) -> list[Utterance]:
  """Recordings of ROOT/voxpopuli/unlabelled_data/<lang>/<year>/*.ogg (utt_id: file stem)."""
  corpus = "voxpopuli_unlabelled"
  report = report if report is not None else DataReport()
  corpus_dir = corpus_path(root, corpus)
  out = []
  for lang in _list_langs(corpus_dir, langs):
    lang_dir = os.path.join(corpus_dir, lang)
    if not os.path.isdir(lang_dir):
      report.skip(corpus, lang, "*", "missing_language_dir", lang_dir)
      continue
    _check_lang(corpus, lang, report)
    seen = set()
    for year in sorted(os.listdir(lang_dir)):
      year_dir = os.path.join(lang_dir, year)
      if not (os.path.isdir(year_dir) and len(year) == 4 and year.isdigit()):
        report.skip(corpus, lang, "train", "outside_year_folder", year_dir)
        continue
      for name in sorted(os.listdir(year_dir)):
        path = os.path.join(year_dir, name)
        stem, ext = os.path.splitext(name)
        if ext.lower() != ".ogg" or not os.path.isfile(path):
          report.skip(corpus, lang, "train", "not_audio", path)
          continue
        _add_recording(out, seen, report, corpus, lang, stem, path)
  return out


def _manifest_paths(path: str, corpus: str, lang: str,
                    report: DataReport) -> list[tuple[str, str]]:
  """(path as listed, absolute audio path) of a manifest's rows (see the module doc);
  unreadable rows are counted as bad_row."""
  base = os.path.dirname(os.path.abspath(path))
  rows = []
  if path.endswith(".jsonl"):
    with open(path, "rb") as f:
      for n, raw in enumerate(f, 1):
        if not raw.strip():
          continue
        try:
          p = json.loads(raw.decode("utf-8")).get("path")
        except (UnicodeDecodeError, ValueError, AttributeError):
          p = None
        if not isinstance(p, str) or not p.strip():
          report.skip(corpus, lang, "train", "bad_row", f"{path}:{n}")
          continue
        rows.append((n, p.strip()))
  else:
    table = _read_tsv(path)
    first = table.header[0].strip() if table.header else ""
    fairseq = len(table.header) == 1 and first != "path" and os.path.isdir(
        os.path.join(base, os.path.expanduser(first)))
    if fairseq:  # wav2vec_manifest.py: root folder, then relative_path<TAB>frames
      base = os.path.join(base, os.path.expanduser(first))
      col = 0
    elif "path" in table.header:
      col = table.header.index("path")
    else:
      report.skip(corpus, lang, "train", "bad_header(no path)", path, count=table.num_rows)
      return []
    for n in table.invalid_lines:
      report.skip(corpus, lang, "train", "invalid_utf8", f"{path}:{n}")
    for n, fields in table.rows:
      if len(fields) <= col or not fields[col].strip():
        report.skip(corpus, lang, "train", "bad_row", f"{path}:{n}")
        continue
      rows.append((n, fields[col].strip()))
  out = []
  for _, p in rows:
    p = os.path.normpath(os.path.expanduser(p))
    out.append((p, p if os.path.isabs(p) else os.path.normpath(os.path.join(base, p))))
  return out


def read_audio_dir(root: str, langs: Sequence[str] | None = None,
                   report: DataReport | None = None) -> list[Utterance]:
  """Recordings under ROOT/audio/<lang>/ (utt_id: the path below it, without extension), or
  those a manifest ROOT/audio/<lang>.tsv|.jsonl lists (utt_id: the path as listed, without
  extension; relative to the fairseq manifest's root line)."""
  corpus = "audio_dir"
  report = report if report is not None else DataReport()
  corpus_dir = corpus_path(root, corpus)
  if langs is None:
    langs = sorted(set(_list_langs(corpus_dir, None)) | {
        os.path.splitext(f)[0] for f in (os.listdir(corpus_dir) if os.path.isdir(corpus_dir)
                                         else ()) if f.endswith(MANIFEST_EXTENSIONS)})
  out = []
  for lang in langs:
    manifest = audio_dir_manifest(root, lang)
    lang_dir = os.path.join(corpus_dir, lang)
    seen = set()
    if manifest is not None:
      _check_lang(corpus, lang, report)
      for listed, path in _manifest_paths(manifest, corpus, lang, report):
        _add_recording(out, seen, report, corpus, lang, os.path.splitext(listed)[0], path)
      _check_listing(report, corpus, lang, "train", manifest, "the disk")
      continue
    if not os.path.isdir(lang_dir):
      report.skip(corpus, lang, "*", "missing_language_dir", lang_dir)
      continue
    _check_lang(corpus, lang, report)
    for folder, dirs, files in os.walk(lang_dir, followlinks=True):
      dirs.sort()
      for name in sorted(files):
        path = os.path.join(folder, name)
        if os.path.splitext(name)[1].lower() not in AUDIO_EXTENSIONS:
          report.skip(corpus, lang, "train", "not_audio", path)
          continue
        rel = os.path.relpath(path, lang_dir)
        _add_recording(out, seen, report, corpus, lang, os.path.splitext(rel)[0], path)
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
                splits: Sequence[str] = SPLITS, report: DataReport | None = None,
                train_from_validated: bool = False) -> list[Utterance]:
  """Dispatches to read_commonvoice / read_voxpopuli / the unlabeled readers by corpus name
  (train_from_validated: Common Voice only; VoxPopuli has no validated.tsv). Unlabeled
  corpora have a train split only: other splits come back empty."""
  readers = {"commonvoice": read_commonvoice, "voxpopuli": read_voxpopuli}
  unlabeled = {"voxpopuli_unlabelled": read_voxpopuli_unlabelled, "audio_dir": read_audio_dir}
  if corpus in unlabeled:
    return unlabeled[corpus](root, langs=langs, report=report) if "train" in splits else []
  if corpus not in readers:
    raise ValueError(f"unknown corpus {corpus!r}; known: {sorted(readers) + sorted(unlabeled)}")
  if corpus == "commonvoice":
    return read_commonvoice(root, langs=langs, splits=splits, report=report,
                            train_from_validated=train_from_validated)
  return readers[corpus](root, langs=langs, splits=splits, report=report)


def read_text_corpus(root: str, lang: str, name: str = "validated_sentences",
                     report: DataReport | None = None,
                     exclude_held_out: bool = True) -> list[str]:
  """Sentences of Common Voice's text-only ROOT/commonvoice/<lang>/<name>.tsv
  (validated_sentences: sentence_id, sentence, [variant,] sentence_domain, source, is_used,
  clips_count; unvalidated_sentences: sentence_id, sentence, [variant,] sentence_domain,
  source[, up_votes, down_votes, status]) as LM / tokenizer text. Never audio rows.

  Left out, counted in `report` under split `name`: sentences of reported.tsv
  (`reported_sentence`), sentences dev.tsv or test.tsv lists (`dev_test_sentence`, with
  exclude_held_out: text that is scored is not trained on), `rejected` unvalidated ones
  (`rejected_sentence`), repeats (`duplicate_sentence`), and unreadable rows. [] without the
  file (releases before 17.0).
  """
  if name not in TEXT_CORPORA:
    raise ValueError(f"unknown text corpus {name!r}; known: {TEXT_CORPORA}")
  report = report if report is not None else DataReport()
  lang_dir = os.path.join(corpus_path(root, "commonvoice"), lang)
  tsv = os.path.join(lang_dir, f"{name}.tsv")
  if not os.path.isfile(tsv):
    return []
  reported = _reported_sentences(lang_dir, lang, report)
  held_out = _held_out(lang_dir)[1] if exclude_held_out else _SentenceSet()
  out, seen = [], set()
  for row in _read_rows("commonvoice", lang, name, tsv, ("sentence",), report):
    text = " ".join(row["sentence"].split())
    key = _sentence_key(text)
    if not text:
      reason = "empty_text"
    elif (row.get("status") or "").strip().lower() == "rejected":
      reason = "rejected_sentence"
    elif row in reported:
      reason = "reported_sentence"
    elif row in held_out:
      reason = "dev_test_sentence"
    elif key in seen:
      reason = "duplicate_sentence"
    else:
      reason = None
    if reason:
      report.skip("commonvoice", lang, name, reason, f"{tsv}: {text[:60]}")
      continue
    seen.add(key)
    out.append(text)
  report.note("commonvoice", lang, "text_corpus",
              f"{tsv}: {len(out)} sentences as LM/tokenizer text (no audio)")
  return out
