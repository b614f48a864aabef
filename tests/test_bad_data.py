"""Nothing bad gets through preparation (issue 16 §0): corrupt clips, headers, transcripts and
TSVs are refused and counted, never kept and never fatal; setup mistakes give clear errors.

The last test is a fuzz test: a generator writes a small corpus in the real Common Voice
layout with many kinds of corruption (each row knows whether it is good and, if not, the
reason it must be counted under), the corpus is prepared, and every input row must come out
either kept (and good) or skipped (with its reason).
"""

import collections
import os
import struct

import numpy as np
import pytest
import soundfile as sf

from mlasr import config_lib
from mlasr.data import audio
from mlasr.data import corpora
from mlasr.data import inputs
from mlasr.data import tfds_builder

CV = ("client_id path sentence_id sentence sentence_domain up_votes down_votes age gender "
      "accents variant locale segment").split()
SENTENCE = "a short sentence"


def _tone(seconds, sr=16000, freq=440.0, amp=0.3, channels=1):
  t = np.arange(int(seconds * sr)) / sr
  x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
  return np.stack([x] * channels, axis=1) if channels > 1 else x


def _write_wav(path, seconds=0.5, sr=16000, **fields):
  """A 16-bit PCM WAV, then header fields overwritten (libsndfile's own layout: fmt at 12)."""
  sf.write(path, _tone(seconds, sr), sr, subtype="PCM_16")
  offsets = {"channels": (22, "<H"), "rate": (24, "<I"), "byte_rate": (28, "<I"),
             "block_align": (32, "<H"), "bits": (34, "<H"), "data_size": (40, "<I")}
  if fields:
    data = bytearray(open(path, "rb").read())
    assert data[36:40] == b"data"
    for name, value in fields.items():
      offset, fmt = offsets[name]
      struct.pack_into(fmt, data, offset, value)
    open(path, "wb").write(bytes(data))
  return str(path)


def _mp3(path, seconds=1.0, keep_bytes=None, sr=48000, **tone):
  sf.write(path, _tone(seconds, sr, **tone), sr, format="MP3", subtype="MPEG_LAYER_III")
  if keep_bytes is not None:
    data = open(path, "rb").read()
    open(path, "wb").write(data[:int(len(data) * keep_bytes)])
  return str(path)


def _tsv_line(path, sentence, client="spk1"):
  values = {"client_id": client, "path": path, "sentence": sentence, "locale": "x"}
  return "\t".join(values.get(c, "") for c in CV)


def _write_bytes_tsv(path, lines, newline=b"\n", encoding="utf-8"):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  body = [("\t".join(CV)).encode()] + [l if isinstance(l, bytes) else l.encode(encoding)
                                        for l in lines]
  with open(path, "wb") as f:
    f.write(newline.join(body) + newline)


# ------------------------------------------------------------------------------------------
# Audio headers: refused before decoding.
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fields,reason", [
    (dict(rate=1, byte_rate=2), "bad_sample_rate"),  # a consistent header claiming 1 Hz
    (dict(rate=10_000_000, byte_rate=20_000_000), "bad_sample_rate"),
    (dict(channels=200, block_align=400, byte_rate=6_400_000), "bad_channels"),
    (dict(rate=1), "bad_header"),  # only the rate field patched: the byte rate disagrees
    (dict(rate=8000), "bad_header"),  # plausible, but not what the data was written at
    (dict(bits=8), "bad_header"),  # wrong bit depth: the block align disagrees
    (dict(bits=24), "bad_header"),
    (dict(data_size=10**6), "truncated"),  # the data chunk was cut
])
def test_wav_header_refused_before_decoding(tmp_path, monkeypatch, fields, reason):
  path = _write_wav(tmp_path / "x.wav", **fields)

  def no_decoding(*args, **kwargs):
    raise AssertionError("decoded a clip whose header should have been refused")
  monkeypatch.setattr(sf.SoundFile, "read", no_decoding)
  with pytest.raises(audio.AudioError) as e:
    audio.load_audio(path)
  assert e.value.reason.startswith(reason) and path in str(e.value)


