"""The synthetic Common Voice / VoxPopuli corpus that the pipeline and training tests share.

Used by tests/test_tfds_pipeline.py and by conftest.py's `small_corpus` fixture.
"""
import os

import numpy as np
import soundfile as sf

CV = ("client_id path sentence_id sentence sentence_domain up_votes down_votes age gender "
      "accents variant locale segment").split()
VP = ("id raw_text normalized_text speaker_id split gender is_gold_transcript "
      "accent").split()
WORDS = {"hi": "नमस्ते दुनिया वाक्य", "ru": "привет мир фраза", "it": "ciao mondo frase"}
N_TRAIN = {"hi": 24, "ru": 10, "it": 6}
N_TRAIN_CV_IT = 14


def clip(rng, seconds, sr):
  t = np.arange(int(seconds * sr)) / sr
  return (0.3 * np.sin(2 * np.pi * rng.uniform(200, 900) * t)).astype(np.float32)


def write_tsv(path, header, rows):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.write("\t".join(header) + "\n")
    for r in rows:
      f.write("\t".join(r.get(c, "") for c in header) + "\n")


def make_corpus(root):
  """CV hi/ru (48 kHz mp3) and VoxPopuli it (16 kHz ogg); durations 0.3-2.6 s."""
  rng = np.random.default_rng(0)
  sentences = {}
  for lang in ("hi", "ru"):
    write_cv_language(root, lang, (("train", N_TRAIN[lang]), ("dev", 3), ("test", 5)), rng,
                       2.6, lambda i, l=lang: f"{WORDS[l].split()[i % 3]} «{i}» {WORDS[l]}!",
                       lambda i: f"spk{i % 4}", sentences)
  hi = os.path.join(root, "commonvoice", "hi")
  # Quirks the builder (not the loader) must count, and ones the pipeline must count.
  with open(os.path.join(hi, "clips", "corrupt.mp3"), "wb") as f:
    f.write(b"no audio here" * 40)
  sf.write(os.path.join(hi, "clips", "short.mp3"), clip(rng, 0.05, 48000), 48000)
  sf.write(os.path.join(hi, "clips", "punct.mp3"), clip(rng, 0.7, 48000), 48000)
  sf.write(os.path.join(hi, "clips", "oov.mp3"), clip(rng, 0.7, 48000), 48000)
  with open(os.path.join(hi, "train.tsv"), "a", encoding="utf-8") as f:
    for name, sent in (("corrupt", "x"), ("short", "y"), ("punct", "!!! ?"), ("oov", "ŋŋŋ")):
      f.write("\t".join({"path": f"{name}.mp3", "sentence": sent, "client_id": "q"}.get(c, "")
                        for c in CV) + "\n")
  sub = os.path.join(root, "subsets", "commonvoice", "hi")
  write_tsv(os.path.join(sub, "train_10min.tsv"), ["utt_id"],
             [{"utt_id": f"common_voice_hi_train{i}"} for i in range(5)] + [{"utt_id": "nope"}])
  d = os.path.join(root, "voxpopuli", "transcribed_data", "it")
  for split, n in (("train", N_TRAIN["it"]), ("dev", 2), ("test", 4)):
    rows = []
    for i in range(n):
      utt = f"2019010{i}-0900-PLENARY-{split}_it_{i}"
      os.makedirs(os.path.join(d, utt[:4]), exist_ok=True)
      sf.write(os.path.join(d, utt[:4], utt + ".ogg"), clip(rng, rng.uniform(0.3, 2.6), 16000),
               16000)
      sent = f"{WORDS['it']} numero {i}."
      rows.append({"id": utt, "raw_text": sent, "normalized_text": sent.lower(),
                   "speaker_id": "s1", "split": split})
      sentences[utt] = sent
    write_tsv(os.path.join(d, f"asr_{split}.tsv"), VP, rows)
  # A second source of Italian (Common Voice), for the two-level sampler; not in DATASETS.
  write_cv_language(root, "it", (("train", N_TRAIN_CV_IT), ("dev", 1), ("test", 1)), rng, 1.8,
                     lambda i: f"{WORDS['it'].split()[i % 3]} {WORDS['it']}",
                     lambda i: f"cv{i % 3}", sentences)
  return sentences


