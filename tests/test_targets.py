"""Pretraining targets: MFCC vs librosa, label/frame alignment vs the encoder's frame counts,
BEST-RQ, and the extract -> k-means -> dump -> LabelStore -> pipeline path on a tiny corpus."""

import io
import json
import os
import pickle
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf
from flax import nnx
from scipy import signal

from mlasr.data import pipeline, tfds_builder
from mlasr import features
from mlasr.models import encoder as encoder_lib, frontends
from mlasr.targets import align, bestrq, labels as labels_lib, mfcc

SENTENCES = ["the quick brown fox jumps over the lazy dog",
             "she sells sea shells by the sea shore",
             "a stitch in time saves nine and more",
             "how much wood would a woodchuck chuck",
             "every good boy deserves fudge today",
             "pack my box with five dozen liquor jugs"]


def _speech(text: str, speed: int = 170) -> np.ndarray:
  """espeak-ng speech at 16 kHz (a chirp+noise stand-in if espeak-ng is missing)."""
  if shutil.which("espeak-ng"):
    wav = subprocess.run(["espeak-ng", "-v", "en", "-s", str(speed), "--stdout", text],
                         capture_output=True, check=True).stdout
    x, sr = sf.read(io.BytesIO(wav), dtype="float32")
    return signal.resample_poly(x, 16000 // 50, sr // 50).astype(np.float32)
  rng = np.random.default_rng(len(text))
  t = np.arange(int(0.06 * len(text) * 16000)) / 16000
  return (0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.05 * rng.normal(size=t.shape)
          ).astype(np.float32)


@pytest.fixture(scope="module")
def speech():
  return [_speech(s, 150 + 10 * i) for i, s in enumerate(SENTENCES)]


# ---------------------------------------------------------------- MFCC

def test_mfcc_matches_librosa(speech):
  import librosa  # pylint: disable=import-outside-toplevel
  y = speech[0]
  ours = mfcc.mfcc_np(y)
  mel = librosa.feature.melspectrogram(y=y.astype(np.float64), sr=16000, n_fft=400,
                                       hop_length=160, win_length=400, center=False,
                                       power=2.0, n_mels=40)
  ref = librosa.feature.mfcc(S=librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None),
                             n_mfcc=13, dct_type=2, norm="ortho")
  d1 = librosa.feature.delta(ref, width=5, mode="nearest")
  d2 = librosa.feature.delta(d1, width=5, mode="nearest")
  ref = np.concatenate([ref, d1, d2]).T
  assert ours.shape == ref.shape == ((len(y) - 400) // 160 + 1, 39)
  # float32 FFT/matmul vs librosa's float64: cepstra are in dB; 0.05 dB is far below the
  # spread k-means sees (c0 spans ~100 dB, deltas ~ several dB).
  np.testing.assert_allclose(ours[:, :13], ref[:, :13], atol=0.05, rtol=1e-3)
  np.testing.assert_allclose(ours[:, 13:], ref[:, 13:], atol=0.02, rtol=1e-3)


def test_mfcc_batch_is_padding_invariant(speech):
  a, b = speech[1], speech[2][:7777]
  t = max(len(a), len(b)) + 1234
  audio = np.zeros((2, t), np.float32)
  mask = np.zeros((2, t), bool)
  for r, w in enumerate((a, b)):
    audio[r, :len(w)], mask[r, :len(w)] = w, True
  audio[1, len(b):] = 0.5  # garbage in the padding must not leak in
  feats, fmask = mfcc.mfcc_jit(audio, mask)
  for r, w in enumerate((a, b)):
    n = mfcc.num_frames(len(w))
    assert int(fmask[r].sum()) == n
    np.testing.assert_allclose(np.asarray(feats[r, :n]), mfcc.mfcc_np(w), atol=1e-3, rtol=1e-4)
    assert not np.asarray(feats[r, n:]).any()
  assert mfcc.num_frames(399) == 0 and mfcc.num_frames(400) == 1 and mfcc.num_frames(560) == 2


# ---------------------------------------------------------------- alignment

def _encoder(**kw):
  cfg = encoder_lib.get_config("tiny", d_model=16, num_layers=1, num_heads=2, ffn_dim=16,
                          pos_conv_kernel=4, pos_conv_groups=2, conv_dim=(8,) * 7, **kw)
  # Abstract (no parameter values computed): frame_lengths only needs the structure/config.
  return nnx.eval_shape(lambda: encoder_lib.Encoder(cfg, rngs=nnx.Rngs(0)))


ENCODERS = {"waveform": dict(frontend="waveform"),
            "logmel_x2": dict(frontend="logmel", logmel_subsample=2),
            "logmel_x4": dict(frontend="logmel", logmel_subsample=4)}
LABEL_SOURCES = {"mfcc_100hz": mfcc.MfccConfig().frame_spec,  # HuBERT iteration 1
                 # iteration 2 (Base layer 6): the HuBERT conv stack
                 "waveform_layer_50hz": _encoder(frontend="waveform").frame_spec,
                 "logmel_layer_50hz": features.FrameSpec(((400, 160),), 2)}


@pytest.mark.parametrize("enc_name", sorted(ENCODERS))
def test_aligned_labels_have_one_label_per_encoder_frame(enc_name):
  enc = _encoder(**ENCODERS[enc_name])
  spec = enc.frame_spec
  rng = np.random.default_rng(0)
  lengths = np.concatenate([np.arange(400, 5001), rng.integers(5001, 16000 * 30, 300)])
  frames = np.asarray(enc.frame_lengths(lengths))
  np.testing.assert_array_equal(spec.num_frames(lengths), frames)
  assert spec.rate in (25.0, 50.0)
  for name, src in LABEL_SOURCES.items():
    counts = src.num_frames(lengths)
    if name == "mfcc_100hz":
      assert counts[0] == mfcc.num_frames(400) and counts[-1] == mfcc.num_frames(lengths[-1])
    for n, f, c in zip(lengths, frames, counts):
      if c == 0 < f:  # < 560 samples: a log-mel x2 model has no frame yet; nothing to copy
        with pytest.raises(ValueError, match="cannot cover"):
          align.align_labels(np.arange(c), int(f), src.rate, spec.rate)
        continue
      lab = np.arange(c)
      out = align.align_labels(lab, int(f), src.rate, spec.rate, name=f"{name} n={n}")
      assert len(out) == f
      # fairseq's rule, and the only frames allowed to replicate are past the last label.
      idx = (np.arange(f) * int(src.rate)) // int(spec.rate)
      assert (out == np.minimum(idx, c - 1)).all(), (name, n)
      assert idx[-1] <= c if f else True


def test_misaligned_labels_raise_and_batch_version_agrees():
  with pytest.raises(ValueError, match="cannot cover"):
    align.align_labels(np.arange(10), 7, 100, 50)  # frame 6 needs label 12: 3 past the end
  out = align.align_labels(np.arange(11), 6, 100, 50)
  np.testing.assert_array_equal(out, [0, 2, 4, 6, 8, 10])
  targets = np.array([[0, 1, 2, 3, 4, 5, 6, 7], [9, 8, 7, 6, 5, 4, -1, -1]])
  tmask = targets >= 0
  fmask = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], bool)
  t, v = jax.jit(align.align_targets, static_argnums=(3, 4))(targets, tmask, fmask, 100, 50)
  np.testing.assert_array_equal(t, [[0, 2, 4, 6, -1], [9, 7, 5, 4, -1]])
  np.testing.assert_array_equal(v, [[1, 1, 1, 1, 0], [1, 1, 1, 1, 0]])
  # row 1: 6 labels; frame 3 needs index 6 = one past the end -> replicated; frame 4 (8) masked.