def test_too_long_by_header_and_truncated_mp3(tmp_path, monkeypatch):
  path = _write_wav(tmp_path / "long.wav", seconds=1.0)
  with monkeypatch.context() as m:
    m.setattr(sf.SoundFile, "read", lambda *a, **k: pytest.fail("decoded"))
    with pytest.raises(audio.AudioError, match="too_long"):
      audio.load_audio(path, max_seconds=0.5)
  assert len(audio.load_audio(path, max_seconds=None)) == 16000
  # An MP3 cut short keeps the full frame count in its Xing/Info header: a short read.
  for keep in (0.3, 0.6, 0.9):
    cut = _mp3(tmp_path / f"cut{keep}.mp3", keep_bytes=keep)
    with pytest.raises(audio.AudioError, match="truncated"):
      audio.load_audio(cut)
  assert len(audio.load_audio(_mp3(tmp_path / "whole.mp3"))) == 16000


# ------------------------------------------------------------------------------------------
# TSVs: no row lost without a report entry.
# ------------------------------------------------------------------------------------------


def _cv_lang(root, lang="tw", clips=("a.mp3", "b.mp3", "c.mp3")):
  d = os.path.join(root, "commonvoice", lang)
  os.makedirs(os.path.join(d, "clips"), exist_ok=True)
  for name in clips:
    sf.write(os.path.join(d, "clips", name), _tone(0.3, 16000), 16000, format="MP3")
  return d


def test_tsv_line_endings_encodings_and_bad_header(tmp_path):
  d = _cv_lang(str(tmp_path))
  # CR-only line endings (old Mac): 3 rows, not one header line.
  _write_bytes_tsv(os.path.join(d, "train.tsv"),
                   [_tsv_line(c, f"row {c}") for c in ("a.mp3", "b.mp3", "c.mp3")],
                   newline=b"\r")
  # Latin-1: the row with a non-ASCII byte is not UTF-8; the ASCII row is fine.
  _write_bytes_tsv(os.path.join(d, "dev.tsv"),
                   [_tsv_line("a.mp3", "caf\u00e9 cr\u00e8me"), _tsv_line("b.mp3", "plain")],
                   encoding="latin-1")
  # No "sentence" column: every row is lost, and counted as such.
  with open(os.path.join(d, "test.tsv"), "w", encoding="utf-8") as f:
    f.write("client_id\tpath\n" + "".join(f"s\t{c}\n" for c in ("a.mp3", "b.mp3", "c.mp3")))
  report = corpora.DataReport()
  utts = corpora.read_commonvoice(str(tmp_path), report=report)
  assert [(u.split, u.text) for u in utts] == [
      ("train", "row a.mp3"), ("train", "row b.mp3"), ("train", "row c.mp3"), ("dev", "plain")]
  assert not any("\ufffd" in u.text for u in utts)
  assert report.skip_counts(split="dev") == {"invalid_utf8": 1}
  assert report.skip_counts(split="test") == {"bad_header(no sentence)": 3}
  warned = {w["reason"]: w["detail"] for w in report.warnings}
  assert "dev.tsv" in warned["not_utf8"] and "iconv" in warned["not_utf8"]
  assert "train.tsv" in warned["cr_line_endings"]


