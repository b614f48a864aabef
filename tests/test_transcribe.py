"""mlasr.transcribe and its parts: audio of any codec, VAD, CTC forced alignment, output
formats, bad inputs, and the command line end to end on a tiny model.

Speech is the real human recordings that Debian's alsa-utils ships (the channel-test voices
"Front Center", "Rear Left", ...); `make install-system` installs alsa-utils and ffmpeg.
"""
import glob
import itertools
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from mlasr import alignment, decoding, transcribe, vad
from mlasr.data import audio

SR = 16000
ALSA = "/usr/share/sounds/alsa"
VOICES = sorted(p for p in glob.glob(f"{ALSA}/*.wav") if not p.endswith("Noise.wav"))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

needs_alsa = pytest.mark.skipif(not VOICES, reason="alsa-utils is not installed (make "
                                "install-system installs it)")
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None,
                                  reason="ffmpeg is not installed (make install-system)")


def _snr_after_alignment(ref: np.ndarray, got: np.ndarray, max_lag: int = 2400):
  """(SNR in dB, lag) of `got` against `ref` at the best lag within +-max_lag samples (lossy
  codecs add encoder delay and padding)."""
  n = min(len(ref), len(got)) - max_lag
  corr = [np.dot(ref[max_lag:n], got[max_lag + lag:n + lag]) for lag in range(-max_lag, max_lag)]
  lag = int(np.argmax(corr)) - max_lag
  a, b = ref[max_lag:n], got[max_lag + lag:n + lag]
  return 10 * np.log10(np.sum(a ** 2) / max(np.sum((a - b) ** 2), 1e-20)), lag


# ------------------------------------------------------------------------------ audio


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
  """Front_Center.wav (48 kHz mono) written by ffmpeg in each codec."""
  out = tmp_path_factory.mktemp("codecs")
  codecs = {"flac": ["-c:a", "flac"], "mp3": ["-c:a", "libmp3lame", "-b:a", "96k"],
            "ogg": ["-c:a", "libvorbis", "-q:a", "4"], "opus": ["-c:a", "libopus", "-b:a", "48k"],
            "m4a": ["-c:a", "aac", "-b:a", "96k"], "webm": ["-c:a", "libopus", "-b:a", "48k"]}
  paths = {}
  for ext, args in codecs.items():
    paths[ext] = str(out / f"front_center.{ext}")
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", f"{ALSA}/Front_Center.wav",
                    *args, paths[ext]], check=True, timeout=60)
  return paths


@needs_alsa
@needs_ffmpeg
@pytest.mark.parametrize("ext,backend,min_snr", [
    ("flac", "soundfile", 90.0), ("mp3", "soundfile", 15.0), ("ogg", "soundfile", 15.0),
    ("opus", "soundfile", 10.0), ("m4a", "ffmpeg", 15.0), ("webm", "ffmpeg", 10.0)])
def test_every_codec_decodes_to_the_original(encoded, ext, backend, min_snr):
  ref = audio.load_audio(f"{ALSA}/Front_Center.wav")  # whole-file decode + soxr
  info = audio.probe_audio(encoded[ext])
  assert info.backend == backend and info.channels == 1
  blocks = list(audio.stream_audio(encoded[ext], block_seconds=0.25, info=info))
  # Read in blocks, not whole (the last one also carries the resampler's buffered tail).
  assert len(blocks) >= 5 and max(len(b) for b in blocks) <= 0.4 * SR
  got = np.concatenate(blocks)
  assert got.dtype == np.float32 and abs(len(got) - len(ref)) < 0.1 * SR
  snr, lag = _snr_after_alignment(ref, got)
  assert snr > min_snr, (ext, snr, lag)
  if ext == "flac":  # lossless: sample-exact
    assert lag == 0 and np.abs(got[:len(ref)] - ref).max() < 1e-4


@needs_alsa
@needs_ffmpeg
def test_ffmpeg_path_equals_soundfile_path(encoded):
  """The same file through both readers: same samples (the pipe carries float32 losslessly)."""
  a = np.concatenate(list(audio.stream_audio(encoded["flac"], backend="soundfile")))
  b = np.concatenate(list(audio.stream_audio(encoded["flac"], backend="ffmpeg")))
  assert audio.probe_audio(encoded["flac"], "ffmpeg").backend == "ffmpeg"
  np.testing.assert_allclose(a, b, atol=1e-6)


