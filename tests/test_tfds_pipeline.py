"""TFDS array_record build + read-back, and the grain train/eval pipeline on top of it."""

import json
import os

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from mlasr.data import inputs
from mlasr.data import pipeline
from mlasr.data import sampling
from mlasr.data import text as text_lib
from mlasr.data import tfds_builder

from corpus_fixture import N_TRAIN, WORDS, make_corpus

BUCKETS = [(16, 8000), (8, 16000), (4, 32000)]  # 0.5 s, 1 s, 2 s; batch*samples = 128k.


class CharTok:
  """Duck-typed tokenizer: characters of the fixture's texts; raises on others."""

  def __init__(self):
    chars = sorted(set("".join(WORDS.values()) + " 0123456789numero"))
    self.ids = {c: i + 1 for i, c in enumerate(chars)}

  def encode(self, text, lang):
    del lang
    return [self.ids[c] for c in text]


DATASETS = [("commonvoice", "hi"), ("commonvoice", "ru"), ("voxpopuli", "it")]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("corpus"))
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  sentences = make_corpus(root)
  for corpus, lang in DATASETS:  # One with decoding threads, as for big corpora.
    tfds_builder.prepare(root, data_dir, corpus, lang, num_workers=2 if lang == "it" else 1)
  return root, data_dir, sentences


def test_decoding_threads_write_the_same_records_as_one(prepared, tmp_path, capfd):
  """Two decoding threads keep the order and bytes of a single-threaded conversion."""
  root, data_dir, _ = prepared
  capfd.readouterr()
  tfds_builder.prepare(root, str(tmp_path), "voxpopuli", "it", num_workers=1)
  # TFDS's "Downloading and preparing dataset ..." lines stay out of the user's terminal.
  assert "prepar" not in capfd.readouterr().out
  for split in ("train", "dev", "test"):
    threads = tfds_builder.data_source(data_dir, "voxpopuli", "it", split)
    one = tfds_builder.data_source(str(tmp_path), "voxpopuli", "it", split)
    assert len(threads) == len(one) > 0
    for i in range(len(one)):
      a, b = threads[i], one[i]
      assert a.keys() == b.keys()
      for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def _train(data_dir, **kw):
  kw.setdefault("tokenizer", CharTok())
  return pipeline.train_data(data_dir, DATASETS, buckets=BUCKETS, **kw)


def test_build_read_back(prepared):
  root, data_dir, sentences = prepared
  src = tfds_builder.data_source(data_dir, "commonvoice", "hi", "train")
  assert len(src) == N_TRAIN["hi"] + 2  # + punct, oov; corrupt and short are skipped.
  seen = set()
  for i in range(len(src)):
    ex = src[i]
    utt = ex["utt_id"].decode()
    seen.add(utt)
    if utt in ("punct", "oov"):
      continue
    ref = sf.read(os.path.join(root, "commonvoice", "hi", "clips", utt + ".mp3"),
                  dtype="float32")[0]
    ref = signal.resample_poly(ref, 1, 3)  # Independent of the soxr resampler used.
    got = ex["audio"].astype(np.float32) / 32767
    assert ex["audio"].dtype == np.int16 and abs(len(got) - len(ref)) <= 1  # rounding
    n = min(len(got), len(ref))
    np.testing.assert_allclose(got[100:n - 100], ref[100:n - 100], atol=3e-3)
    assert ex["text"].decode() == sentences[utt]
    assert ex["text_norm"].decode() == text_lib.normalize(sentences[utt], "hi")
    assert ex["lang"].decode() == "hi" and ex["speaker"].decode().startswith("spk")
    assert ex["duration"] == pytest.approx(len(got) / 16000)
  assert seen == {f"common_voice_hi_train{i}" for i in range(N_TRAIN["hi"])} | {"punct", "oov"}
  report = tfds_builder.load_report(data_dir, "commonvoice", "hi")
  assert report.skip_counts("commonvoice", "hi", "train") == {"audio_undecodable": 1,
                                                             "too_short": 1}
  assert report.skip_counts("commonvoice", "hi", "train_10min") == {
      "subset_id_not_in_train": 1}
  assert report.kept_count("commonvoice", "hi", "train") == N_TRAIN["hi"] + 2
  sub = tfds_builder.data_source(data_dir, "commonvoice", "hi", "train_10min")
  assert sorted(sub[i]["utt_id"].decode() for i in range(len(sub))) == [
      f"common_voice_hi_train{i}" for i in range(5)]
  with pytest.raises(KeyError, match="train_1h"):
    tfds_builder.data_source(data_dir, "commonvoice", "hi", "train_1h")
  vp = tfds_builder.data_source(data_dir, "voxpopuli", "it", "test")
  ex = vp[0]
  utt = ex["utt_id"].decode()
  ref = sf.read(os.path.join(root, "voxpopuli", "transcribed_data", "it", utt[:4], utt + ".ogg"),
                dtype="float32")[0]
  np.testing.assert_allclose(ex["audio"] / 32767, ref, atol=1e-4)  # 16 kHz: no resampling.