# ------------------------------------------------------------------------------------------
# Preparation: bad items are refused and counted, one item is never fatal.
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prepared_bad(tmp_path_factory):
  """One Common Voice language with one bad item of each kind, prepared once."""
  root = str(tmp_path_factory.mktemp("bad_cv"))
  data_dir = str(tmp_path_factory.mktemp("bad_tfds"))
  d = _cv_lang(root, clips=())
  clips = os.path.join(d, "clips")
  for i in range(3):
    _mp3(os.path.join(clips, f"good{i}.mp3"), seconds=0.6, freq=300 + 100 * i)
  _mp3(os.path.join(clips, "silent.mp3"), amp=0.0)
  _write_wav(os.path.join(clips, "onehz.wav"), seconds=0.05, rate=1, byte_rate=2)
  _mp3(os.path.join(clips, "cut.mp3"), keep_bytes=0.5)
  sf.write(os.path.join(clips, "shorter.ogg"), _tone(0.5), 16000)  # stated 1.5 s below
  sf.write(os.path.join(clips, "long.ogg"), _tone(1.5), 16000)  # stated 0.5 s below
  _mp3(os.path.join(clips, "oom.mp3"))
  _mp3(os.path.join(clips, "wordy.mp3"))
  _mp3(os.path.join(d, "outside.mp3"))  # exists, but not in clips/
  with open(os.path.join(d, "clip_durations.tsv"), "w", encoding="utf-8") as f:
    f.write("clip\tduration[ms]\nshorter.ogg\t1500\nlong.ogg\t500\ngood0.mp3\t600\n")
  _write_bytes_tsv(os.path.join(d, "train.tsv"), [
      _tsv_line("good0.mp3", SENTENCE), _tsv_line("good1.mp3", SENTENCE),
      _tsv_line("silent.mp3", SENTENCE), _tsv_line("onehz.wav", SENTENCE),
      _tsv_line("cut.mp3", SENTENCE), _tsv_line("shorter.ogg", SENTENCE),
      _tsv_line("long.ogg", SENTENCE), _tsv_line("oom.mp3", SENTENCE),
      _tsv_line("wordy.mp3", "blah " * 20_000),
      _tsv_line("../outside.mp3", SENTENCE), _tsv_line(os.path.join(d, "outside.mp3"), SENTENCE),
      _tsv_line("good2.mp3", SENTENCE),  # also in test: a leak
      _tsv_line("good1.mp3", "caf@").encode().replace(b"@", b"\xe9"),  # Latin-1, not UTF-8
  ])
  _write_bytes_tsv(os.path.join(d, "test.tsv"), [_tsv_line("good2.mp3", SENTENCE)])
  _write_bytes_tsv(os.path.join(d, "dev.tsv"), [_tsv_line("good0.mp3", SENTENCE)])
  real_load = audio.load_audio

  def load(path, *args, **kwargs):
    if path.endswith("oom.mp3"):
      raise MemoryError("simulated: one clip exhausts memory")
    return real_load(path, *args, **kwargs)
  with pytest.MonkeyPatch.context() as m:
    m.setattr(tfds_builder.audio_lib, "load_audio", load)
    tfds_builder.prepare(root, data_dir, "commonvoice", "tw", num_workers=1)
  report = tfds_builder.load_report(data_dir, "commonvoice", "tw")
  kept = {s: set(tfds_builder.load_index(data_dir, "commonvoice", "tw")[s]["utt_id"])
          for s in ("train", "dev", "test")}
  return report, kept


def test_one_clip_is_never_fatal(prepared_bad):
  report, kept = prepared_bad
  train = report.skip_counts(split="train")
  assert train["error(MemoryError)"] == 1  # counted, and the preparation finished
  assert train["audio_bad_sample_rate"] == 1  # the 1 Hz WAV, refused from its header
  assert kept["train"] == {"good1"}


def test_truncated_silent_and_wordy_clips_are_counted(prepared_bad):
  report, _ = prepared_bad
  train = report.skip_counts(split="train")
  assert train["audio_truncated"] == 2  # the cut MP3 (short read), the OGG shorter than stated
  assert train["audio_longer_than_stated"] == 1
  assert train["audio_silent"] == 1
  assert train["text_too_long_for_audio"] == 1
  assert train["invalid_utf8"] == 1


def test_paths_outside_clips_and_split_leaks_are_refused(prepared_bad):
  report, kept = prepared_bad
  train = report.skip_counts(split="train")
  assert train["path_outside_clips"] == 2
  assert train["also_in_test"] == 1 and train["also_in_dev"] == 1  # good2 and good0
  assert kept["test"] == {"good2"} and kept["dev"] == {"good0"}
  rows = 13 + 1 + 1
  assert sum(report.skip_counts().values()) + report.kept_count() == rows