# ---------------------------------------------------------------- BEST-RQ

def test_bestrq_targets(speech):
  cfg = bestrq.BestRQConfig(stack=4)
  fn = jax.jit(bestrq.bestrq_targets, static_argnames="config")
  waves = speech[:4]
  t = max(len(w) for w in waves) + 3000
  audio = np.zeros((len(waves), t), np.float32)
  mask = np.zeros((len(waves), t), bool)
  for r, w in enumerate(waves):
    audio[r, :len(w)], mask[r, :len(w)] = w, True
  ids, valid = fn(audio, mask, config=cfg)
  ids2, _ = fn(audio, mask, config=cfg)
  np.testing.assert_array_equal(ids, ids2)  # pure function of audio + seed
  enc = _encoder(frontend="logmel", logmel_subsample=4)
  frontend = frontends.LogMelFrontend(enc.config, rngs=nnx.Rngs(0))  # no params with "stack"
  _, frame_mask = jax.jit(frontend.__call__)(jnp.asarray(audio), jnp.asarray(mask))
  assert ids.shape == frame_mask.shape
  np.testing.assert_array_equal(valid, frame_mask)
  np.testing.assert_array_equal(valid.sum(-1), enc.frame_lengths(mask.sum(-1)))
  assert cfg.label_rate == enc.frame_spec.rate == 25
  ids = np.asarray(ids)
  assert (ids[~np.asarray(valid)] == -1).all()
  # Each row equals the unpadded computation (padding-aware).
  alone, _ = fn(waves[1][None], None, config=cfg)
  np.testing.assert_array_equal(alone[0], ids[1, :alone.shape[1]])
  # Not collapsed: speech frames spread over many codewords.
  used = ids[np.asarray(valid)]
  counts = np.bincount(used, minlength=cfg.codebook_size)
  p = counts[counts > 0] / counts.sum()
  assert len(np.unique(used)) > 0.3 * len(used), (len(np.unique(used)), len(used))
  assert np.exp(-(p * np.log(p)).sum()) > 50
  other, _ = fn(audio, mask, config=bestrq.BestRQConfig(stack=4, seed=1))
  assert (np.asarray(other)[np.asarray(valid)] != used).mean() > 0.5


