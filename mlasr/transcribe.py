r"""Transcribes audio files of any format and length with a trained CTC run.

  python -m mlasr.transcribe --workdir RUN --lang en talk.mp3 recordings/ 'calls/*.m4a' \
      [--manifest list.tsv] [--output_dir OUT --formats txt,json,jsonl,srt,vtt,ctm] \
      [--decoder greedy|beam|beam_lm] [--vad auto|silero|energy] [--channel N]

Inputs are files, directories (searched recursively for audio and video files), globs, and
manifests (.tsv with a `path` column and an optional `lang` column, or .jsonl with those
keys; relative paths are relative to the manifest). Every file is read in blocks (soundfile,
or an ffmpeg pipe for what libsndfile cannot read), downmixed (or one `--channel`) and
resampled to 16 kHz on the fly, then read twice: once for the voice-activity detector, once
to cut the speech segments out. So memory holds the VAD's frame scores and a few batches of
segments, never a whole recording.

Segments are at most as long as the longest clip the run trained on (its largest length
bucket), batched across files in the run's bucket shapes (so the jitted model compiles once
per bucket), and decoded with greedy, prefix beam search or beam search with the run's
n-gram LM (`python -m mlasr.lm`, weights tuned on dev) and hotwords, over the outputs of the
segment's language only (`--norestrict_output` lets a multilingual head emit any script).
`--lang auto` identifies the language of each segment: from the model's own posteriors and
the run's character LMs (decoding.LanguageIdentifier), or with a trained LID run
(`--lid_workdir`). Word times and
confidences come from a CTC forced alignment of each segment's hypothesis
(mlasr/alignment.py).

Bad files (missing, empty, undecodable, silent, too short) are reported with the reason and
skipped; the exit status is 1 when any file failed. The end of the run prints the audio
hours and the real-time factor.
"""
from __future__ import annotations

import os

# Before anything imports TensorFlow (tensorflow_datasets, through mlasr.data): its C++
# start-up lines would otherwise land in the user's terminal.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# pylint: disable=wrong-import-position
import collections
import dataclasses
import glob
import json
import logging
import math
import sys
import time
from collections.abc import Iterator, Sequence

import numpy as np

from mlasr import alignment as alignment_lib
from mlasr import vad as vad_lib
from mlasr.data import audio as audio_lib

SAMPLE_RATE = audio_lib.SAMPLE_RATE
# What a directory is searched for: audio, and video containers whose audio ffmpeg reads.
AUDIO_EXTENSIONS = frozenset(
    ".wav .flac .mp3 .ogg .oga .opus .m4a .aac .wma .aif .aiff .au .amr .3gp .webm .mp4 .mkv "
    ".mov .avi .mka .caf .ac3".split())
MANIFEST_EXTENSIONS = (".tsv", ".jsonl")
FORMATS = ("txt", "json", "jsonl", "srt", "vtt", "ctm")
SILENT_DBFS = -60.0  # a file whose peak is below this holds no usable speech


@dataclasses.dataclass
class Item:
  """One input file; `name` is its unique stem for output files."""
  path: str
  lang: str = ""
  name: str = ""


@dataclasses.dataclass(frozen=True)
class Options:
  decoder: str = "greedy"          # greedy | beam | beam_lm
  beam: int = 16
  lm_kind: str = "char"
  lm_dir: str = ""                 # default <workdir>/lm
  lm_weight: float | None = None   # None: tuned on dev (lm/tuned.json)
  word_bonus: float | None = None
  hotwords: tuple[str, ...] = ()
  hotword_weight: float = 2.0
  vad: str = "auto"                # auto (silero if installed) | silero | energy
  channel: int | None = None       # None: average the channels
  max_seconds: float | None = None  # None: the run's longest training bucket
  merge_gap: float = 1.0
  min_seconds: float = 0.2         # shorter files are "too short"
  backend: str = "auto"            # audio reader: auto | soundfile | ffmpeg
  restrict_output: bool = True     # decode over the segment's language's outputs only


# ------------------------------------------------------------------------------ inputs