def test_report_survives_a_death_before_it_was_written(tmp_path, monkeypatch):
  root = str(tmp_path / "corpus")
  d = _cv_lang(root)
  _write_bytes_tsv(os.path.join(d, "train.tsv"), [_tsv_line(c, SENTENCE)
                                                  for c in ("a.mp3", "b.mp3", "nope.mp3")])

  class Died(BaseException):
    pass

  def die(self, path):
    raise Died(path)
  with monkeypatch.context() as m:  # the process "dies" after the dataset write
    m.setattr(corpora.DataReport, "to_json", die)
    with pytest.raises(Died):
      tfds_builder.prepare(root, str(tmp_path / "tfds"), "commonvoice", "tw")
  tfds_builder.prepare(root, str(tmp_path / "tfds"), "commonvoice", "tw")
  report = tfds_builder.load_report(str(tmp_path / "tfds"), "commonvoice", "tw")
  assert report.kept_count(split="train") == 2
  assert report.skip_counts(split="train") == {"missing_audio": 1}


# ------------------------------------------------------------------------------------------
# Setup mistakes: clear errors.
# ------------------------------------------------------------------------------------------


def _data_cfg(root, **kw):
  cfg = config_lib.base_config().data
  cfg.root, cfg.sources, cfg.prepare_workers = root, ("commonvoice:tw",), 1
  cfg.update(kw)
  return cfg


def test_header_only_dev_names_eval_split(tmp_path):
  root = str(tmp_path)
  d = _cv_lang(root)
  _write_bytes_tsv(os.path.join(d, "train.tsv"), [_tsv_line("a.mp3", SENTENCE)])
  _write_bytes_tsv(os.path.join(d, "test.tsv"), [_tsv_line("b.mp3", SENTENCE)])
  _write_bytes_tsv(os.path.join(d, "dev.tsv"), [])  # a real small-language release
  with pytest.raises(ValueError, match="eval_split") as e:
    inputs.prepare_sources(_data_cfg(root))
  assert "'dev'" in str(e.value) and "no rows" in str(e.value)
  assert "--config.data.eval_split=test" in str(e.value)
  inputs.prepare_sources(_data_cfg(root, eval_split="test"))  # the hint works


def test_split_whose_every_clip_is_refused(tmp_path):
  # The loader keeps the dev rows (the files exist); decoding refuses both. TFDS would fail
  # the whole build on a split without examples: the split is left out, and says why.
  root = str(tmp_path)
  d = _cv_lang(root)
  open(os.path.join(d, "clips", "junk.mp3"), "wb").write(b"not audio" * 100)
  _mp3(os.path.join(d, "clips", "quiet.mp3"), amp=0.0)
  _write_bytes_tsv(os.path.join(d, "train.tsv"), [_tsv_line("a.mp3", SENTENCE)])
  _write_bytes_tsv(os.path.join(d, "test.tsv"), [_tsv_line("b.mp3", SENTENCE)])
  _write_bytes_tsv(os.path.join(d, "dev.tsv"), [_tsv_line("junk.mp3", SENTENCE),
                                               _tsv_line("quiet.mp3", SENTENCE)])
  with pytest.raises(ValueError, match="eval_split='dev'.*audio_undecodable") as e:
    inputs.prepare_sources(_data_cfg(root))
  assert "audio_silent" in str(e.value)
  report = tfds_builder.load_report(os.path.join(root, "tfds"), "commonvoice", "tw")
  assert report.skip_counts(split="dev") == {"audio_undecodable": 1, "audio_silent": 1}
  assert "split_left_out" in {w["reason"] for w in report.warnings}


def test_mistyped_root_creates_nothing(tmp_path):
  wrong = str(tmp_path / "cv-corpus-17.O")  # O for 0
  with pytest.raises(FileNotFoundError, match="no such corpus root") as e:
    inputs.prepare_sources(_data_cfg(wrong))
  assert wrong in str(e.value) and not os.path.exists(wrong)
  _cv_lang(str(tmp_path / "real"), lang="tw")
  with pytest.raises(FileNotFoundError, match="no language folder 'twi'.*'tw'"):
    inputs.prepare_sources(_data_cfg(str(tmp_path / "real"), sources=("commonvoice:twi",)))
  assert not os.path.exists(tmp_path / "real" / "tfds")