def write_cv_language(root, lang, splits, rng, max_seconds, sentence, speaker, sentences):
  """Common Voice clips (48 kHz mp3, 0.3-max_seconds s) and split TSVs of one language;
  records each clip's sentence in `sentences`."""
  d = os.path.join(root, "commonvoice", lang)
  os.makedirs(os.path.join(d, "clips"))
  for split, n in splits:
    rows = []
    for i in range(n):
      name = f"common_voice_{lang}_{split}{i}.mp3"
      sf.write(os.path.join(d, "clips", name), clip(rng, rng.uniform(0.3, max_seconds), 48000),
               48000)
      rows.append({"client_id": speaker(i), "path": name, "sentence": sentence(i)})
      sentences[name[:-4]] = rows[-1]["sentence"]
    write_tsv(os.path.join(d, f"{split}.tsv"), CV, rows)


# Unlabeled recordings, in the layouts the unlabeled loaders read (corpora.read_voxpopuli_
# unlabelled, corpora.read_audio_dir): (path under root, sample rate, channels, seconds of
# sine bursts and digital silence in order). Long enough for several training windows.
UNLABELLED = {
    "voxpopuli/unlabelled_data/it/2019/20190115-0900-PLENARY-3_it_0.ogg":
        (16000, 1, (2.0, -0.3, 2.5, -0.4, 2.2)),
    "voxpopuli/unlabelled_data/it/2019/20190115-0900-PLENARY-3_it_1.ogg":
        (16000, 1, (1.4, -0.2, 1.6)),
    "voxpopuli/unlabelled_data/it/2019/20190115-0900-PLENARY-3_it_2.ogg": (16000, 1, (0.5,)),
    "voxpopuli/unlabelled_data/it/2020/20200210-0900-PLENARY-5_it_0.ogg":
        (48000, 2, (1.8, -0.5, 2.75)),
    # The second 3 s window [3, 6) is digital silence (counted as audio_silent).
    "audio/hi/talks/a.wav": (44100, 2, (2.8, -3.4, 1.3)),
    "audio/hi/b.flac": (16000, 1, (2.5,)),
    "speech_ru/x.wav": (16000, 1, (1.2, -0.3, 2.0)),
    "speech_ru/y.ogg": (22050, 1, (3.6,)),
}
# Files the loaders must count, not read: (path under root, bytes).
UNLABELLED_JUNK = {
    "voxpopuli/unlabelled_data/it/2020/20200210-0900-PLENARY-5_it_9.ogg": b"not vorbis" * 50,
    "voxpopuli/unlabelled_data/it/2020/notes.txt": b"segment notes",
    "voxpopuli/unlabelled_data/it/README": b"outside any year folder",
    "audio/hi/talks/slides.pdf": b"%PDF-1.4",
}
# audio_dir:ru reads this manifest instead of a folder: fairseq's wav2vec format (root folder,
# then relative path and frames); one listed file is absent.
UNLABELLED_MANIFEST = ("audio/ru.tsv", ["../speech_ru", "x.wav\t56000", "y.ogg\t79380",
                                        "missing.wav\t16000"])
UNLABELLED_SOURCES = ("voxpopuli_unlabelled:it", "audio_dir:hi", "audio_dir:ru")


def make_unlabelled(root, seed=1):
  """Writes UNLABELLED, UNLABELLED_JUNK and UNLABELLED_MANIFEST under root (a test fixture:
  the demo benchmark has no unlabeled audio). Returns {path: seconds written}."""
  rng = np.random.default_rng(seed)
  seconds = {}
  for rel, (sr, channels, parts) in UNLABELLED.items():
    wave = np.concatenate([clip(rng, s, sr) if s > 0 else np.zeros(int(-s * sr), np.float32)
                           for s in parts])
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, np.stack([wave] * channels, 1) if channels > 1 else wave, sr)
    seconds[path] = len(wave) / sr
  for rel, data in UNLABELLED_JUNK.items():
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
      f.write(data)
  rel, lines = UNLABELLED_MANIFEST
  with open(os.path.join(root, rel), "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
  return seconds