@needs_alsa
def test_stereo_44k_downmix_channel_choice_and_resampling(tmp_path):
  left = audio.load_audio(f"{ALSA}/Front_Left.wav", sr=44100)
  right = audio.load_audio(f"{ALSA}/Rear_Right.wav", sr=44100)[:len(left)]
  right = np.pad(right, (0, len(left) - len(right)))
  path = str(tmp_path / "stereo.wav")
  sf.write(path, np.stack([left, right], 1), 44100, subtype="FLOAT")
  info = audio.probe_audio(path)
  assert (info.sample_rate, info.channels) == (44100, 2)
  for channel, want in ((None, (left + right) / 2), (0, left), (1, right)):
    got = np.concatenate(list(audio.stream_audio(path, channel=channel, block_seconds=0.3)))
    ref = signal.resample_poly(want, 160, 441)  # an independent resampler (scipy's polyphase)
    n = min(len(got), len(ref))
    assert abs(len(got) - len(ref)) <= 2
    snr = 10 * np.log10(np.sum(ref[:n] ** 2) / np.sum((ref[:n] - got[:n]) ** 2))
    assert snr > 40, (channel, snr)
  with pytest.raises(audio.AudioError, match="no channel 2"):
    next(audio.stream_audio(path, channel=2))


def test_bad_files_raise_with_a_reason(tmp_path):
  (tmp_path / "empty.wav").write_bytes(b"")
  (tmp_path / "junk.mp3").write_bytes(np.random.default_rng(0).bytes(4000))
  for name, reason in (("missing.wav", "missing"), ("empty.wav", "empty"),
                       ("junk.mp3", "undecodable")):
    with pytest.raises(audio.AudioError) as e:
      list(audio.stream_audio(str(tmp_path / name)))
    assert e.value.reason.startswith(reason) and e.value.path.endswith(name)


# ------------------------------------------------------------------------------ VAD


def _placed_clips(num_clips: int, seed: int, noise_dbfs: float | None = None):
  """(block generator, [(start, end)] seconds) of voices separated by 1-3 s of silence.

  The audio is produced clip by clip, never as one array (an hour is 230 MB of float32).
  """
  rng = np.random.default_rng(seed)
  voices = [audio.load_audio(p) for p in VOICES]
  plan, t = [], 0.0
  for _ in range(num_clips):
    gap = int(rng.uniform(1.0, 3.0) * SR)
    k = int(rng.integers(len(voices)))
    plan.append((gap, k))
    t += gap / SR
    t_end = t + len(voices[k]) / SR
    plan[-1] = (gap, k, t, t_end)
    t = t_end
  tail = SR

  def blocks():
    noise = np.random.default_rng(seed + 1)
    for gap, k, _, _ in plan:
      block = np.concatenate([np.zeros(gap, np.float32), voices[k]])
      if noise_dbfs is not None:
        block = block + noise.normal(0, 10 ** (noise_dbfs / 20), len(block)).astype(np.float32)
      yield block
    yield np.zeros(tail, np.float32)

  return blocks, [(a, b) for _, _, a, b in plan], t + tail / SR


def _check_regions(regions, truth, tolerance=0.2, end_tolerance=None):
  assert len(regions) == len(truth)
  start_err = np.abs(np.array([r[0] for r in regions]) - [a for a, _ in truth])
  end_err = np.abs(np.array([r[1] for r in regions]) - [b for _, b in truth])
  assert start_err.max() < tolerance and end_err.max() < (end_tolerance or tolerance), (
      start_err.max(), end_err.max())


@needs_alsa
def test_energy_vad_on_one_hour_of_placed_clips():
  blocks, truth, total = _placed_clips(1100, seed=0)
  assert total > 3600
  det = vad.EnergyVAD()
  scores = det.scores(blocks())
  assert len(scores) == int(np.ceil(total * SR / det.frame_samples))
  on, off = det.thresholds(scores)
  _check_regions(vad.speech_regions(scores, det.frame_samples / SR, on, off, total), truth)