def test_evaluate_on_a_folder_that_is_not_a_run(tmp_path):
  from mlasr import evaluate  # pylint: disable=g-import-not-at-top
  (tmp_path / "runs" / "ctc1").mkdir(parents=True)
  (tmp_path / "runs" / "ctc1" / "config.json").write_text("{}")
  with pytest.raises(FileNotFoundError, match="not an mlasr run.*ctc1"):
    evaluate.run(str(tmp_path / "runs"), "test")
  with pytest.raises(FileNotFoundError, match="no such run folder"):
    evaluate.run(str(tmp_path / "nowhere"), "test")


def _read_only_dir(tmp_path):
  """A folder this process cannot write to (root ignores modes: then a sysfs folder)."""
  ro = tmp_path / "ro"
  ro.mkdir()
  ro.chmod(0o555)
  try:
    open(ro / "probe", "w").close()
  except OSError:
    return str(ro)
  try:
    open("/sys/kernel/mlasr_probe", "w").close()
  except OSError:
    return "/sys/kernel"
  pytest.skip("no read-only folder available")


def test_read_only_workdir(tmp_path):
  from mlasr import train  # pylint: disable=g-import-not-at-top
  workdir = _read_only_dir(tmp_path)
  with pytest.raises(PermissionError, match="--workdir .* is not writable") as e:
    train.run(config_lib.base_config(), workdir)
  assert workdir in str(e.value)


# ------------------------------------------------------------------------------------------
# Fuzz: a corrupted corpus in the real Common Voice layout.
# ------------------------------------------------------------------------------------------

# kind -> the reasons a row of that kind may be skipped under (None: it is good, kept).
KINDS = {
    "good_mp3": None, "good_wav": None, "good_stereo_flac": None, "good_32k_mp3": None,
    # With a tenth of its bytes left, an MP3 has no complete frame: undecodable.
    "truncated_mp3": {"audio_truncated", "audio_undecodable", "audio_no_samples"},
    "silent": {"audio_silent"},
    "rate_1hz": {"audio_bad_sample_rate"},
    "rate_field": {"audio_bad_header"},
    "bits_field": {"audio_bad_header"},
    "channels_field": {"audio_bad_header"},
    "wav_cut": {"audio_truncated"},
    # Random bytes that an MP3 decoder happens to lock onto are far shorter than stated.
    "garbage": {"audio_undecodable", "audio_truncated", "too_short", "audio_no_samples"},
    "directory": {"audio_undecodable"},
    "nan_wav": {"audio_non_finite"},
    "too_short": {"too_short"},
    "longer_than_stated": {"audio_longer_than_stated"},
    "shorter_than_stated": {"audio_truncated"},
    "zero_bytes": {"empty_audio"},
    "missing": {"missing_audio"},
    "outside": {"path_outside_clips"},
    "absolute": {"path_outside_clips"},
    "huge_text": {"text_too_long_for_audio"},
    "empty_text": {"empty_text"},
    "bad_utf8": {"invalid_utf8"},
    "bad_row": {"bad_row"},
}