def read_manifest(path: str) -> list[Item]:
  """Items of a .tsv (header with `path`, optional `lang`) or .jsonl manifest."""
  base = os.path.dirname(os.path.abspath(path))
  items = []

  def add(p, lang):
    p = os.path.expanduser(str(p).strip())
    items.append(Item(p if os.path.isabs(p) else os.path.join(base, p), str(lang or "").strip()))

  with open(path, encoding="utf-8") as f:
    if path.endswith(".jsonl"):
      for n, line in enumerate(f, 1):
        if line.strip():
          row = json.loads(line)
          p = row.get("path", row.get("audio_filepath"))  # NeMo manifests say audio_filepath
          if p is None:
            raise ValueError(f"{path}:{n}: no 'path' key in {sorted(row)}")
          add(p, row.get("lang", row.get("language", "")))
    else:
      header = f.readline().rstrip("\n").split("\t")
      if "path" not in header:
        raise ValueError(f"{path}: the first line must be a header with a 'path' column "
                         f"(and optionally 'lang'), got {header}")
      lang_col = "lang" if "lang" in header else "language" if "language" in header else None
      for line in f:
        if line.strip():
          row = dict(zip(header, line.rstrip("\n").split("\t")))
          add(row["path"], row.get(lang_col, "") if lang_col else "")
  return items


def collect_inputs(specs: Sequence[str]) -> list[Item]:
  """Items from files, directories, globs and manifests, in order, with unique names."""
  items = []
  for spec in specs:
    spec = os.path.expanduser(spec)
    if os.path.isfile(spec) and spec.lower().endswith(MANIFEST_EXTENSIONS):
      items.extend(read_manifest(spec))
    elif os.path.isdir(spec):
      for root, _, files in sorted(os.walk(spec)):
        items.extend(Item(os.path.join(root, f)) for f in sorted(files)
                     if os.path.splitext(f)[1].lower() in AUDIO_EXTENSIONS)
    elif not os.path.exists(spec) and glob.has_magic(spec):
      items.extend(Item(p) for p in sorted(glob.glob(spec, recursive=True)) if os.path.isfile(p))
    else:
      items.append(Item(spec))  # a missing file is reported (and skipped) as "missing"
  used = collections.Counter()
  for item in items:
    stem = os.path.splitext(os.path.basename(item.path))[0] or "audio"
    used[stem] += 1
    item.name = stem if used[stem] == 1 else f"{stem}-{used[stem]}"
  return items


# ------------------------------------------------------------------------------ outputs


def _clock(seconds: float, sep: str) -> str:
  ms = int(round(max(seconds, 0.0) * 1000))
  h, ms = divmod(ms, 3_600_000)
  m, ms = divmod(ms, 60_000)
  s, ms = divmod(ms, 1000)
  return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _cues(result: dict) -> list[tuple[float, float, str]]:
  """Subtitle cues: segments with text, timed by their first and last word."""
  cues = []
  for seg in result["segments"]:
    if seg["text"]:
      words = seg["words"]
      start, end = (words[0]["start"], words[-1]["end"]) if words else (seg["start"], seg["end"])
      cues.append((start, max(end, start + 0.001), seg["text"]))
  return cues


def to_srt(result: dict) -> str:
  return "".join(f"{i}\n{_clock(a, ',')} --> {_clock(b, ',')}\n{text}\n\n"
                 for i, (a, b, text) in enumerate(_cues(result), 1))


def to_vtt(result: dict) -> str:
  return "WEBVTT\n\n" + "".join(f"{_clock(a, '.')} --> {_clock(b, '.')}\n{text}\n\n"
                                for a, b, text in _cues(result))


def to_ctm(result: dict) -> str:
  """NIST CTM for sclite: `<file> <channel> <begin> <duration> <word> <confidence>`."""
  channel = result.get("channel")
  channel = "1" if channel is None else str(channel + 1)
  lines = [f"{result['name']} {channel} {w['start']:.3f} {max(w['end'] - w['start'], 0.001):.3f} "
           f"{w['word']} {w['confidence']:.4f}"
           for seg in result["segments"] for w in seg["words"]]
  return "".join(line + "\n" for line in lines)


def to_text(result: dict) -> str:
  return "".join(seg["text"] + "\n" for seg in result["segments"] if seg["text"])


WRITERS = dict(txt=to_text, srt=to_srt, vtt=to_vtt, ctm=to_ctm,
               json=lambda r: json.dumps(r, ensure_ascii=False, indent=1) + "\n")


# ------------------------------------------------------------------------------ the model


@dataclasses.dataclass
class _Segment:
  file: int
  index: int
  start: float            # seconds in the file
  end: float
  audio: np.ndarray
  lang: str               # "" with --lang auto: LID chooses per segment