@needs_alsa
def test_energy_vad_in_noise_and_silero_vad():
  blocks, truth, total = _placed_clips(12, seed=1, noise_dbfs=-45.0)
  det = vad.EnergyVAD()
  scores = det.scores(blocks())
  on, off = det.thresholds(scores)
  assert on > -55.0  # the threshold rose above the noise floor
  # The voices fade out below -45 dBFS in their last ~0.3 s; noise at that level hides the
  # fade, so ends come early by up to 0.4 s here (0.12 s at most on clean audio).
  _check_regions(vad.speech_regions(scores, det.frame_samples / SR, on, off, total), truth,
                 end_tolerance=0.45)
  pytest.importorskip("onnxruntime")
  try:
    det = vad.SileroVAD()
  except ImportError as e:
    pytest.skip(str(e))
  blocks, truth, total = _placed_clips(12, seed=2)
  scores = det.scores(blocks())
  assert len(scores) == int(np.ceil(total * SR / det.frame_samples))
  _check_regions(vad.speech_regions(scores, det.frame_samples / SR, *det.thresholds(scores),
                                    total), truth)
  # Silero tells speech from noise; the energy detector cannot.
  noise = audio.load_audio(f"{ALSA}/Noise.wav")
  sig = np.concatenate([np.zeros(SR, np.float32), noise, np.zeros(SR, np.float32)])
  scores = det.scores([sig])
  assert vad.speech_regions(scores, det.frame_samples / SR, *det.thresholds(scores),
                            len(sig) / SR) == []


def test_fit_segments_splits_at_the_pause_and_merges_neighbours():
  frame = 0.01
  scores = np.full(3000, -20.0, np.float32)  # 30 s of "speech"
  scores[1500] = -80.0  # one quiet frame at 15 s: the place to cut a 25 s region
  segs = vad.fit_segments([(2.0, 27.0)], scores, frame, max_seconds=20.0)
  assert segs == [(2.0, 15.0), (15.0, 27.0)]
  no_dip = vad.fit_segments([(0.0, 30.0)], np.zeros(3000, np.float32), frame, max_seconds=12.0)
  assert all(b - a <= 12.0 + 1e-9 for a, b in no_dip) and no_dip[0][0] == 0.0
  assert no_dip[-1][1] == 30.0 and all(x[1] == y[0] for x, y in zip(no_dip, no_dip[1:]))
  # Gaps of 0.5 s merge while the result fits in 12 s; a 2 s gap never merges.
  regions = [(0.0, 4.0), (4.5, 8.0), (8.5, 11.0), (11.5, 13.0), (15.0, 16.0)]
  assert vad.fit_segments(regions, scores, frame, 12.0) == [(0.0, 11.0), (11.5, 13.0),
                                                            (15.0, 16.0)]


def test_speech_regions_state_machine():
  frame = 0.01
  s = np.zeros(1000)
  s[100:200] = 1.0   # 1 s of speech
  s[230:300] = 1.0   # after a 0.3 s pause: bridged (min_silence 0.5)
  s[500:510] = 1.0   # 0.1 s blip: dropped (min_speech 0.25)
  s[700:800] = 0.4   # between off and on: never opens a region
  s[900:1000] = 1.0  # runs to the end of the file
  got = vad.speech_regions(s, frame, 0.5, 0.35, 10.0)
  assert [(round(a, 3), round(b, 3)) for a, b in got] == [(0.9, 3.1), (8.9, 10.0)]


# ------------------------------------------------------------------------------ alignment


def _collapse(path):
  out, prev = [], None
  for x in path:
    if x != prev and x != 0:
      out.append(x)
    prev = x
  return out


@pytest.mark.parametrize("tokens", [[1, 2], [2, 2], [1, 2, 1], [3, 3, 1], [1, 1, 1]])
def test_forced_alignment_equals_brute_force(tokens):
  rng = np.random.default_rng(len(tokens) * 10 + tokens[0])
  vocab = 4
  for frames in range(4, 9):
    if not alignment.feasible(tokens, frames):
      with pytest.raises(ValueError, match="no CTC path"):
        alignment.forced_align(np.zeros((frames, vocab)), tokens)
      continue
    log_probs = decoding.log_softmax(2.0 * rng.normal(size=(frames, vocab)))
    # Every frame-label sequence that collapses to the tokens (4^8 = 65536 at most).
    paths = [p for p in itertools.product(range(vocab), repeat=frames)
             if _collapse(p) == tokens]
    scores = [log_probs[np.arange(frames), p].sum() for p in paths]
    best = paths[int(np.argmax(scores))]
    got = alignment.forced_align(log_probs, tokens)
    assert got.score == pytest.approx(max(scores), abs=1e-9)
    assert tuple(got.labels) == best
    positions = [k for k in got.token_of_frame if k >= 0]
    assert positions == sorted(positions) and set(positions) == set(range(len(tokens)))