class _Corpus:
  """Writes rows of given kinds into commonvoice/<lang>/ and remembers what each must yield."""

  def __init__(self, root, lang, rng):
    self.dir = os.path.join(root, "commonvoice", lang)
    self.clips = os.path.join(self.dir, "clips")
    os.makedirs(self.clips)
    self.rng, self.n = rng, 0
    self.lines = collections.defaultdict(list)  # split -> encoded TSV lines
    self.expect = collections.defaultdict(list)  # split -> [(utt_id, reasons or None)]
    self.durations = {}

  def _name(self, ext):
    self.n += 1
    return f"common_voice_{os.path.basename(self.dir)}_{self.n:05d}.{ext}"

  def clip(self, kind):
    """Writes the audio of one row of `kind`; returns (path column, sentence)."""
    rng, seconds = self.rng, float(self.rng.uniform(0.5, 1.2))
    tone = dict(freq=float(rng.uniform(150, 900)), amp=float(rng.uniform(0.1, 0.6)))
    ext = {"good_wav": "wav", "good_stereo_flac": "flac", "rate_1hz": "wav", "rate_field": "wav",
           "bits_field": "wav", "channels_field": "wav", "wav_cut": "wav", "nan_wav": "wav",
           "longer_than_stated": "ogg", "shorter_than_stated": "ogg"}.get(kind, "mp3")
    name = self._name(ext)
    path = os.path.join(self.clips, name)
    sentence = " ".join(rng.choice(["ama", "kofi", "akwaaba", "nsuo", "\u025bn\u025b"], 3))
    if kind in ("good_mp3", "huge_text", "empty_text", "bad_utf8", "bad_row"):
      _mp3(path, seconds, **tone)
    elif kind == "good_32k_mp3":
      _mp3(path, seconds, sr=32000, **tone)
    elif kind == "good_wav":
      sf.write(path, _tone(seconds, 16000, **tone), 16000)
    elif kind == "good_stereo_flac":
      sf.write(path, _tone(seconds, 44100, channels=2, **tone), 44100)
    elif kind == "truncated_mp3":
      _mp3(path, seconds, keep_bytes=float(rng.uniform(0.1, 0.9)), **tone)
    elif kind == "silent":
      _mp3(path, seconds, amp=0.0)
    elif kind == "rate_1hz":
      _write_wav(path, 0.05, rate=1, byte_rate=2)
    elif kind == "rate_field":
      _write_wav(path, seconds, rate=int(rng.choice([1, 8000, 44100, 10**7])))
    elif kind == "bits_field":
      _write_wav(path, seconds, bits=int(rng.choice([8, 24, 32])))
    elif kind == "channels_field":
      _write_wav(path, seconds, channels=int(rng.choice([2, 6, 200])))
    elif kind == "wav_cut":
      _write_wav(path, seconds)
      data = open(path, "rb").read()
      open(path, "wb").write(data[:int(len(data) * rng.uniform(0.3, 0.9))])
    elif kind == "garbage":
      open(path, "wb").write(rng.bytes(int(rng.integers(10, 5000))))
    elif kind == "directory":
      os.makedirs(path)
    elif kind == "nan_wav":
      x = _tone(seconds, 16000, **tone)
      x[int(rng.integers(len(x)))] = np.nan
      sf.write(path, x, 16000, subtype="FLOAT")
    elif kind == "too_short":
      seconds = 0.04
      _mp3(path, seconds, **tone)
    elif kind in ("longer_than_stated", "shorter_than_stated"):
      sf.write(path, _tone(seconds, 16000, **tone), 16000)
      self.durations[name] = seconds * (0.4 if kind == "longer_than_stated" else 2.5)
    elif kind == "zero_bytes":
      open(path, "wb").close()
    elif kind == "missing":
      pass
    elif kind == "outside":
      _mp3(os.path.join(self.dir, name), seconds, **tone)
      name = "../" + name
    elif kind == "absolute":
      _mp3(os.path.join(self.dir, name), seconds, **tone)
      name = os.path.join(self.dir, name)
    else:
      raise ValueError(kind)
    if "good" not in kind:  # the others stated right, as a release would
      self.durations.setdefault(name, seconds)
    return name, sentence

  def row(self, split, kind, path=None, sentence=None, expect=None):
    """One row of `kind`, or (path, sentence given) a row repeating a clip: then `expect`
    is the skip reason it must get."""
    if path is None:
      path, sentence = self.clip(kind)
      expect = KINDS[kind]
    if kind == "huge_text":
      sentence = "akwaaba " * int(self.rng.integers(200, 20_000))
    elif kind == "empty_text":
      sentence = "  "
    elif kind == "bad_utf8":
      sentence += "@"  # becomes a Latin-1 byte below
    line = _tsv_line(path, sentence, client=f"spk{self.rng.integers(5)}").encode()
    if kind == "bad_utf8":
      line = line.replace(b"@", b"\xe1")
    elif kind == "bad_row":
      line = b"\t".join(line.split(b"\t")[:3])
    self.lines[split].append(line)
    self.expect[split].append((os.path.splitext(path)[0], expect))
    return path, sentence

  def write(self, newlines):
    for split in ("train", "dev", "test"):
      with open(os.path.join(self.dir, f"{split}.tsv"), "wb") as f:
        nl = newlines[split]
        f.write(nl.join([("\t".join(CV)).encode()] + self.lines[split]) + nl)
    for table in ("validated", "invalidated", "other", "reported"):  # ignored, as in a release
      with open(os.path.join(self.dir, f"{table}.tsv"), "w", encoding="utf-8") as f:
        f.write("\t".join(CV) + "\n")
    with open(os.path.join(self.dir, "clip_durations.tsv"), "w", encoding="utf-8") as f:
      f.write("clip\tduration[ms]\n" + "".join(
          f"{c}\t{round(s * 1000)}\n" for c, s in self.durations.items()))


