"""Unlabeled audio sources: VoxPopuli's unlabelled_data layout, audio_dir trees and manifests,
segmentation into training windows, their data-report accounting, pretraining on a mix of
labeled and unlabeled sources, and CTC / LID refusing them."""
import collections
import json
import os

import numpy as np
import pytest

import corpus_fixture
from mlasr import train
from mlasr.data import corpora, inputs, segment, tfds_builder
from test_train import experiment, load_experiment

# Every test that prepares into the shared corpus' <root>/tfds uses these options (a dataset
# prepared under other segmentation options is refused, not reused).
TEST_SEGMENT = dict(window_seconds=3.0, min_seconds=1.0)
SR = segment.SAMPLE_RATE


def _brute_force_windows(n: int, window: int, min_len: int) -> list[tuple[int, int, str | None]]:
  """Walks the recording window by window: the reference for segment.fixed_windows."""
  pieces, pos = [], 0
  while pos < n:
    end = min(pos + window, n)
    pieces.append([pos, end, None])
    pos = end
  if n and n < min_len:
    return [(0, n, "too_short")]
  if pieces and pieces[-1][1] - pieces[-1][0] < min_len:
    pieces[-1][2] = "short_remainder"
  return [tuple(p) for p in pieces]


def test_layouts_are_read_as_downloaded(tmp_path):
  root = str(tmp_path)
  corpus_fixture.make_unlabelled(root)
  report = corpora.DataReport()
  vp = corpora.read_corpus(root, "voxpopuli_unlabelled", ["it"], report=report)
  assert [u.utt_id for u in vp] == [
      "20190115-0900-PLENARY-3_it_0", "20190115-0900-PLENARY-3_it_1",
      "20190115-0900-PLENARY-3_it_2", "20200210-0900-PLENARY-5_it_0",
      "20200210-0900-PLENARY-5_it_9"]  # the corrupt one is the builder's to count
  assert all(u.split == "train" and u.text == "" and u.audio_path.endswith(
      os.path.join("it", u.utt_id[:4], u.utt_id + ".ogg")) for u in vp)
  assert report.skip_counts("voxpopuli_unlabelled", "it") == {"not_audio": 1,
                                                              "outside_year_folder": 1}
  tree = corpora.read_corpus(root, "audio_dir", ["hi"], report=report)
  assert [u.utt_id for u in tree] == ["b", "talks/a"]
  assert report.skip_counts("audio_dir", "hi") == {"not_audio": 1}
  # audio_dir:ru is fairseq's wav2vec manifest (root line, relative paths, frames).
  listed = corpora.read_corpus(root, "audio_dir", ["ru"], report=report)
  assert [(u.utt_id, os.path.basename(u.audio_path)) for u in listed] == [("x", "x.wav"),
                                                                          ("y", "y.ogg")]
  assert report.skip_counts("audio_dir", "ru") == {"missing_audio": 1}
  (listing,) = [e for e in report.to_dict()["listing"] if e["lang"] == "ru"]
  assert (listing["listed"], listing["missing"]) == (3, 1)
  # Only a train split; dev/test of an unlabeled corpus are empty.
  assert corpora.read_corpus(root, "audio_dir", ["hi"], splits=("dev", "test")) == []
  corpora.check_root(root, "audio_dir", "ru")  # a manifest stands for the folder

  # The other manifest spellings: a TSV with a `path` column, JSONL; a folder and a manifest
  # of the same language is refused rather than guessed.
  audio = tmp_path / "audio"
  (audio / "de.tsv").write_text("speaker\tpath\ns1\t../speech_ru/x.wav\ns2\t\n")
  (audio / "fr.jsonl").write_text('{"path": "%s"}\n{"nope": 1}\n\n' %
                                  (tmp_path / "speech_ru" / "y.ogg"))
  report = corpora.DataReport()
  de = corpora.read_corpus(root, "audio_dir", ["de"], report=report)
  fr = corpora.read_corpus(root, "audio_dir", ["fr"], report=report)
  assert [u.utt_id for u in de] == ["../speech_ru/x"] and len(fr) == 1
  assert os.path.samefile(de[0].audio_path, tmp_path / "speech_ru" / "x.wav")
  assert report.skip_counts("audio_dir", "de") == {"bad_row": 1}
  assert report.skip_counts("audio_dir", "fr") == {"bad_row": 1}
  (audio / "hi.jsonl").write_text("")
  with pytest.raises(ValueError, match="keep one"):
    corpora.read_corpus(root, "audio_dir", ["hi"])
  with pytest.raises(FileNotFoundError, match="no language folder 'sw'.*manifest"):
    corpora.check_root(root, "audio_dir", "sw")