@dataclasses.dataclass
class _File:
  item: Item
  info: audio_lib.AudioInfo | None = None
  seconds: float = 0.0
  bounds: list = dataclasses.field(default_factory=list)
  decoded: dict = dataclasses.field(default_factory=dict)
  reading: bool = True
  failed: str = ""
  progress: float = 0.0   # seconds of the bar this file has advanced


class Transcriber:
  """A restored CTC run with its decoders; `run(items)` transcribes and writes outputs."""

  def __init__(self, workdir: str, lang: str = "", adapter: str = "", lid_workdir: str = "",
               step: int | None = None, options: Options = Options()):
    # Imported here: they pull in jax, flax and the data stack (seconds), which `--help`
    # and the output writers above do not need.
    import jax  # pylint: disable=import-outside-toplevel
    from mlasr import decoding, evaluate  # pylint: disable=import-outside-toplevel
    from mlasr import lm as lm_lib  # pylint: disable=import-outside-toplevel
    from mlasr.data import inputs  # pylint: disable=import-outside-toplevel
    self._jax, self._decoding, self._lm_lib = jax, decoding, lm_lib
    if options.decoder not in ("greedy", "beam", "beam_lm"):
      raise ValueError(f"--decoder={options.decoder!r}; use greedy, beam or beam_lm")
    self.options = options
    self.config, self.tokenizer, model, self.step = evaluate.restore_model(workdir, step)
    if self.config.task != "ctc":
      raise ValueError(f"{workdir} is a {self.config.task!r} run; transcription needs a CTC run")
    self.langs = list(getattr(model, "langs", ()) or inputs.languages(self.config.data))
    self.lang = lang
    if adapter:
      self.lang = evaluate.load_adapter(model, adapter, lang if lang not in ("", "auto") else None)
    if self.lang not in ("", "auto") and self.lang not in self.langs:
      raise ValueError(f"--lang={self.lang!r}: the model has {self.langs}")
    self.lm_dir = options.lm_dir or os.path.join(workdir, "lm")
    self.choose = self._identifier = None
    if self.lang == "auto" and lid_workdir:
      self.choose = evaluate.language_chooser("auto", self.langs, lid_workdir)
    # Without an LID run, `--lang auto` (or a manifest's "auto") identifies each segment's
    # language from the posteriors; built on first use, with the run's char LMs.
    self._make_identifier = lambda: decoding.LanguageIdentifier.for_model(
        model, self.tokenizer, self.langs, self.lm_dir, lm_lib.lid_lm_weight(self.lm_dir))
    if self.lang == "auto" and not lid_workdir:
      self._identifier = self._make_identifier()
    self.masks = (dict(zip(self.langs, self.tokenizer.output_mask(self.langs)))
                  if options.restrict_output else {})
    self.encoder = model.encoder
    self.log_probs = evaluate.jitted_log_probs(self.config, model)
    # The run's batch shapes; the longest is the longest clip the model trained on (the CTC
    # pipeline drops longer ones), so no segment may exceed it.
    self.buckets = sorted(inputs.buckets(self.config.data), key=lambda b: b[1])
    longest = self.buckets[-1][1] / SAMPLE_RATE
    self.max_seconds = min(options.max_seconds or longest, longest)
    self.settings, self.scorers = {}, {}
    if options.decoder == "beam_lm":
      if options.lm_weight is None and options.word_bonus is None:
        self.settings = evaluate.tuned_lm_settings(self.lm_dir, options.lm_kind)
      else:
        self.settings = collections.defaultdict(lambda: dict(
            lm_weight=options.lm_weight or 0.0, word_bonus=options.word_bonus or 0.0))
    self.detector = vad_lib.make_detector(options.vad)

  # ---------------------------------------------------------------- per file

  def _language(self, item: Item) -> str:
    lang = item.lang or self.lang
    if not lang:
      if len(self.langs) == 1:
        return self.langs[0]
      raise audio_lib.AudioError(item.path, f"no language: pass --lang (one of {self.langs} "
                                 "or auto) or give a lang column in the manifest")
    if lang != "auto" and lang not in self.langs:
      raise audio_lib.AudioError(item.path, f"language {lang!r} is not one of {self.langs}")
    return "" if lang == "auto" else lang

  def _stream(self, f: _File) -> Iterator[np.ndarray]:
    return audio_lib.stream_audio(f.item.path, SAMPLE_RATE, self.options.channel,
                                  info=f.info)

  def _scan(self, f: _File) -> np.ndarray:
    """Pass 1: VAD scores, length and peak of the file (checks: empty, short, silent)."""
    stats = dict(samples=0, peak=0.0)

    def counted(blocks):
      for block in blocks:
        stats["samples"] += len(block)
        stats["peak"] = max(stats["peak"], float(np.abs(block).max(initial=0.0)))
        yield block

    scores = self.detector.scores(counted(self._stream(f)))
    f.seconds = stats["samples"] / SAMPLE_RATE
    if stats["samples"] == 0:
      raise audio_lib.AudioError(f.item.path, "no_samples (decodes to no audio)")
    if f.seconds < self.options.min_seconds:
      raise audio_lib.AudioError(f.item.path, f"too_short ({f.seconds:.3f} s < "
                                 f"{self.options.min_seconds} s)")
    peak_db = 20 * math.log10(max(stats["peak"], 1e-10))
    if peak_db < SILENT_DBFS:
      raise audio_lib.AudioError(f.item.path, f"silent (peak {peak_db:.1f} dBFS)")
    return scores

  def _segments(self, f: _File, scores: np.ndarray) -> list[tuple[float, float]]:
    frame_seconds = self.detector.frame_samples / SAMPLE_RATE
    on, off = self.detector.thresholds(scores)
    regions = vad_lib.speech_regions(scores, frame_seconds, on, off, f.seconds)
    # A hard floor: a region of fewer samples than one model frame cannot be decoded.
    return [(a, b) for a, b in vad_lib.fit_segments(regions, scores, frame_seconds,
                                                    self.max_seconds, self.options.merge_gap)
            if b - a >= 0.05]

  def _cut(self, f: _File, file_index: int, lang: str) -> Iterator[_Segment]:
    """Pass 2: the segments' audio, cut from a second stream of the file."""
    bounds = [(int(round(a * SAMPLE_RATE)), int(round(b * SAMPLE_RATE))) for a, b in f.bounds]
    if not bounds:
      return
    pos, k, parts = 0, 0, []
    for block in self._stream(f):
      end = pos + len(block)
      while k < len(bounds):
        a, b = bounds[k]
        if a >= end:
          break
        parts.append(block[max(a - pos, 0):max(min(b, end) - pos, 0)])
        if b > end:
          break
        yield _Segment(file_index, k, f.bounds[k][0], f.bounds[k][1],
                       np.concatenate(parts) if len(parts) > 1 else parts[0].copy(), lang)
        parts, k = [], k + 1
      pos = end
    if k < len(bounds):  # the stream ended early (the VAD's padding reaches the last sample)
      yield _Segment(file_index, k, f.bounds[k][0], f.bounds[k][1],
                     np.concatenate(parts) if parts else np.zeros(0, np.float32), lang)

  # ---------------------------------------------------------------- batches

  def _bucket(self, num_samples: int) -> int:
    return next(i for i, (_, n) in enumerate(self.buckets) if n >= num_samples)

  def _decode_batch(self, segments: Sequence[_Segment], bucket: int) -> list[dict]:
    batch_size, num_samples = self.buckets[bucket]
    batch = dict(audio=np.zeros((batch_size, num_samples), np.float32),
                 audio_mask=np.zeros((batch_size, num_samples), np.int32),
                 lang_id=np.zeros(batch_size, np.int32),
                 example_mask=np.zeros(batch_size, np.int32))
    for r, seg in enumerate(segments):
      n = min(len(seg.audio), num_samples)
      batch["audio"][r, :n] = seg.audio[:n]
      batch["audio_mask"][r, :n] = 1
      batch["lang_id"][r] = self.langs.index(seg.lang) if seg.lang else 0
      batch["example_mask"][r] = 1
    langs = [seg.lang for seg in segments]
    if self.choose is not None:
      chosen = self.choose(batch)
      batch["lang_id"] = np.asarray(chosen, np.int32)
      langs = [self.langs[int(chosen[r])] for r in range(len(segments))]
    log_probs, frame_mask = self._jax.device_get(self.log_probs(batch))
    out = []
    for r, seg in enumerate(segments):
      lp = np.asarray(log_probs[r][np.asarray(frame_mask[r]) > 0], np.float64)
      lang = langs[r] or self._identify(lp)
      out.append(self._decode(seg, self._decoding.restrict(lp, self.masks.get(lang)), lang))
    return out

  def _identify(self, log_probs: np.ndarray) -> str:
    if self._identifier is None:
      self._identifier = self._make_identifier()
    return self.langs[self._identifier(log_probs)] if len(log_probs) else self.langs[0]

  def _decode(self, seg: _Segment, log_probs: np.ndarray, lang: str) -> dict:
    """Hypothesis, aligned words and confidence of one segment from its log-posteriors."""
    decoding, opts = self._decoding, self.options
    id_strings = self.tokenizer.id_strings(lang)
    if not len(log_probs):  # a sliver of audio shorter than one model frame
      return dict(start=round(seg.start, 3), end=round(seg.end, 3), lang=lang, text="",
                  confidence=None, words=[])
    if opts.decoder == "greedy":
      tokens, _ = decoding.best_path(log_probs)
      text = " ".join(self.tokenizer.decode(tokens, lang).split())
    else:
      scorer = None
      if opts.decoder == "beam_lm":
        if lang not in self.scorers:
          path = os.path.join(self.lm_dir, lang, f"{opts.lm_kind}.arpa")
          self.scorers[lang] = decoding.LMScorer(self._lm_lib.load_kenlm(path), opts.lm_kind)
        scorer = self.scorers[lang]
      s = self.settings.get(lang, {})
      cfg = decoding.BeamConfig(beam=opts.beam, lm_weight=s.get("lm_weight", 0.0),
                                word_bonus=s.get("word_bonus", 0.0), hotwords=opts.hotwords,
                                hotword_weight=opts.hotword_weight)
      text = decoding.prefix_beam_search(log_probs, id_strings, cfg, scorer)[0][0]
      tokens = self.tokenizer.encode(text, lang) if text else []
    # Frame k covers [k, k + 1) * hop of the segment: the frames split its samples evenly.
    hop = (len(seg.audio) / SAMPLE_RATE) / max(len(log_probs), 1)
    words = []
    if tokens and alignment_lib.feasible(tokens, len(log_probs)):
      path = alignment_lib.forced_align(log_probs, tokens)
      words = alignment_lib.word_timings(tokens, id_strings, path, log_probs, hop, seg.start)
    elif tokens:  # a re-tokenized beam text longer than the frames: no alignment exists
      logging.warning("segment %.2f-%.2f s: no alignment of %d tokens in %d frames",
                      seg.start, seg.end, len(tokens), len(log_probs))
    confidence = (float(np.mean([w["confidence"] for w in words])) if words else None)
    return dict(start=round(seg.start, 3), end=round(seg.end, 3), lang=lang, text=text,
                confidence=None if confidence is None else round(confidence, 4), words=words)

  # ---------------------------------------------------------------- the run

  def run(self, items: Sequence[Item], output_dir: str = "", formats: Sequence[str] = ("txt",),
          progress: bool = True, echo=None) -> dict:
    """Transcribes `items`; writes `formats` per file into output_dir; returns a summary.

    echo(result) receives each finished file's result dict (default: its text to stdout).
    """
    import tqdm  # pylint: disable=import-outside-toplevel
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
      raise ValueError(f"unknown formats {unknown}; choose from {FORMATS}")
    if output_dir:
      os.makedirs(output_dir, exist_ok=True)
    jsonl = (open(os.path.join(output_dir, "transcripts.jsonl"), "w", encoding="utf-8")
             if output_dir and "jsonl" in formats else None)
    started = time.perf_counter()
    files = [_File(item) for item in items]
    for f in files:  # probe first: the bar's total, and unreadable files reported at once
      try:
        f.info = audio_lib.probe_audio(f.item.path, self.options.backend)
      except audio_lib.AudioError as e:
        f.failed = e.reason
    total = sum(f.info.seconds or 0.0 for f in files if f.info)
    bar = tqdm.tqdm(total=total, unit="s", desc="audio", disable=not progress,
                    dynamic_ncols=True, bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s "
                    "[{elapsed}<{remaining}]")
    summary = dict(files=len(files), ok=0, failed=[], audio_seconds=0.0, speech_seconds=0.0,
                   segments=0)

    def report(f):
      bar.write(f"skipped {f.item.path}: {f.failed}", file=sys.stderr)
      summary["failed"].append(dict(path=f.item.path, reason=f.failed))
      if jsonl:
        jsonl.write(json.dumps(dict(path=f.item.path, status="failed", reason=f.failed),
                               ensure_ascii=False) + "\n")
      advance(f, (f.info.seconds or 0.0) if f.info else 0.0)

    def advance(f, to):
      to = min(to, (f.info.seconds or f.seconds) if f.info else to)
      if to > f.progress:
        bar.update(to - f.progress)
        f.progress = to

    def finish(f):
      segs = [f.decoded[k] for k in range(len(f.bounds))]
      result = dict(path=f.item.path, name=f.item.name, duration=round(f.seconds, 3),
                    sample_rate=f.info.sample_rate, channels=f.info.channels,
                    channel=self.options.channel, decoder=self.options.decoder,
                    vad=self.detector.name, text=" ".join(s["text"] for s in segs if s["text"]),
                    segments=segs)
      for fmt in formats:
        if output_dir and fmt in WRITERS:
          with open(os.path.join(output_dir, f"{f.item.name}.{fmt}"), "w",
                    encoding="utf-8") as out:
            out.write(WRITERS[fmt](result))
      if jsonl:
        jsonl.write(json.dumps(dict(result, status="ok"), ensure_ascii=False) + "\n")
      summary["ok"] += 1
      summary["audio_seconds"] += f.seconds
      summary["speech_seconds"] += sum(b - a for a, b in f.bounds)
      summary["segments"] += len(f.bounds)
      if echo is None:
        bar.write(f"{f.item.path}: {result['text']}", file=sys.stdout)
      else:
        echo(result)
      advance(f, f.info.seconds or f.seconds)
      f.decoded = {}  # written out: a long file's segments are not kept to the end of the run

    pending = [[] for _ in self.buckets]

    def flush(bucket):
      segments, pending[bucket] = pending[bucket], []
      for seg, res in zip(segments, self._decode_batch(segments, bucket)):
        f = files[seg.file]
        if f.failed:
          continue
        f.decoded[seg.index] = res
        speech = sum(b - a for a, b in f.bounds) or 1.0
        advance(f, f.progress + (seg.end - seg.start) / speech * (f.info.seconds or f.seconds))
        if not f.reading and len(f.decoded) == len(f.bounds):
          finish(f)

    for i, f in enumerate(files):
      if f.failed:
        report(f)
        continue
      try:
        lang = self._language(f.item)
        f.bounds = self._segments(f, self._scan(f))
        for seg in self._cut(f, i, lang):
          b = self._bucket(len(seg.audio))
          pending[b].append(seg)
          if len(pending[b]) == self.buckets[b][0]:
            flush(b)
      except audio_lib.AudioError as e:
        f.failed = e.reason
        report(f)
        continue
      f.reading = False
      if len(f.decoded) == len(f.bounds):  # every segment decoded already (or none found)
        finish(f)
    for b in range(len(self.buckets)):
      if pending[b]:
        flush(b)
    bar.close()
    if jsonl:
      jsonl.close()
    summary["seconds"] = time.perf_counter() - started
    summary["rtf"] = (summary["seconds"] / summary["audio_seconds"]
                      if summary["audio_seconds"] else None)
    return summary