def _fuzz_corpus(root, seed):
  """Two languages: 'tw' with every kind of row; 'ak' with a bad-header test.tsv."""
  rng = np.random.default_rng(seed)
  tw = _Corpus(root, "tw", rng)
  kinds = list(KINDS)
  for split, extra in (("train", 8), ("dev", 3), ("test", 3)):
    for kind in (kinds if split == "train" else []) + list(rng.choice(kinds, extra)):
      tw.row(split, str(kind))
  # A clip listed twice in train, and one in train and in test (kept in test only).
  dup = tw.row("train", "good_mp3")
  tw.row("train", "repeat", *dup, expect={"duplicate_id"})
  leak = tw.row("test", "good_wav")
  tw.row("train", "repeat", *leak, expect={"also_in_test"})
  tw.write({"train": b"\n", "dev": b"\r", "test": b"\r\n"})  # LF, CR alone (old Mac), CRLF
  ak = _Corpus(root, "ak", rng)
  for split in ("train", "test"):
    for _ in range(3):
      ak.row(split, "good_mp3")
  ak.write({"train": b"\n", "dev": b"\n", "test": b"\n"})
  with open(os.path.join(ak.dir, "test.tsv"), "rb") as f:
    lines = f.read().split(b"\n")
  with open(os.path.join(ak.dir, "test.tsv"), "wb") as f:  # no sentence column
    f.write(b"\n".join([lines[0].replace(b"\tsentence\t", b"\tsentense\t")] + lines[1:]))
  ak.expect["test"] = [(u, {"bad_header(no sentence)"}) for u, _ in ak.expect["test"]]
  return {"tw": tw, "ak": ak}


@pytest.mark.parametrize("seed", range(4))
def test_fuzz_corrupted_common_voice(tmp_path, seed):
  root, data_dir = str(tmp_path / "cv"), str(tmp_path / "tfds")
  langs = _fuzz_corpus(root, seed)
  for lang, corpus in langs.items():
    tfds_builder.prepare(root, data_dir, "commonvoice", lang)  # nothing may escape
    report = tfds_builder.load_report(data_dir, "commonvoice", lang)
    index = tfds_builder.load_index(data_dir, "commonvoice", lang)
    for split in ("train", "dev", "test"):
      expect = corpus.expect[split]
      skipped = report.skip_counts("commonvoice", lang, split)
      assert report.kept_count("commonvoice", lang, split) + sum(skipped.values()) == len(
          expect), (lang, split, skipped)
      good = {u for u, reasons in expect if reasons is None}
      kept = set(index.get(split, {"utt_id": []})["utt_id"])
      assert kept == good, (lang, split, "kept bad:", kept - good, "lost good:", good - kept)
      # Every skip is one a bad row of this split may have.
      allowed = collections.Counter()
      for _, reasons in expect:
        for r in reasons or ():
          allowed[r] += 1
      assert all(n <= allowed[r] for r, n in skipped.items()), (lang, split, skipped, allowed)
      bad = sum(1 for _, reasons in expect if reasons is not None)
      assert sum(skipped.values()) == bad