def test_prepare_is_idempotent_and_readable_by_tfds_and_grain(prepared):
  import grain  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  root, data_dir, _ = prepared
  out = tfds_builder.dataset_dir(data_dir, "voxpopuli", "it")
  files = sorted(os.listdir(out))
  mtimes = [os.path.getmtime(os.path.join(out, f)) for f in files]
  assert tfds_builder.prepare(root, data_dir, "voxpopuli", "it") == out
  assert [os.path.getmtime(os.path.join(out, f)) for f in files] == mtimes
  src = tfds.data_source("mlasr_asr/voxpopuli_it", data_dir=data_dir, split="test")
  ds = grain.MapDataset.source(src).map(lambda ex: ex["utt_id"].decode())
  assert sorted(ds) == sorted(tfds_builder.load_index(data_dir, "voxpopuli", "it")["test"]
                              ["utt_id"])


def test_split_larger_than_the_shuffle_buffer(prepared, tmp_path, monkeypatch):
  # Past tfds.core.shuffle.MAX_MEM_BUFFER_SIZE (1 GB) TFDS spills to bucket files through
  # tf.io.gfile; without TensorFlow that failed for real Common Voice languages. A 1-byte
  # buffer forces the spill here; the result must equal the in-memory build.
  from tensorflow_datasets.core import shuffle  # pylint: disable=g-import-not-at-top
  root, data_dir, _ = prepared
  monkeypatch.setattr(shuffle, "MAX_MEM_BUFFER_SIZE", 1)
  spilled = tfds_builder.prepare(root, str(tmp_path), "commonvoice", "ru")
  for split in ("train", "test"):
    a = tfds_builder.data_source(data_dir, "commonvoice", "ru", split)
    b = tfds_builder.data_source(str(tmp_path), "commonvoice", "ru", split)
    assert len(a) == len(b) > 0
    by_id = {a[i]["utt_id"]: a[i] for i in range(len(a))}
    for i in range(len(b)):
      ex = b[i]
      np.testing.assert_array_equal(ex["audio"], by_id[ex["utt_id"]]["audio"])
  assert os.path.isdir(spilled)


def _same(a, b):
  return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_train_batches_shapes_masks_and_skips(prepared):
  _, data_dir, _ = prepared
  td = _train(data_dir, seed=3)
  assert td.langs == ["hi", "ru", "it"]
  assert td.report.skip_counts() == {"empty_text_norm": 1, "untokenizable": 1,
                                     "too_long": td.report.skip_counts()["too_long"]}
  long_ids = [u for c, l in DATASETS for u, n in zip(
      *(tfds_builder.load_index(data_dir, c, l)["train"][k] for k in ("utt_id", "num_samples")))
              if n > 32000]
  assert td.report.skip_counts()["too_long"] == len(long_ids) > 0
  shapes = {(b, n): l for b, n, l in td.shapes}
  assert set(shapes) == set(BUCKETS)
  it = td.iterator()
  seen_shapes = set()
  for _ in range(20):
    batch = next(it)
    b, t = batch["audio"].shape
    seen_shapes.add((b, t))
    assert (b, t) in shapes and batch["labels"].shape == (b, shapes[(b, t)])
    assert batch["audio"].dtype == np.float32 and batch["labels"].dtype == np.int32
    assert np.all(batch["example_mask"] == 1)
    assert np.all((batch["labels"] > 0) == (batch["label_mask"] == 1))
    lengths = batch["audio_mask"].sum(1)
    assert np.all(lengths > 0) and np.all(batch["audio_mask"][:, :-1] >= batch["audio_mask"][:, 1:])
    assert np.all(batch["audio"][batch["audio_mask"] == 0] == 0)
    assert set(batch["lang_id"].tolist()) <= {0, 1, 2}
  assert len(seen_shapes) >= 2