def test_forced_alignment_of_a_long_sequence_recovers_the_path():
  """200 labels (401 states, past int8 backpointer arithmetic) on peaky posteriors: the
  path that generated them comes back exactly."""
  rng = np.random.default_rng(5)
  tokens = rng.integers(1, 6, size=200).tolist()
  path = []
  for k, t in enumerate(tokens):
    path += [t] * int(rng.integers(1, 3))
    if k + 1 < len(tokens) and (tokens[k + 1] == t or rng.random() < 0.5):
      path += [0] * int(rng.integers(1, 3))
  probs = np.full((len(path), 6), 0.02)
  probs[np.arange(len(path)), path] = 0.9
  got = alignment.forced_align(np.log(probs), tokens)
  assert got.labels.tolist() == path
  assert got.score == pytest.approx(len(path) * np.log(0.9))


def test_word_timings_from_a_known_path():
  # Vocabulary: blank, a, b, space. Frames: a a _ | b _ b  (hop 0.02 s, offset 1 s).
  id_strings = ["", "a", "b", " "]
  path = [1, 1, 0, 3, 2, 0, 2]
  probs = np.full((7, 4), 0.1)
  peak = [0.7, 0.5, 0.7, 0.7, 0.9, 0.7, 0.6]
  probs[np.arange(7), path] = peak
  log_probs = np.log(probs / probs.sum(1, keepdims=True))
  got = alignment.forced_align(log_probs, [1, 3, 2, 2])
  assert got.labels.tolist() == path
  words = alignment.word_timings([1, 3, 2, 2], id_strings, got, log_probs, 0.02, offset=1.0)
  post = probs / probs.sum(1, keepdims=True)
  assert [w["word"] for w in words] == ["a", "bb"]
  assert (words[0]["start"], words[0]["end"]) == (1.0, 1.04)
  assert (words[1]["start"], words[1]["end"]) == (1.08, 1.14)
  assert words[0]["confidence"] == pytest.approx(post[[0, 1], 1].mean(), abs=1e-4)
  assert words[1]["confidence"] == pytest.approx(post[[4, 6], 2].mean(), abs=1e-4)


# ------------------------------------------------------------------------------ formats


RESULT = dict(name="talk", channel=None, segments=[
    dict(start=0.9, end=3.2, text="hello world", words=[
        dict(word="hello", start=1.0, end=1.5, confidence=0.9),
        dict(word="world", start=1.6, end=2.25, confidence=0.75)]),
    dict(start=5.0, end=6.0, text="", words=[]),
    dict(start=3661.25, end=3663.0, text="later", words=[
        dict(word="later", start=3661.5, end=3662.0, confidence=0.5)])])


def test_srt_vtt_ctm_and_text_formats():
  srt = transcribe.to_srt(RESULT)
  blocks = srt.strip("\n").split("\n\n")
  assert len(blocks) == 2  # the empty segment has no cue
  stamp = r"(\d\d):(\d\d):(\d\d),(\d\d\d)"
  for i, block in enumerate(blocks, 1):
    index, times, text = block.split("\n")
    assert index == str(i) and re.fullmatch(f"{stamp} --> {stamp}", times), times
  assert blocks[0].split("\n")[1] == "00:00:01,000 --> 00:00:02,250"  # timed by the words
  assert blocks[1].split("\n")[1:] == ["01:01:01,500 --> 01:01:02,000", "later"]
  vtt = transcribe.to_vtt(RESULT)
  assert vtt.startswith("WEBVTT\n\n") and "01:01:01.500 --> 01:01:02.000\nlater" in vtt
  ctm = [line.split() for line in transcribe.to_ctm(RESULT).splitlines()]
  assert [row[0] for row in ctm] == ["talk"] * 3 and all(len(row) == 6 for row in ctm)
  assert [row[4] for row in ctm] == ["hello", "world", "later"]
  for row, w in zip(ctm, [w for s in RESULT["segments"] for w in s["words"]]):
    assert row[1] == "1" and float(row[2]) == w["start"]
    assert float(row[2]) + float(row[3]) == pytest.approx(w["end"], abs=1e-3)
    assert float(row[5]) == w["confidence"]
  assert transcribe.to_text(RESULT) == "hello world\nlater\n"