# ---------------------------------------------------------------- dump + LabelStore + pipeline

N_TRAIN, N_DEV = 6, 2


def _make_corpus(root, speech):
  """VoxPopuli-format 'en' data (16 kHz OGG), clips of 0.4-3.5 s cut from espeak speech."""
  header = ("id raw_text normalized_text speaker_id split gender is_gold_transcript "
            "accent").split()
  d = os.path.join(root, "voxpopuli", "transcribed_data", "en")
  rng = np.random.default_rng(0)
  for split, n in (("train", N_TRAIN), ("dev", N_DEV)):
    rows = []
    for i in range(n):
      k = i if split == "train" else N_TRAIN - 2 + i
      wave = speech[k % len(speech)][:int(rng.uniform(0.4, 3.5) * 16000)]
      utt = f"20190101-0900-PLENARY-{split}_en_{i}"
      os.makedirs(os.path.join(d, "2019"), exist_ok=True)
      sf.write(os.path.join(d, "2019", utt + ".ogg"), wave, 16000)
      rows.append([utt, SENTENCES[k % len(SENTENCES)], SENTENCES[k % len(SENTENCES)], "s1",
                   split, "", "", ""])
    with open(os.path.join(d, f"asr_{split}.tsv"), "w", encoding="utf-8") as f:
      f.write("\t".join(header) + "\n" + "".join("\t".join(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def dumped(tmp_path_factory, speech):
  from data_prep import dump_labels, extract_features, fit_kmeans  # pylint: disable=g-import-not-at-top
  root = str(tmp_path_factory.mktemp("corpus"))
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  work = str(tmp_path_factory.mktemp("work"))
  _make_corpus(root, speech)
  tfds_builder.prepare(root, data_dir, "voxpopuli", "en")
  datasets = extract_features.parse_datasets("voxpopuli:en:train,voxpopuli:en:dev")
  meta = extract_features.extract(data_dir, datasets[:1], extract_features.FeatureSpec("mfcc"),
                                  f"{work}/feats", fraction=1.0, chunk_rows=300,
                                  utts_per_call=2)
  assert meta["dim"] == 39 and meta["chunks"] > 1 and meta["label_rate"] == 100
  fit_kmeans.fit(f"{work}/feats", f"{work}/km", k=16, batch_size=256, seed=0)
  dump_labels.dump(data_dir, datasets, f"{work}/km", f"{work}/labels", shard_size=4)
  return data_dir, work, datasets


def test_dump_labels_and_store(dumped):
  from data_prep import dump_labels  # pylint: disable=g-import-not-at-top
  from mlasr.targets import kmeans  # pylint: disable=g-import-not-at-top
  data_dir, work, datasets = dumped
  labels_dir = f"{work}/labels"
  store = labels_lib.LabelStore(labels_dir)
  assert store.label_rate == 100 and store.num_classes == 16 and store.hop == 160
  meta = json.load(open(os.path.join(labels_dir, "meta.json")))
  assert meta["features"]["kind"] == "mfcc" and meta["datasets"] == [list(d) for d in datasets]
  model = kmeans.KMeans.load(os.path.join(labels_dir, "kmeans"))
  for corpus, lang, split in datasets:
    src = tfds_builder.data_source(data_dir, corpus, lang, split)
    ids = tfds_builder.load_index(data_dir, corpus, lang)[split]["utt_id"]
    for i, utt in enumerate(ids):
      wave = src[i]["audio"].astype(np.float32) / 32767.0
      expect = model.predict(mfcc.mfcc_np(wave))
      got = store.get(corpus, lang, split, utt)
      assert got.dtype == np.int32 and len(got) == mfcc.num_frames(len(wave))
      np.testing.assert_array_equal(got, expect)
  # A subset split falls back to train; unknown ids are a clear KeyError.
  first = tfds_builder.load_index(data_dir, "voxpopuli", "en")["train"]["utt_id"][0]
  np.testing.assert_array_equal(store.get("voxpopuli", "en", "train_1h", first),
                                store.get("voxpopuli", "en", "train", first))
  with pytest.raises(KeyError, match="nope"):
    store.get("voxpopuli", "en", "train", "nope")
  again = pickle.loads(pickle.dumps(store))
  np.testing.assert_array_equal(again.get("voxpopuli", "en", "train", first),
                                store.get("voxpopuli", "en", "train", first))
  diag = json.load(open(os.path.join(labels_dir, "diagnostics.json")))
  assert diag["frames"] > 0 and 0 < diag["perplexity"] <= 16
  assert 0 < diag["purity"]["en"]["char_purity"] <= 1 and "CRUDE" in diag["purity_note"]
  assert os.path.isfile(os.path.join(labels_dir, "diagnostics.md"))

  # Resume: an interrupted run (one shard and the index missing, a stale temp file) is
  # finished by rerunning; finished shards are not rewritten.
  shards = sorted(f for f in os.listdir(labels_dir) if f.endswith(".array_record"))
  assert len(shards) >= 3
  before = {f: open(os.path.join(labels_dir, f), "rb").read() for f in shards}
  mtimes = {f: os.path.getmtime(os.path.join(labels_dir, f)) for f in shards}
  os.remove(os.path.join(labels_dir, shards[1]))
  os.remove(os.path.join(labels_dir, labels_lib.index_file("voxpopuli", "en", "train")))
  open(os.path.join(labels_dir, shards[1] + ".tmp"), "wb").write(b"partial")
  dump_labels.dump(data_dir, datasets, f"{work}/km", labels_dir, shard_size=4)
  for f in shards:
    assert open(os.path.join(labels_dir, f), "rb").read() == before[f]
    if f != shards[1]:
      assert os.path.getmtime(os.path.join(labels_dir, f)) == mtimes[f]


def test_pipeline_targets_follow_crops_and_restore(dumped):
  data_dir, work, _ = dumped
  from mlasr.targets import kmeans  # pylint: disable=g-import-not-at-top
  store = labels_lib.LabelStore(f"{work}/labels")
  model = kmeans.KMeans.load(f"{work}/labels/kmeans")
  buckets = [(2, 8000), (2, 16000)]  # 0.5 s and 1 s: most clips are cropped
  train = pipeline.train_data(data_dir, [("voxpopuli", "en")], buckets=buckets, seed=1,
                              labels=store)
  assert train.num_targets == [store.num_labels(8000), store.num_labels(16000)] == [48, 98]
  src = tfds_builder.data_source(data_dir, "voxpopuli", "en", "train")
  it = train.iterator()
  cropped = 0
  for step in range(6):
    batch = next(it)
    b, rows, offsets = train.step_fn.plan(step)
    bs, n = buckets[b]
    assert batch["targets"].shape == batch["target_mask"].shape == (bs, store.num_labels(n))
    assert batch["targets"].dtype == np.int32
    for r, (e, off) in enumerate(zip(rows, offsets)):
      utt = train.step_fn.table.utt_id[e]
      full = store.get("voxpopuli", "en", "train", utt)
      assert off % store.hop == 0
      cropped += off > 0
      want = full[off // 160:][:store.num_labels(n)]
      m = batch["target_mask"][r].astype(bool)
      np.testing.assert_array_equal(batch["targets"][r][m], want)
      assert (batch["targets"][r][~m] == -1).all()
      # Independent check: labels of the cropped audio itself agree away from the Δ edges.
      wave = batch["audio"][r][batch["audio_mask"][r].astype(bool)]
      np.testing.assert_allclose(wave, src[int(train.step_fn.table.idx[e])]["audio"]
                                 [off:off + n].astype(np.float32) / 32767.0, atol=1e-6)
      interior = model.predict(mfcc.mfcc_np(wave))[4:-4]  # Δ/ΔΔ see +-4 frames
      np.testing.assert_array_equal(batch["targets"][r][4:len(interior) + 4], interior)
  assert cropped > 0
  # Exact restore of the iterator state, targets included.
  it = train.iterator()
  next(it)
  state = it.get_state()
  expect = [next(it) for _ in range(2)]
  it2 = pipeline.train_data(data_dir, [("voxpopuli", "en")], buckets=buckets, seed=1,
                            labels=labels_lib.LabelStore(f"{work}/labels")).iterator()
  it2.set_state(state)
  for e in expect:
    got = next(it2)
    for k in ("audio", "targets", "target_mask"):
      np.testing.assert_array_equal(got[k], e[k])
  # Eval batches carry the full labels, -1 padded.
  ev = pipeline.eval_data(data_dir, [("voxpopuli", "en")], "dev", buckets=[(2, 16000 * 4)],
                          labels=store)
  for batch in ev.batches():
    for r in np.flatnonzero(batch["example_mask"]):
      full = store.get("voxpopuli", "en", "dev", batch["utt_id"][r])
      np.testing.assert_array_equal(batch["targets"][r][:len(full)], full)
      assert batch["target_mask"][r].sum() == len(full)


def test_fit_kmeans_on_a_sample_of_the_feature_rows(dumped, tmp_path):
  from data_prep import extract_features, fit_kmeans  # pylint: disable=g-import-not-at-top
  from mlasr.targets import kmeans  # pylint: disable=g-import-not-at-top
  _, work, _ = dumped
  rows = json.load(open(f"{work}/feats/features.json"))["rows"]
  model = fit_kmeans.fit(f"{work}/feats", str(tmp_path / "km"), k=16, batch_size=256, seed=0,
                         sample_fraction=0.5)
  fit = json.load(open(tmp_path / "km" / "fit.json"))
  assert fit["fit_rows"] == model.num_fit_rows == round(0.5 * rows) and fit["rows"] == rows
  saved = json.load(open(tmp_path / "km" / "kmeans.json"))
  assert saved["config"]["sample_size"] == saved["fit_rows"] == round(0.5 * rows)
  chunks = extract_features.feature_chunks(f"{work}/feats")
  ref = kmeans.KMeans(kmeans.KMeansConfig(num_clusters=16, batch_size=256, seed=0)).fit(
      kmeans.sample_rows(np.concatenate(list(chunks())), round(0.5 * rows), seed=0))
  np.testing.assert_allclose(model.centroids, ref.centroids, rtol=1e-6, atol=1e-5)
  assert fit["inertia"] == pytest.approx(model.inertia(chunks))  # over every row
  with pytest.raises(ValueError, match="one of"):
    fit_kmeans.fit(f"{work}/feats", str(tmp_path / "km2"), sample_size=100, sample_fraction=0.5)


def _dir_bytes(path):
  """{relative file: bytes} of a labels dir; diagnostics.md names the dir, so it is left out."""
  out = {}
  for root, _, files in os.walk(path):
    for f in files:
      rel = os.path.relpath(os.path.join(root, f), path)
      if rel != "diagnostics.md":
        out[rel] = open(os.path.join(root, f), "rb").read()
  return out


def test_dump_labels_sharded_over_processes_equals_one_process(dumped, tmp_path):
  from data_prep import dump_labels  # pylint: disable=g-import-not-at-top
  data_dir, work, datasets = dumped
  one = _dir_bytes(f"{work}/labels")
  units = dump_labels.work_units(data_dir, datasets, 4)
  assert [(d, s, (r.start, r.stop)) for d, s, r in units] == [
      (datasets[0], 0, (0, 4)), (datasets[0], 1, (4, 6)), (datasets[1], 0, (0, 2))]
  # In-process, one after the other: a split's index appears once all its shards are there.
  # Process 2 of 3 has the one dev shard, process 1 the second train shard, process 0 the first.
  seq = str(tmp_path / "seq")
  dev_utt = tfds_builder.load_index(data_dir, "voxpopuli", "en")["dev"]["utt_id"][0]
  train_utt = tfds_builder.load_index(data_dir, "voxpopuli", "en")["train"]["utt_id"][0]
  for p in (2, 1):
    meta = dump_labels.dump(data_dir, datasets, f"{work}/km", seq, shard_size=4,
                            process_index=p, num_processes=3)
    assert not meta["complete"]
    assert sorted(f for f in os.listdir(seq) if f.endswith(".index.json")) == [
        labels_lib.index_file(*datasets[1])]
    store = labels_lib.LabelStore(seq)
    np.testing.assert_array_equal(store.get(*datasets[1], dev_utt),
                                  labels_lib.LabelStore(f"{work}/labels").get(*datasets[1],
                                                                              dev_utt))
    with pytest.raises(KeyError, match="no labels"):
      store.get(*datasets[0], train_utt)
  assert dump_labels.dump(data_dir, datasets, f"{work}/km", seq, shard_size=4,
                          process_index=0, num_processes=3)["complete"]
  assert _dir_bytes(seq) == one
  # Two CLI processes at once into one dir: whichever ends last writes the indexes.
  par = str(tmp_path / "par")
  cmd = [sys.executable, "-m", "data_prep.dump_labels", "--data_dir", data_dir, "--datasets",
         ",".join(":".join(d) for d in datasets), "--kmeans", f"{work}/km", "--out", par,
         "--shard_size", "4", "--num_processes", "2"]
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  procs = [subprocess.Popen(cmd + ["--process_index", str(i)], cwd=repo) for i in (0, 1)]
  assert [p.wait(timeout=600) for p in procs] == [0, 0]
  assert _dir_bytes(par) == one
  store = labels_lib.LabelStore(par)
  ids = tfds_builder.load_index(data_dir, "voxpopuli", "en")["train"]["utt_id"]
  ref = labels_lib.LabelStore(f"{work}/labels")
  for utt in ids:
    np.testing.assert_array_equal(store.get(*datasets[0], utt), ref.get(*datasets[0], utt))


def test_interrupted_dump_resumes_without_redoing_finished_shards(dumped, tmp_path,
                                                                   monkeypatch):
  from data_prep import dump_labels, extract_features  # pylint: disable=g-import-not-at-top
  data_dir, work, datasets = dumped
  out = str(tmp_path / "labels")
  real_write_json, markers = labels_lib.write_json, []

  def crash_at_second_marker(path, obj):
    if path.endswith(".done.json"):
      markers.append(path)
      if len(markers) == 2:  # the shard is on disk, its marker is not: a kill between them
        raise RuntimeError("killed")
    real_write_json(path, obj)

  monkeypatch.setattr(labels_lib, "write_json", crash_at_second_marker)
  with pytest.raises(RuntimeError, match="killed"):
    dump_labels.dump(data_dir, datasets, f"{work}/km", out, shard_size=4)
  monkeypatch.setattr(labels_lib, "write_json", real_write_json)
  first = labels_lib.shard_file(*datasets[0], 0)
  second = labels_lib.shard_file(*datasets[0], 1)
  assert os.path.isfile(os.path.join(out, second))
  assert not os.path.isfile(os.path.join(out, labels_lib.done_file(*datasets[0], 1)))
  mtime = os.path.getmtime(os.path.join(out, first))
  # Another shard size cannot silently reuse these shards.
  with pytest.raises(ValueError, match="shard_size 4"):
    dump_labels.dump(data_dir, datasets, f"{work}/km", out, shard_size=3)

  read, real_iter_audio = [], extract_features.iter_audio

  def counting(data_dir_, datasets_, *a, rows=None, **kw):
    read.append((tuple(datasets_[0]), rows.start))
    return real_iter_audio(data_dir_, datasets_, *a, rows=rows, **kw)

  monkeypatch.setattr(extract_features, "iter_audio", counting)
  assert dump_labels.dump(data_dir, datasets, f"{work}/km", out, shard_size=4)["complete"]
  assert read == [(datasets[0], 4), (datasets[1], 0)]  # the marked shard was not redone
  assert os.path.getmtime(os.path.join(out, first)) == mtime
  assert _dir_bytes(out) == _dir_bytes(f"{work}/labels")


def test_layer_features_from_a_pretraining_workdir(tmp_path):
  """load_encoder restores params/encoder of a checkpoint that is not a CTC workdir."""
  from data_prep import extract_features as ef  # pylint: disable=g-import-not-at-top
  from mlasr import checkpoint as ckpt_lib, config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.base_config("hubert")
  config.model.encoder = dict(
      preset="tiny", frontend="waveform", conv_dim=(8,) * 7, d_model=16, num_layers=2,
      num_heads=2, ffn_dim=16, pos_conv_kernel=4, pos_conv_groups=2, conv_module_kernel=0)
  config_lib.save_config(config, str(tmp_path))
  enc = encoder_lib.Encoder(encoder_lib.config_from_fields(config.model.encoder),
                            rngs=nnx.Rngs(params=3, dropout=0))
  ck = ckpt_lib.Checkpointer(str(tmp_path))
  ck.save(5, dict(params=dict(encoder=nnx.to_pure_dict(nnx.state(enc, nnx.Param)),
                              final_proj=np.ones(3, np.float32))), {}, {})
  ck.wait()
  ck.close()
  feat = ef.make_featurizer(ef.FeatureSpec("layer", 1, str(tmp_path)))
  assert feat.label_rate == 50 and feat.dim == 16
  wave = np.random.default_rng(0).normal(size=12345).astype(np.float32) * 0.1
  got = feat([wave])[0]
  ref = enc(wave[None], deterministic=True, output_hidden_states=True).layer_hiddens[1][0]
  assert got.shape == (enc.frame_lengths(len(wave)), 16)
  np.testing.assert_allclose(got, np.asarray(ref), atol=1e-4)