def test_crop_without_tokenizer(prepared):
  _, data_dir, _ = prepared
  td = pipeline.train_data(data_dir, DATASETS, buckets=BUCKETS, seed=0)
  assert td.report.skip_counts() == {}
  it = td.iterator()
  batches = [next(it) for _ in range(30)]
  assert "labels" not in batches[0]
  full = [b for b in batches if b["audio"].shape[1] == 32000]
  assert full and any(b["audio_mask"].sum(1).max() == 32000 for b in full)  # crops fill it


def test_determinism_and_seed(prepared):
  _, data_dir, _ = prepared
  a = [next(it) for it in [_train(data_dir, seed=1).iterator()] for _ in range(5)]
  it_b = _train(data_dir, seed=1).iterator()
  b = [next(it_b) for _ in range(5)]
  it_c = _train(data_dir, seed=2).iterator()
  c = [next(it_c) for _ in range(5)]
  assert all(_same(x, y) for x, y in zip(a, b))
  assert not all(_same(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_language_proportions_follow_alpha(prepared, alpha):
  _, data_dir, _ = prepared
  td = _train(data_dir, alpha=alpha, seed=7)
  hours = sampling.sizes_from_prepared(data_dir, DATASETS)  # before pipeline filtering
  assert set(hours) == {"hi", "ru", "it"}
  # Independent reference: n^alpha / sum over the hours of the examples the pipeline kept.
  kept = {l: 0.0 for l in td.langs}
  for e in range(len(td.step_fn.table.src)):
    kept[td.langs[td.step_fn.table.lang_id[e]]] += td.step_fn.table.num_samples[e] / 16000 / 3600
  z = sum(h ** alpha for h in kept.values())
  for l in kept:
    assert td.weights[l] == pytest.approx(kept[l] ** alpha / z)
  draws, step = [], 0
  while len(draws) < 12000:
    _, rows, _ = td.step_fn.plan(step)
    draws += [td.langs[td.step_fn.table.lang_id[e]] for e in rows]
    step += 1
  got = sampling.empirical_proportions(draws)
  for l, p in td.weights.items():
    assert abs(got.get(l, 0.0) - p) < 0.02, (alpha, l, got, td.weights)


@pytest.fixture(scope="module")
def two_sources(prepared):
  """DATASETS plus commonvoice:it: Italian from two sources (VoxPopuli and Common Voice)."""
  root, data_dir, _ = prepared
  tfds_builder.prepare(root, data_dir, "commonvoice", "it")
  return data_dir, DATASETS + [("commonvoice", "it")]


def _draw_rows(step_fn, n):
  rows, step = [], 0
  while len(rows) < n:
    rows += step_fn.plan(step)[1]
    step += 1
  return rows


@pytest.mark.parametrize("alpha,source_alpha", [(0.5, 0.0), (1.0, 1.0), (0.3, 0.5)])
def test_two_level_proportions_follow_both_exponents(two_sources, alpha, source_alpha,
                                                    tmp_path):
  data_dir, datasets = two_sources
  td = pipeline.train_data(data_dir, datasets, buckets=BUCKETS, tokenizer=CharTok(),
                           alpha=alpha, source_alpha=source_alpha, seed=11)
  table = td.step_fn.table
  names = [f"{c}:{l}" for c, l in datasets]
  # Independent reference: hours of the kept examples per (language, source), by brute force.
  hours = {}
  for e in range(len(table.src)):
    key = (td.langs[table.lang_id[e]], names[table.src[e]])
    hours[key] = hours.get(key, 0.0) + table.num_samples[e] / 16000 / 3600
  lang_h = {}
  for (l, _), h in hours.items():
    lang_h[l] = lang_h.get(l, 0.0) + h
  z = sum(h ** alpha for h in lang_h.values())
  p = {l: h ** alpha / z for l, h in lang_h.items()}
  q = {}
  for (l, s), h in hours.items():
    zl = sum(hh ** source_alpha for (ll, _), hh in hours.items() if ll == l)
    q[(l, s)] = h ** source_alpha / zl
  assert td.weights == pytest.approx(p)
  assert {(l, s): w for l, v in td.source_weights.items() for s, w in v.items()} == \
      pytest.approx(q)
  assert set(td.source_weights["it"]) == {"voxpopuli:it", "commonvoice:it"}
  assert td.source_weights["hi"] == {"commonvoice:hi": 1.0}
  rows = _draw_rows(td.step_fn, 12000)
  langs = sampling.empirical_proportions(td.langs[table.lang_id[e]] for e in rows)
  joint = sampling.empirical_proportions((td.langs[table.lang_id[e]], names[table.src[e]])
                                         for e in rows)
  for l, w in p.items():
    assert abs(langs.get(l, 0.0) - w) < 0.02, (l, langs, p)
  for key, w in q.items():
    assert abs(joint.get(key, 0.0) - p[key[0]] * w) < 0.02, (key, joint, p, q)
  path = inputs.write_sampling_weights(td, str(tmp_path))  # next to sampling_weights.json
  with open(path, encoding="utf-8") as f:
    d = json.load(f)
  assert os.path.basename(path) == "sampling_weights_sources.json"
  assert (d["alpha"], d["source_alpha"]) == (alpha, source_alpha)
  assert d["languages"] == pytest.approx(p)
  assert d["sources"]["it"] == pytest.approx({s: w for (l, s), w in q.items() if l == "it"})
  assert d["source_shares"]["commonvoice:it"] == pytest.approx(p["it"] * q[("it",
                                                                            "commonvoice:it")])


def _one_level_plan(td, buckets, seed, step):
  """The sampler before sources had a level of their own (a copy of its algorithm): bucket
  by mass / batch size, language by mass in the bucket, example uniformly in (language,
  bucket), every example of language l having mass p_l / n_l."""
  table = td.step_fn.table
  lengths = np.minimum(table.num_samples, buckets[-1][1])
  bucket_of = np.searchsorted(np.array([n for _, n in buckets]), lengths)
  counts = np.bincount(table.lang_id, minlength=len(td.langs))
  mass = np.array([td.weights.get(td.langs[l], 0.0) / max(counts[l], 1)
                   for l in table.lang_id])
  members, lang_probs, bucket_mass = [], [], []
  for b in range(len(buckets)):
    in_b = bucket_of == b
    lm = np.array([mass[in_b & (table.lang_id == l)].sum() for l in range(len(td.langs))])
    bucket_mass.append(lm.sum())
    lang_probs.append(lm / lm.sum())
    members.append([np.flatnonzero(in_b & (table.lang_id == l)) for l in range(len(td.langs))])
  bucket_probs = np.array(bucket_mass) / np.array([bs for bs, _ in buckets])
  bucket_probs /= bucket_probs.sum()
  b = int(np.random.default_rng([seed, step]).choice(len(buckets), p=bucket_probs))
  rng = np.random.default_rng([seed, step, 1])
  rows = []
  for l in rng.choice(len(td.langs), size=buckets[b][0], p=lang_probs[b]):
    m = members[b][l]
    rows.append(int(m[rng.integers(len(m))]))
  return b, rows


def test_one_source_per_language_draws_as_before(prepared):
  """With one source per language the two-level sampler is the one-level one: the same
  batches for the same seed, whatever source_alpha is."""
  _, data_dir, _ = prepared
  buckets = sorted(BUCKETS, key=lambda x: x[1])
  tds = [_train(data_dir, seed=4, source_alpha=a) for a in (1.0, 0.0, 0.7)]
  for step in range(300):
    ref = _one_level_plan(tds[0], buckets, 4, step)
    for td in tds:
      b, rows, _ = td.step_fn.plan(step)
      assert (b, rows) == ref, step
  assert all(td.source_weights == {"hi": {"commonvoice:hi": 1.0}, "ru": {"commonvoice:ru": 1.0},
                                   "it": {"voxpopuli:it": 1.0}} for td in tds)
  it_a, it_b = tds[0].iterator(), tds[1].iterator()
  assert all(_same(next(it_a), next(it_b)) for _ in range(3))


def test_state_restore_and_workers(prepared):
  _, data_dir, _ = prepared
  ref_td = _train(data_dir, seed=5)
  it = ref_td.iterator()
  for _ in range(3):
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(4)]
  fresh = _train(data_dir, seed=5).iterator()
  fresh.set_state(state)
  assert all(_same(x, next(fresh)) for x in expected)

  mp = _train(data_dir, seed=5, worker_count=2)
  it2 = mp.iterator()
  first = [next(it2) for _ in range(3)]
  state2 = it2.get_state()
  expected2 = [next(it2) for _ in range(4)]
  ref_it = _train(data_dir, seed=5).iterator()
  assert all(_same(x, next(ref_it)) for x in first + expected2)  # worker count is invisible
  fresh2 = mp.iterator()
  fresh2.set_state(state2)
  assert all(_same(x, next(fresh2)) for x in expected2)


def test_eval_sharding_covers_once(prepared):
  _, data_dir, _ = prepared
  tok = CharTok()
  full = pipeline.eval_data(data_dir, DATASETS, "test", tokenizer=tok, buckets=BUCKETS)
  assert full.report.skip_counts() == {}
  ids_full = []
  src = {(c, l): tfds_builder.data_source(data_dir, c, l, "test") for c, l in DATASETS}
  by_id = {src[k][i]["utt_id"].decode(): src[k][i] for k in src for i in range(len(src[k]))}
  shapes = {(b, t) for b, t, _ in full.shapes}
  for batch in full.batches():
    assert batch["audio"].shape[:2] in shapes
    for r in np.flatnonzero(batch["example_mask"]):
      utt = batch["utt_id"][r]
      ids_full.append(utt)
      ex = by_id[utt]
      n = len(ex["audio"])
      np.testing.assert_array_equal(batch["audio"][r, :n], ex["audio"] / np.float32(32767))
      assert batch["audio_mask"][r].sum() == n
      assert batch["text_norm"][r] == ex["text_norm"].decode()
      assert batch["lang"][r] == ex["lang"].decode()
      assert batch["labels"][r, :batch["label_mask"][r].sum()].tolist() == tok.encode(
          batch["text_norm"][r], batch["lang"][r])
    assert np.all(batch["audio_mask"][batch["example_mask"] == 0] == 0)
  assert sorted(ids_full) == sorted(by_id)  # every utterance exactly once (incl. > 2 s ones)
  shards = [pipeline.eval_data(data_dir, DATASETS, "test", buckets=BUCKETS, shard_index=s,
                               shard_count=2) for s in range(2)]
  assert len(shards[0]) == len(shards[1])
  ids = [[u for b in sh.batches() for u, m in zip(b["utt_id"], b["example_mask"]) if m]
         for sh in shards]
  assert not set(ids[0]) & set(ids[1])
  assert sorted(ids[0] + ids[1]) == sorted(by_id)


def test_make_buckets():
  assert pipeline.make_buckets(seconds=[2.0, 1.0], batch_seconds=8.0) == [(8, 16000), (4, 32000)]
  got = pipeline.make_buckets(max_seconds=16, min_seconds=2, num_buckets=4, batch_seconds=120,
                              batch_multiple=8)
  assert [n for _, n in got] == sorted(n for _, n in got) and got[-1][1] == 256000
  assert all(b % 8 == 0 and (b * n <= 120 * 16000 or b == 8) and n % 1600 == 0 for b, n in got)
  with pytest.raises(ValueError, match="seconds"):
    pipeline.make_buckets(seconds=[0.0])


def test_eval_fixed_batch_size(prepared):
  _, data_dir, _ = prepared
  ev = pipeline.eval_data(data_dir, DATASETS, "dev", buckets=BUCKETS, batch_size=3)
  assert {b for b, _, _ in ev.shapes} == {3}
  assert sum(int(b["example_mask"].sum()) for b in ev.batches()) == 3 + 3 + 2