def test_inputs_from_directories_globs_and_manifests(tmp_path):
  (tmp_path / "a" / "deep").mkdir(parents=True)
  for name in ("a/x.wav", "a/deep/x.flac", "a/notes.txt", "b.mp3", "c.m4a"):
    (tmp_path / name).write_bytes(b"0")
  (tmp_path / "list.tsv").write_text("path\tlang\nb.mp3\tru\n/abs/y.ogg\t\n", encoding="utf-8")
  (tmp_path / "list.jsonl").write_text(json.dumps({"path": "c.m4a", "lang": "en"}) + "\n",
                                       encoding="utf-8")
  items = transcribe.collect_inputs([str(tmp_path / "a"), str(tmp_path / "*.m4a"),
                                     str(tmp_path / "list.tsv"), str(tmp_path / "list.jsonl"),
                                     str(tmp_path / "gone.wav")])
  rel = [os.path.relpath(i.path, tmp_path) if not i.path.startswith("/abs") else i.path
         for i in items]
  assert rel == ["a/x.wav", "a/deep/x.flac", "c.m4a", "b.mp3", "/abs/y.ogg", "c.m4a", "gone.wav"]
  assert [i.lang for i in items] == ["", "", "", "ru", "", "en", ""]
  assert [i.name for i in items] == ["x", "x-2", "c", "b", "y", "c-2", "gone"]
  (tmp_path / "bad.tsv").write_text("file\nb.mp3\n", encoding="utf-8")
  with pytest.raises(ValueError, match="'path' column"):
    transcribe.collect_inputs([str(tmp_path / "bad.tsv")])