def summary_text(summary: dict, load_seconds: float | None = None) -> str:
  """The run's closing lines: audio hours, real-time factor, the failures and why."""
  lines = [f"{summary['ok']} of {summary['files']} files transcribed: "
           f"{summary['audio_seconds'] / 3600:.4f} h of audio, "
           f"{summary['speech_seconds'] / 3600:.4f} h in {summary['segments']} speech segments, "
           f"in {summary['seconds']:.1f} s"
           + (f" (real-time factor {summary['rtf']:.4f})" if summary["rtf"] is not None else "")
           + (f"; model loaded in {load_seconds:.1f} s" if load_seconds is not None else "")]
  if summary["failed"]:
    lines.append(f"{len(summary['failed'])} failed:")
    lines += [f"  {f['path']}: {f['reason']}" for f in summary["failed"]]
  return "\n".join(lines)


def quiet_libraries() -> None:
  """absl/jax/orbax INFO lines and TF's C++ logs out of the terminal; warnings still show."""
  from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel
  absl_logging.set_verbosity(absl_logging.WARNING)
  absl_logging.set_stderrthreshold("warning")
  for name in ("jax", "jax._src", "orbax", "absl", "tensorflow", "grain"):
    logging.getLogger(name).setLevel(logging.WARNING)


def main(argv):
  from absl import flags  # pylint: disable=import-outside-toplevel
  f = flags.FLAGS
  quiet_libraries()
  specs = list(argv[1:]) + ([f.manifest] if f.manifest else [])
  if not specs:
    raise app_usage_error("give audio files, directories, globs or --manifest")
  formats = tuple(x.strip() for x in f.formats.split(",") if x.strip())
  hotwords = tuple(w.strip() for w in f.hotwords.split(",") if w.strip())
  options = Options(decoder=f.decoder, beam=f.beam, lm_kind=f.lm_kind, lm_dir=f.lm_dir,
                    lm_weight=f.lm_weight, word_bonus=f.word_bonus, hotwords=hotwords,
                    hotword_weight=f.hotword_weight, vad=f.vad, channel=f.channel,
                    max_seconds=f.max_seconds, merge_gap=f.merge_gap,
                    min_seconds=f.min_seconds, backend=f.backend,
                    restrict_output=f.restrict_output)
  loaded = time.perf_counter()
  transcriber = Transcriber(f.workdir, f.lang, f.adapter, f.lid_workdir, f.step, options)
  loaded = time.perf_counter() - loaded
  summary = transcriber.run(collect_inputs(specs), f.output_dir, formats,
                            progress=not f.no_progress)
  print(summary_text(summary, loaded))
  if f.output_dir:
    print(f"Outputs ({', '.join(formats)}) in {f.output_dir}")
  return 1 if summary["failed"] else 0