@pytest.mark.parametrize("window,min_len", [(48000, 16000), (48000, 48000), (100, 1), (7, 3)])
def test_fixed_windows_match_a_brute_force_walk(window, min_len):
  rng = np.random.default_rng(window + min_len)
  lengths = [0, 1, min_len - 1, min_len, window - 1, window, window + 1, 2 * window,
             2 * window + min_len - 1, 2 * window + min_len] + list(rng.integers(1, 10 * window,
                                                                                  200))
  for n in lengths:
    n = int(n)
    pieces = segment.fixed_windows(n, window, min_len)
    assert [(p.start, p.end, p.reason) for p in pieces] == _brute_force_windows(n, window, min_len)
    kept = [p for p in pieces if p.reason is None]
    # Counts against the duration: full windows, plus the remainder when long enough.
    full, rest = divmod(n, window)
    assert len(kept) == (0 if n < min_len else full + (rest >= min_len and rest > 0))
    assert sum(p.end - p.start for p in pieces) == n  # the pieces tile the recording
    assert all(p.end - p.start <= window for p in pieces)


def _expected(root, source, report_loader):
  """(kept segment lengths, skip counts) a fixed-window build must give, from the loader's
  counts and a brute-force walk over each recording's decoded length."""
  corpus, lang = source.split(":")
  cfg = segment.SegmentConfig(**TEST_SEGMENT)
  kept, skips = [], collections.Counter(report_loader.skip_counts(corpus, lang))
  seconds = 0.0
  for utt in corpora.read_corpus(root, corpus, [lang]):
    try:
      pcm = segment.decode_recording(utt.audio_path, cfg)
    except Exception:  # pylint: disable=broad-except
      skips["audio_undecodable"] += 1
      continue
    seconds += len(pcm) / SR
    for a, b, reason in _brute_force_windows(len(pcm), 3 * SR, SR):
      if reason is None and np.abs(pcm[a:b].astype(np.int32)).max() <= segment.SILENCE_PEAK:
        reason = "audio_silent"
      if reason is None:
        kept.append(b - a)
      else:
        skips[reason] += 1
  return sorted(kept), dict(skips), seconds


def test_prepare_cuts_recordings_and_accounts_for_every_piece(unlabelled_corpus, tmp_path):
  root, _ = unlabelled_corpus
  data_dir = str(tmp_path / "tfds")
  reasons = set()
  for source in corpus_fixture.UNLABELLED_SOURCES:
    corpus, lang = source.split(":")
    loader = corpora.DataReport()
    corpora.read_corpus(root, corpus, [lang], report=loader)
    want_kept, want_skips, decoded = _expected(root, source, loader)
    out = tfds_builder.prepare(root, data_dir, corpus, lang, segment=TEST_SEGMENT)
    index = tfds_builder.load_index(data_dir, corpus, lang)
    assert list(index) == ["train"]
    assert sorted(index["train"]["num_samples"]) == want_kept
    assert all(t == "" for t in index["train"]["text_norm"])
    assert all("@" in u for u in index["train"]["utt_id"])
    report = tfds_builder.load_report(data_dir, corpus, lang)
    assert report.kept_count(corpus, lang, "train") == len(want_kept)
    assert report.skip_counts(corpus, lang) == want_skips
    reasons |= set(want_skips)
    seg = json.load(open(os.path.join(out, tfds_builder.REPORT_FILE)))["segmentation"]
    (e,) = seg
    assert e["segments"] == len(want_kept)
    assert e["recording_seconds"] == pytest.approx(decoded, abs=1e-3)
    # Kept + left out = decoded, second for second.
    assert e["segment_seconds"] + sum(e["left_out_seconds"].values()) == pytest.approx(
        e["recording_seconds"], abs=1e-3)
    assert e["segment_seconds"] == pytest.approx(sum(want_kept) / SR, abs=1e-3)
    # Same record format as the labeled datasets: the pipeline reads it unchanged.
    ex = tfds_builder.data_source(data_dir, corpus, lang, "train")[0]
    assert ex["audio"].dtype == np.int16 and ex["text"] == b"" and ex["lang"] == lang.encode()
  assert {"short_remainder", "too_short", "audio_silent", "audio_undecodable", "not_audio",
          "missing_audio", "outside_year_folder"} <= reasons
  # Prepared once: a second call reuses it; other segmentation options are refused.
  index_file = os.path.join(out, tfds_builder.INDEX_FILE)
  mtime = os.path.getmtime(index_file)
  tfds_builder.prepare(root, data_dir, "audio_dir", "ru", segment=TEST_SEGMENT)
  assert os.path.getmtime(index_file) == mtime
  with pytest.raises(ValueError, match="unlabeled.window_seconds"):
    tfds_builder.prepare(root, data_dir, "audio_dir", "ru", segment={"window_seconds": 4.0,
                                                                      "min_seconds": 1.0})