# ------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  """A CTC workdir (config, tokenizer, checkpoint) of a randomly initialised tiny model.

  Parameters are drawn with numpy for the model's abstract shapes (nnx.eval_shape): building
  the model for real compiles every initialiser, which costs more than the whole test.
  """
  import jax  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel
  from mlasr import checkpoint as ckpt_lib  # pylint: disable=import-outside-toplevel
  from mlasr import config_lib  # pylint: disable=import-outside-toplevel
  from mlasr.data import tokenizer as tokenizer_lib  # pylint: disable=import-outside-toplevel
  from mlasr.models import ctc as ctc_model  # pylint: disable=import-outside-toplevel
  from mlasr.tasks import ctc as ctc_task  # pylint: disable=import-outside-toplevel
  workdir = str(tmp_path_factory.mktemp("tiny_run"))
  config = config_lib.base_config()
  config.data.sources = ("commonvoice:en", "commonvoice:ru")
  config.data.bucket_seconds = (2.0, 4.0)  # segments of at most 4 s, two compiled shapes
  config.data.batch_seconds = 8.0
  config.model.encoder.update(dict(d_model=32, num_layers=1, num_heads=2, ffn_dim=64,
                                   pos_conv_kernel=8, pos_conv_groups=4, conv_dim=(16,) * 7))
  config.compilation_cache = ""
  tokenizer_lib.build_tokenizer("char", {"en": ["front center left right rear side"],
                                         "ru": ["привет мир"]}, os.path.join(workdir, "tokenizer"))
  config_lib.save_config(config, workdir)
  setup = ctc_task.setup(config, workdir)
  abstract = nnx.eval_shape(lambda: ctc_model.build(
      config, setup["num_outputs"], nnx.Rngs(params=0, dropout=0), **setup["model_kwargs"]))
  rng = np.random.default_rng(0)

  def draw(path, x):
    name = jax.tree_util.keystr(path)
    if "scale" in name:
      return np.ones(x.shape, x.dtype)
    if "bias" in name or len(x.shape) < 2:
      return np.zeros(x.shape, x.dtype)
    return (rng.normal(size=x.shape) / np.sqrt(np.prod(x.shape[:-1]))).astype(x.dtype)

  params = jax.tree_util.tree_map_with_path(draw, nnx.to_pure_dict(nnx.state(abstract,
                                                                             nnx.Param)))
  checkpointer = ckpt_lib.Checkpointer(workdir)
  checkpointer.save(1, dict(params=params), {}, {})
  checkpointer.wait()
  checkpointer.close()
  return workdir


@needs_alsa
@needs_ffmpeg
def test_cli_end_to_end(tiny_run, encoded, tmp_path):
  inputs = tmp_path / "in"
  inputs.mkdir()
  # A 9 s recording of two voices with silences (44.1 kHz stereo): two segments.
  a, b = audio.load_audio(VOICES[0], 44100), audio.load_audio(VOICES[-1], 44100)
  z = np.zeros(int(2.5 * 44100), np.float32)
  mono = np.concatenate([z, a, z, b, z])
  sf.write(str(inputs / "two voices.wav"), np.stack([mono, 0.5 * mono], 1), 44100)
  shutil.copy(encoded["m4a"], inputs / "front.m4a")
  (inputs / "empty.wav").write_bytes(b"")
  (inputs / "corrupt.flac").write_bytes(b"fLaC" + np.random.default_rng(1).bytes(3000))
  sf.write(str(inputs / "silent.wav"), np.zeros(SR, np.float32), SR)
  sf.write(str(inputs / "short.wav"), 0.1 * np.ones(800, np.float32), SR)
  manifest = tmp_path / "list.jsonl"
  manifest.write_text(json.dumps({"path": VOICES[1], "lang": "ru"}) + "\n", encoding="utf-8")
  out = tmp_path / "out"
  env = dict(os.environ, JAX_PLATFORMS="cpu")  # XLA_FLAGS as the suite's (tests/conftest.py)
  proc = subprocess.run(
      [sys.executable, "-m", "mlasr.transcribe", "--workdir", tiny_run, "--lang", "en",
       "--vad", "energy", "--output_dir", str(out), "--formats", "txt,json,jsonl,srt,vtt,ctm",
       "--manifest", str(manifest), str(inputs)],
      capture_output=True, text=True, cwd=ROOT, env=env, timeout=300, check=False)
  assert proc.returncode == 1, proc.stderr  # some files failed
  failed = {"corrupt.flac": "undecodable", "empty.wav": "empty", "silent.wav": "silent",
            "short.wav": "too_short"}
  for name, reason in failed.items():
    assert re.search(rf"skipped \S*{re.escape(name)}: {reason}", proc.stderr), proc.stderr
  # No library INFO chatter (absl "I0102 ..." lines, TF/orbax INFO) in the terminal.
  assert not re.search(r"^(I\d{4} |INFO)", proc.stderr, re.M), proc.stderr
  assert re.search(r"3 of 7 files transcribed: [\d.]+ h of audio.*real-time factor [\d.]+",
                   proc.stdout), proc.stdout
  lines = [json.loads(line) for line in (out / "transcripts.jsonl").read_text().splitlines()]
  assert sorted(os.path.basename(r["path"]) for r in lines if r["status"] == "failed") == \
      sorted(failed)
  ok = {r["name"]: r for r in lines if r["status"] == "ok"}
  assert set(ok) == {"two voices", "front", os.path.basename(VOICES[1])[:-4]}
  two = json.loads((out / "two voices.json").read_text())
  assert dict(two, status="ok") == ok["two voices"]  # the .json and the .jsonl line agree
  assert two["sample_rate"] == 44100 and two["channels"] == 2
  assert abs(two["duration"] - len(mono) / 44100) < 0.01
  placed = [(2.5, 2.5 + len(a) / 44100), (5.0 + len(a) / 44100, 5.0 + (len(a) + len(b)) / 44100)]
  assert len(two["segments"]) == 2
  for seg, (start, end) in zip(two["segments"], placed):
    assert abs(seg["start"] - start) < 0.2 and abs(seg["end"] - end) < 0.2
    assert seg["lang"] == "en"
    times = [t for w in seg["words"] for t in (w["start"], w["end"])]
    assert times == sorted(times) and seg["start"] <= times[0] and times[-1] <= seg["end"] + 0.05
    assert all(0 < w["confidence"] <= 1 for w in seg["words"])
    assert " ".join(w["word"] for w in seg["words"]) == seg["text"]
  assert two["text"] == " ".join(s["text"] for s in two["segments"] if s["text"])
  assert ok[os.path.basename(VOICES[1])[:-4]]["segments"][0]["lang"] == "ru"  # manifest lang
  srt = (out / "two voices.srt").read_text()
  assert len(re.findall(r"^\d\d:\d\d:\d\d,\d\d\d --> \d\d:\d\d:\d\d,\d\d\d$", srt, re.M)) == \
      sum(bool(s["text"]) for s in two["segments"])
  ctm = (out / "two voices.ctm").read_text().splitlines()
  assert len(ctm) == sum(len(s["words"]) for s in two["segments"])
  assert (out / "two voices.txt").read_text() == transcribe.to_text(two)
  _greedy_matches_the_evaluation_path(tiny_run, inputs / "two voices.wav", two)


def _greedy_matches_the_evaluation_path(workdir, path, result):
  """Each segment's text equals the on-device greedy decode (tasks.ctc.greedy_decode) of the
  same span of the file, decoded whole by load_audio, over English's outputs only."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from mlasr import evaluate  # pylint: disable=import-outside-toplevel
  from mlasr.tasks import ctc  # pylint: disable=import-outside-toplevel
  config, tokenizer, model, _ = evaluate.restore_model(workdir)
  log_probs = evaluate.jitted_log_probs(config, model)
  allowed = tokenizer.output_mask(["en"])[0]

  def predict(batch):
    lp, frame_mask = log_probs(batch)
    return ctc.greedy_decode(jnp.where(jnp.asarray(allowed), lp, -jnp.inf), frame_mask)
  wav = audio.load_audio(str(path))
  segs = result["segments"]
  n = int(4.0 * SR)  # the run's longest bucket
  batch = dict(audio=np.zeros((len(segs), n), np.float32),
               audio_mask=np.zeros((len(segs), n), np.int32),
               lang_id=np.zeros(len(segs), np.int32), example_mask=np.ones(len(segs), np.int32))
  for r, s in enumerate(segs):
    clip = wav[int(round(s["start"] * SR)):int(round(s["end"] * SR))]
    batch["audio"][r, :len(clip)] = clip
    batch["audio_mask"][r, :len(clip)] = 1
  tokens, lengths = predict(batch)
  for r, s in enumerate(segs):
    ref = " ".join(tokenizer.decode(np.asarray(tokens[r, :lengths[r]]).tolist(), "en").split())
    assert s["text"] == ref