def app_usage_error(message: str):
  from absl import app  # pylint: disable=import-outside-toplevel
  return app.UsageError(message)


def define_flags() -> None:
  from absl import flags  # pylint: disable=import-outside-toplevel
  flags.DEFINE_string("workdir", None, "Training workdir of a CTC run.")
  flags.DEFINE_string("manifest", "", "A .tsv (path[, lang]) or .jsonl manifest of inputs.")
  flags.DEFINE_string("lang", "", "Language of every input without one: a code of the model, "
                      "or 'auto' (identified per segment: from the model's posteriors and the "
                      "run's char LMs, or by --lid_workdir).")
  flags.DEFINE_string("adapter", "", "An exported language adapter (.safetensors) to load.")
  flags.DEFINE_string("lid_workdir", "", "Trained LID run (experiments/lid.py) for --lang auto "
                      "(default: the CTC model's own posteriors and char LMs).")
  flags.DEFINE_bool("restrict_output", True, "Decode over the language's own outputs only.")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
  flags.DEFINE_string("output_dir", "", "Write one file per input and format here.")
  flags.DEFINE_string("formats", "txt,json", f"Comma-separated, from {','.join(FORMATS)}.")
  flags.DEFINE_enum("decoder", "greedy", ["greedy", "beam", "beam_lm"], "CTC decoder.")
  flags.DEFINE_integer("beam", 16, "Beam width.")
  flags.DEFINE_enum("lm_kind", "char", ["char", "word"], "Which LM beam_lm uses.")
  flags.DEFINE_string("lm_dir", "", "LMs of `python -m mlasr.lm` (default <workdir>/lm).")
  flags.DEFINE_float("lm_weight", None, "LM weight (default: tuned on dev).")
  flags.DEFINE_float("word_bonus", None, "Word insertion bonus (default: tuned on dev).")
  flags.DEFINE_string("hotwords", "", "Comma-separated words/phrases to boost (beam decoders).")
  flags.DEFINE_float("hotword_weight", 2.0, "Bonus per matched hotword character.")
  flags.DEFINE_enum("vad", "auto", ["auto", "silero", "energy"], "Voice-activity detector "
                    "(auto: Silero when onnxruntime and silero-vad are installed, else energy).")
  flags.DEFINE_integer("channel", None, "Decode this channel (0-based) instead of the mix.")
  flags.DEFINE_float("max_seconds", None, "Segment length cap (default and upper bound: the "
                     "run's longest training bucket).")
  flags.DEFINE_float("merge_gap", 1.0, "Join speech regions closer than this (seconds).")
  flags.DEFINE_float("min_seconds", 0.2, "Files shorter than this are skipped (too short).")
  flags.DEFINE_enum("backend", "auto", list(audio_lib.BACKENDS), "Audio reader.")
  flags.DEFINE_bool("no_progress", False, "No progress bar.")
  flags.mark_flags_as_required(["workdir"])


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  define_flags()
  app.run(lambda argv: sys.exit(main(argv)))