def test_vad_segments_leave_out_the_silence(unlabelled_corpus, tmp_path):
  root, seconds = unlabelled_corpus
  data_dir = str(tmp_path / "tfds")
  tfds_builder.prepare(root, data_dir, "audio_dir", "hi",
                       segment=dict(segment="vad_energy", window_seconds=2.0, min_seconds=0.5))
  index = tfds_builder.load_index(data_dir, "audio_dir", "hi")["train"]
  lengths = np.array(index["num_samples"]) / SR
  assert len(lengths) >= 3 and lengths.max() <= 2.0 + 1e-6 and lengths.min() >= 0.5
  (e,) = tfds_builder.load_report(data_dir, "audio_dir", "hi").to_dict()["segmentation"]
  assert e["left_out_seconds"]["non_speech"] > 3.0  # a.wav's 3.4 s of digital silence
  assert e["segment_seconds"] + sum(e["left_out_seconds"].values()) == pytest.approx(
      e["recording_seconds"], abs=1e-3)
  starts = sorted(float(u.split("@")[1]) for u in index["utt_id"] if u.startswith("talks/a@"))
  assert not any(3.0 < s < 6.0 for s in starts)  # nothing starts inside the silence


def _pretrain_config(root, sources):
  config = load_experiment(experiment("hubert_pretrain.py"), root, sources)
  config.model.targets = "bestrq"
  config.model.bestrq.codebook_size = 64
  config.data.unlabeled.update(TEST_SEGMENT)
  return config


def test_pretraining_mixes_labeled_and_unlabeled_sources(unlabelled_corpus, tmp_path):
  root, _ = unlabelled_corpus
  sources = ("commonvoice:hi", "voxpopuli:it") + corpus_fixture.UNLABELLED_SOURCES
  dev = train.run(_pretrain_config(root, sources), str(tmp_path / "mixed"))
  assert dev and all(np.isfinite(v) for v in dev.values())  # dev: the labeled sources' dev
  weights = json.load(open(tmp_path / "mixed" / inputs.SOURCE_WEIGHTS_FILE))
  assert set(weights["source_shares"]) == set(sources)
  assert sum(weights["source_shares"].values()) == pytest.approx(1.0)
  assert set(weights["sources"]["it"]) == {"voxpopuli:it", "voxpopuli_unlabelled:it"}
  lines = open(tmp_path / "mixed" / "metrics.jsonl").read().splitlines()
  assert len(lines) == 3  # two train steps + the final dev eval

  # Unlabeled audio alone trains too, without a dev split (and says so).
  alone = _pretrain_config(root, corpus_fixture.UNLABELLED_SOURCES)
  assert train.run(alone, str(tmp_path / "alone")) == {}
  assert len(open(tmp_path / "alone" / "metrics.jsonl").read().splitlines()) == 2
  with pytest.raises(ValueError, match="every source .* is unlabeled"):
    inputs.eval_data(alone, "dev")


@pytest.mark.parametrize("name", ["demo_ctc.py", "lid.py"])
def test_supervised_tasks_refuse_unlabeled_sources(unlabelled_corpus, tmp_path, name):
  root, _ = unlabelled_corpus
  config = load_experiment(experiment(name), root, ("commonvoice:hi", "audio_dir:hi"))
  config.data.data_dir = str(tmp_path / "tfds")
  with pytest.raises(ValueError, match="unlabeled audio \\['audio_dir:hi'\\]"):
    train.run(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "tfds")  # refused before anything was prepared
  config.data.sources = ("commonvoice:hi", "wav2vec:hi")
  with pytest.raises(ValueError, match="audio_dir:<lang>"):
    inputs.datasets(config.data)


def test_kmeans_targets_are_dumped_for_unlabeled_segments(unlabelled_corpus, tmp_path):
  """HuBERT's target pipeline (MFCC features, k-means, label dump) reads the segments as it
  reads labeled clips, and the label store feeds the pretraining batches."""
  from data_prep import dump_labels, extract_features, fit_kmeans  # pylint: disable=import-outside-toplevel
  from mlasr.data import pipeline  # pylint: disable=import-outside-toplevel
  from mlasr.targets import labels as labels_lib  # pylint: disable=import-outside-toplevel
  root, _ = unlabelled_corpus
  data_dir = str(tmp_path / "tfds")
  sources = [("commonvoice", "hi"), ("voxpopuli_unlabelled", "it"), ("audio_dir", "hi")]
  for corpus, lang in sources:
    tfds_builder.prepare(root, data_dir, corpus, lang, segment=TEST_SEGMENT)
  datasets = [(c, l, "train") for c, l in sources]
  extract_features.extract(data_dir, datasets, extract_features.FeatureSpec("mfcc"),
                           str(tmp_path / "feats"))
  fit_kmeans.fit(str(tmp_path / "feats"), str(tmp_path / "km"), k=8, batch_size=256, seed=0)
  dump_labels.dump(data_dir, datasets, str(tmp_path / "km"), str(tmp_path / "labels"))
  store = labels_lib.LabelStore(str(tmp_path / "labels"))
  for corpus, lang in sources[1:]:
    for utt_id in tfds_builder.load_index(data_dir, corpus, lang)["train"]["utt_id"]:
      assert store.has(corpus, lang, "train", utt_id)
  data = pipeline.train_data(data_dir, sources, labels=store, buckets=[(4, 48000)], seed=0)
  assert data.report.skip_counts() == {}
  batch = next(data.iterator())
  assert batch["targets"].shape[0] == 4 and (batch["target_mask"].sum(-1) > 0).all()
