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