@needs_alsa
def test_auto_language_from_the_posteriors_and_char_lms(tiny_run, tmp_path):
  """--lang auto without an LID run: each segment gets the language LanguageIdentifier picks
  from its posteriors, and its text only that language's characters."""
  from mlasr import decoding, lm  # pylint: disable=import-outside-toplevel
  from mlasr.data import tokenizer as tokenizer_lib  # pylint: disable=import-outside-toplevel
  lm_dir = str(tmp_path / "lm")
  lm.build_lms({"en": ["front center left right rear side"] * 3, "ru": ["привет мир"] * 3},
               lm_dir, char_order=3, word_order=2)
  t = transcribe.Transcriber(tiny_run, lang="auto", options=transcribe.Options(
      vad="energy", lm_dir=lm_dir))
  assert t._identifier is not None and t.choose is None  # pylint: disable=protected-access
  with pytest.raises(ValueError, match="cannot identify it"):
    decoding.LanguageIdentifier.for_model(type("M", (), {"heads": object()})(), t.tokenizer,
                                          ["en", "ru"], lm_dir)
  results = []
  t.run([transcribe.Item(VOICES[0], name="v")], progress=False, echo=results.append)
  segs = [s for r in results for s in r["segments"]]
  assert segs and {s["lang"] for s in segs} <= {"en", "ru"}
  for s in segs:
    chars = set(t.tokenizer.lang_chars[s["lang"]]) | {" ", tokenizer_lib.UNK_SURFACE}
    assert set(s["text"]) <= chars
