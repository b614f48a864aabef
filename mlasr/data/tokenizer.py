"""CTC tokenizers: a shared multilingual SentencePiece model and character vocabularies.

Every tokenizer reserves id 0 for the CTC blank and id 1 for unknown input; `encode` never
returns 0, and `decode` drops 0s (so padded label rows decode cleanly) but collapses nothing
else: CTC repeat-merging happens in the decoder. Inputs are `mlasr.data.text.normalize`d text,
for which `decode(encode(t, lang), lang) == t` holds exactly whenever every character of `t` was
seen in training.

On disk a tokenizer is a directory with `tokenizer.json` (type + settings) and, for
SentencePiece, `spm.model`; `load_tokenizer(dir)` returns the right class.
"""

from __future__ import annotations

import collections
import io
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import sentencepiece as spm

from mlasr import fileio
from mlasr.data.sampling import language_weights

BLANK_ID = 0
UNK_ID = 1
CONFIG_FILE = "tokenizer.json"
SPM_FILE = "spm.model"
# Shown in place of an unknown id, like SentencePiece's unk_surface.
UNK_SURFACE = "\u2047"
_SHARED = "*"


class Tokenizer:
  """Interface shared by all tokenizers (id 0 = blank, id 1 = unk)."""

  blank_id: int = BLANK_ID
  unk_id: int = UNK_ID

  @property
  def vocab_size(self) -> int:
    raise NotImplementedError

  def encode(self, text: str, lang: str) -> list[int]:
    raise NotImplementedError

  def decode(self, ids: Iterable[int], lang: str) -> str:
    raise NotImplementedError

  def save(self, directory: str) -> None:
    raise NotImplementedError

  def unknown_chars(self, text: str, lang: str) -> int:
    """Number of characters of `text` that encode to the unknown id."""
    raise NotImplementedError

  def stats(self, texts_by_lang: Mapping[str, Sequence[str]]) -> dict[str, dict[str, float]]:
    return tokenizer_stats(self, texts_by_lang)

  def output_mask(self, langs: Sequence[str]) -> np.ndarray:
    """[len(langs), vocab_size] bool: the outputs a CTC head may emit for each language.

    Blank and unk always; otherwise a symbol or piece whose characters all occur in that
    language's training text (so a Hindi utterance cannot decode to Cyrillic pieces).
    """
    mask = np.zeros([len(langs), self.vocab_size], bool)
    for row, lang in enumerate(langs):
      chars = set(self._lang_chars(lang))
      for i, surface in enumerate(self._surfaces(lang)):
        mask[row, i] = i in (BLANK_ID, UNK_ID) or set(surface) <= chars
    return mask

  def extended_with(self, texts_by_lang: Mapping[str, Sequence[str]]) -> Tokenizer:
    """This tokenizer, knowing the languages of `texts_by_lang` it lacks; ids never change.

    Only the language's character set is added (for output masks); characters no existing
    piece or symbol covers stay <unk>, which `stats` reports per language.
    """
    new = {l: ts for l, ts in texts_by_lang.items() if l not in self.lang_chars}
    if new:
      self.lang_chars = dict(self.lang_chars, **_chars_by_lang(
          {l: {ch for t in ts for ch in t} for l, ts in new.items()}))
      for lang, st in self.stats(new).items():
        if st["unk_rate"] > 0:
          logging.warning("Tokenizer extended to %r: %.1f%% of its characters are <unk>.",
                          lang, 100 * st["unk_rate"])
    return self

  def _lang_chars(self, lang: str) -> str:
    if lang not in self.lang_chars:
      raise KeyError(f"The tokenizer has no character set for language {lang!r} (it knows "
                     f"{sorted(self.lang_chars)}); per-language output masks need a tokenizer "
                     "built from that language's text (rebuild it: delete <workdir>/tokenizer).")
    return self.lang_chars[lang]

  def _surfaces(self, lang: str) -> list[str]:
    """Characters each id stands for (word boundaries removed), in id order."""
    raise NotImplementedError

  def id_strings(self, lang: str) -> list[str]:
    """The text each id appends to a hypothesis, in id order, " " for a word boundary (blank:
    ""). Joining them over a collapsed CTC path gives the hypothesis up to surrounding and
    repeated spaces (what beam-search decoders build hypotheses from)."""
    raise NotImplementedError


class CharTokenizer(Tokenizer):
  """Character vocabulary, shared by all languages or one per language.

  Ids: 0 blank, 1 unk, 2 the word separator `space_symbol`, then the characters in code point
  order. With `per_language=True` each language has its own id table (e.g. for per-language CTC
  heads as in MMS); `vocab_size` is then the largest table and `lang_vocab_size(lang)` the
  language's own.
  """

  def __init__(self, vocabs: Mapping[str, Sequence[str]], space_symbol: str = "|",
               lang_chars: Mapping[str, str] | None = None):
    self.space_symbol = space_symbol
    self.lang_chars = dict(lang_chars or {})
    self.per_language = _SHARED not in vocabs
    self._id_to_sym = {lang: list(syms) for lang, syms in vocabs.items()}
    self._sym_to_id = {lang: {s: i for i, s in enumerate(syms)}
                       for lang, syms in self._id_to_sym.items()}

  @classmethod
  def build(cls, texts_by_lang: Mapping[str, Iterable[str]], per_language: bool = False,
            space_symbol: str = "|") -> CharTokenizer:
    """Builds the vocabulary from normalized texts (every character seen gets an id)."""
    charsets: dict[str, set[str]] = collections.defaultdict(set)
    lang_chars: dict[str, set[str]] = collections.defaultdict(set)
    for lang, texts in texts_by_lang.items():
      key = lang if per_language else _SHARED
      for text in texts:
        charsets[key].update(text)
        lang_chars[lang].update(text)
    for key, charset in charsets.items():
      charset.discard(" ")
      if space_symbol in charset:
        raise ValueError(f"space_symbol {space_symbol!r} occurs in the {key!r} texts; pick "
                         "another one or normalize the texts (mlasr.data.text.normalize).")
    if per_language:
      for lang in texts_by_lang:
        charsets.setdefault(lang, set())
    specials = ["<blank>", "<unk>", space_symbol]
    vocabs = {key: specials + sorted(cs) for key, cs in charsets.items()}
    if not vocabs:
      vocabs = {_SHARED: specials}
    return cls(vocabs, space_symbol, _chars_by_lang(lang_chars))

  def _key(self, lang: str) -> str:
    if not self.per_language:
      return _SHARED
    if lang not in self._sym_to_id:
      raise KeyError(f"No character vocabulary for language {lang!r}; this tokenizer knows "
                     f"{sorted(self._sym_to_id)}.")
    return lang

  @property
  def vocab_size(self) -> int:
    return max(len(v) for v in self._id_to_sym.values())

  def lang_vocab_size(self, lang: str) -> int:
    return len(self._id_to_sym[self._key(lang)])

  def symbols(self, lang: str) -> list[str]:
    """Symbols by id for `lang` (any lang for a shared vocabulary)."""
    return list(self._id_to_sym[self._key(lang)])

  def encode(self, text: str, lang: str) -> list[int]:
    table = self._sym_to_id[self._key(lang)]
    return [table.get(self.space_symbol if ch == " " else ch, UNK_ID) for ch in text]

  def decode(self, ids: Iterable[int], lang: str) -> str:
    syms = self._id_to_sym[self._key(lang)]
    out = []
    for i in ids:
      i = int(i)
      if i == BLANK_ID:
        continue
      sym = syms[i] if 0 <= i < len(syms) else UNK_SURFACE
      out.append(" " if sym == self.space_symbol else UNK_SURFACE if i == UNK_ID else sym)
    return "".join(out)

  def unknown_chars(self, text: str, lang: str) -> int:
    return sum(i == UNK_ID for i in self.encode(text, lang))

  def output_mask(self, langs: Sequence[str]) -> np.ndarray:
    if not self.per_language:
      return super().output_mask(langs)
    # Per-language tables: a language's ids are exactly 0 .. lang_vocab_size - 1.
    return np.arange(self.vocab_size)[None, :] < np.array(
        [[self.lang_vocab_size(lang)] for lang in langs])

  def _surfaces(self, lang: str) -> list[str]:
    return ["" if s == self.space_symbol else s for s in self._id_to_sym[self._key(lang)]]

  def id_strings(self, lang: str) -> list[str]:
    syms = self._id_to_sym[self._key(lang)]
    return ["" if i == BLANK_ID else UNK_SURFACE if i == UNK_ID else
            " " if s == self.space_symbol else s for i, s in enumerate(syms)]

  def extended_with(self, texts_by_lang: Mapping[str, Sequence[str]]) -> CharTokenizer:
    """Per-language vocabularies: a new language gets its own table (MMS: a new language
    brings its own vocabulary and head); existing tables are untouched."""
    if self.per_language:
      for lang, texts in texts_by_lang.items():
        if lang not in self._id_to_sym:
          table = CharTokenizer.build({lang: texts}, per_language=True,
                                      space_symbol=self.space_symbol)._id_to_sym[lang]
          if len(table) > self.vocab_size:
            raise ValueError(
                f"Language {lang!r} needs {len(table)} symbols but the model's per-language "
                f"heads have {self.vocab_size} outputs; train the multilingual model with "
                "this language included, or with a shared vocabulary.")
          self._id_to_sym[lang] = table
          self._sym_to_id[lang] = {s: i for i, s in enumerate(table)}
    return super().extended_with(texts_by_lang)

  def save(self, directory: str) -> None:
    fileio.makedirs(directory)
    config = {"type": "char", "space_symbol": self.space_symbol, "per_language": self.per_language,
              "vocabs": self._id_to_sym, "lang_chars": self.lang_chars}
    _write_json(fileio.join(directory, CONFIG_FILE), config)

  @classmethod
  def load(cls, directory: str) -> CharTokenizer:
    config = _read_config(directory, "char")
    return cls(config["vocabs"], config["space_symbol"], config.get("lang_chars"))


class SentencePieceTokenizer(Tokenizer):
  """One SentencePiece model shared by all languages (`lang` is accepted and ignored)."""

  def __init__(self, model_proto: bytes, config: Mapping[str, Any] | None = None):
    self._proto = model_proto
    self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
    self.config = dict(config or {})
    self.lang_chars = self.config.get("lang_chars", {})
    if self._sp.piece_to_id("<blank>") != BLANK_ID or self._sp.unk_id() != UNK_ID:
      raise ValueError("SentencePiece model must have <blank> at id 0 and <unk> at id 1; train "
                       "it with SentencePieceTokenizer.train.")

  @classmethod
  def train(cls, texts_by_lang: Mapping[str, Sequence[str]], alpha: float, vocab_size: int,
            out_dir: str, model_type: str = "unigram", seed: int = 0) -> SentencePieceTokenizer:
    """Trains a shared model on temperature-balanced, already normalized text.

    Language l contributes round(N * p_l) sentences, N = total sentences and p_l ∝ n_l^alpha
    (alpha=1 natural, 0 uniform): whole copies of its sentences plus a seeded sample without
    replacement for the remainder. Every character in any input text is a required character,
    so it is representable even if sampling left it out. Training is single-threaded and
    seeded, so the same inputs give the same model bytes.

    Args:
      texts_by_lang: normalized sentences per language.
      alpha: sampling temperature exponent.
      vocab_size: requested vocabulary size incl. <blank> and <unk>; may end lower for tiny
        corpora (hard_vocab_limit=False), the actual size is `vocab_size` of the result.
      out_dir: where tokenizer.json and spm.model are written.
      model_type: "unigram" or "bpe".
      seed: sampling and SentencePiece seed.
    """
    texts_by_lang = {l: [t for t in ts if t.strip()] for l, ts in texts_by_lang.items()}
    sizes = {l: len(ts) for l, ts in texts_by_lang.items() if ts}
    if not sizes:
      raise ValueError("SentencePieceTokenizer.train got no non-empty text for any language "
                       f"({sorted(texts_by_lang)}).")
    rng = np.random.default_rng(seed)
    weights = language_weights(sizes, alpha)
    total = sum(sizes.values())
    corpus, counts = [], {}
    for lang in sorted(sizes):
      texts, want = texts_by_lang[lang], max(1, round(total * weights[lang]))
      copies, rest = divmod(want, len(texts))
      picked = texts * copies + [texts[i] for i in sorted(rng.choice(len(texts), rest, False))]
      corpus.extend(picked)
      counts[lang] = len(picked)
    corpus = [corpus[i] for i in rng.permutation(len(corpus))]
    required = sorted({ch for ts in texts_by_lang.values() for t in ts for ch in t} - {" "})
    if vocab_size < len(required) + 2:
      raise ValueError(f"vocab_size={vocab_size} is below the {len(required)} distinct characters "
                       "+ <blank> + <unk> of the training text; raise vocab_size to at least "
                       f"{len(required) + 2}.")
    max_bytes = max(len(t.encode("utf-8")) for t in corpus)
    spm.set_random_generator_seed(seed)
    writer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=writer, model_type=model_type,
        vocab_size=vocab_size, character_coverage=1.0, required_chars="".join(required),
        pad_id=BLANK_ID, pad_piece="<blank>", unk_id=UNK_ID, bos_id=-1, eos_id=-1,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        hard_vocab_limit=False, num_threads=1, input_sentence_size=0,
        shuffle_input_sentence=False, max_sentence_length=max(4192, max_bytes + 1),
        minloglevel=2)
    config = {"type": "sentencepiece", "model_file": SPM_FILE, "alpha": alpha,
              "requested_vocab_size": vocab_size, "model_type": model_type, "seed": seed,
              "sentences_per_language": sizes, "sampled_sentences_per_language": counts,
              "lang_chars": _chars_by_lang({l: {ch for t in ts for ch in t}
                                            for l, ts in texts_by_lang.items()})}
    tok = cls(writer.getvalue(), config)
    tok.save(out_dir)
    logging.info("SentencePiece %s: %d pieces, sampled %s -> %s", model_type, tok.vocab_size,
                 sizes, out_dir)
    return tok

  @property
  def vocab_size(self) -> int:
    return self._sp.get_piece_size()

  @property
  def model_proto(self) -> bytes:
    return self._proto

  def encode(self, text: str, lang: str) -> list[int]:
    del lang
    return self._sp.encode(text, out_type=int)

  def decode(self, ids: Iterable[int], lang: str) -> str:
    del lang
    ids = [int(i) for i in ids if int(i) != BLANK_ID]
    # Out-of-range ids (a head larger than the vocabulary) decode as unknown.
    return self._sp.decode([i if i < self.vocab_size else UNK_ID for i in ids])

  def _surfaces(self, lang: str) -> list[str]:
    del lang
    return [self._sp.id_to_piece(i).replace("\u2581", "") for i in range(self.vocab_size)]

  def id_strings(self, lang: str) -> list[str]:
    del lang
    return ["" if i == BLANK_ID else UNK_SURFACE if i == UNK_ID else
            self._sp.id_to_piece(i).replace("\u2581", " ") for i in range(self.vocab_size)]

  def unknown_chars(self, text: str, lang: str) -> int:
    del lang
    proto = self._sp.encode(text, return_type="proto")
    return sum(len(p.surface) for p in proto.pieces if p.id == UNK_ID)

  def save(self, directory: str) -> None:
    # spm.model before tokenizer.json: a reader that sees tokenizer.json (another host
    # sharing a gs:// workdir) finds the model complete. SentencePiece itself never opens a
    # path here: the model goes in and out as bytes (model_proto).
    fileio.makedirs(directory)
    fileio.write_bytes(fileio.join(directory, SPM_FILE), self._proto)
    _write_json(fileio.join(directory, CONFIG_FILE),
                {**self.config, "type": "sentencepiece", "model_file": SPM_FILE,
                 "vocab_size": self.vocab_size})

  @classmethod
  def load(cls, directory: str) -> SentencePieceTokenizer:
    config = _read_config(directory, "sentencepiece")
    return cls(fileio.read_bytes(fileio.join(directory, config.get("model_file", SPM_FILE))),
               config)


def load_tokenizer(directory: str) -> Tokenizer:
  """Loads whichever tokenizer `directory` holds (as written by `save`)."""
  kind = _read_config(directory)["type"]
  classes = {"char": CharTokenizer, "sentencepiece": SentencePieceTokenizer}
  if kind not in classes:
    raise ValueError(f"{fileio.join(directory, CONFIG_FILE)}: unknown tokenizer type {kind!r}; "
                     f"expected one of {sorted(classes)}.")
  return classes[kind].load(directory)


def build_tokenizer(kind: str, texts_by_lang: Mapping[str, Sequence[str]], out_dir: str, *,
                    per_language: bool = False, vocab_size: int = 256, alpha: float = 0.5,
                    seed: int = 0) -> Tokenizer:
  """Builds a "char" or "sentencepiece" tokenizer from normalized texts and saves it to out_dir.

  Mirrors config.tokenizer (kind, per_language, vocab_size, alpha); `load_tokenizer(out_dir)`
  reads it back.
  """
  if kind == "char":
    tok = CharTokenizer.build(texts_by_lang, per_language=per_language)
    tok.save(out_dir)
    return tok
  if kind == "sentencepiece":
    return SentencePieceTokenizer.train(texts_by_lang, alpha, vocab_size, out_dir, seed=seed)
  raise ValueError(f"Unknown tokenizer kind {kind!r}; use 'char' or 'sentencepiece'.")


def tokenizer_stats(tokenizer: Tokenizer,
                    texts_by_lang: Mapping[str, Sequence[str]]) -> dict[str, dict[str, float]]:
  """Per-language tokens per character and unknown rates on normalized texts.

  Returns {lang: {"chars", "tokens", "tokens_per_char", "unk_chars", "unk_rate",
  "unk_tokens", "unk_token_rate"}}; characters include spaces, `unk_rate` is the fraction of
  characters that map to <unk> (comparable across tokenizers), `unk_token_rate` the fraction of
  tokens that are <unk>. Rates are nan for a language with no text.
  """
  out = {}
  for lang, texts in texts_by_lang.items():
    n_chars = n_tokens = unk_chars = unk_tokens = 0
    for text in texts:
      ids = tokenizer.encode(text, lang)
      n_chars += len(text)
      n_tokens += len(ids)
      unk_tokens += sum(i == UNK_ID for i in ids)
      unk_chars += tokenizer.unknown_chars(text, lang)
    out[lang] = {"chars": n_chars, "tokens": n_tokens, "unk_chars": unk_chars,
                 "unk_tokens": unk_tokens,
                 "tokens_per_char": n_tokens / n_chars if n_chars else float("nan"),
                 "unk_rate": unk_chars / n_chars if n_chars else float("nan"),
                 "unk_token_rate": unk_tokens / n_tokens if n_tokens else float("nan")}
  return out


def _chars_by_lang(chars: Mapping[str, set[str]]) -> dict[str, str]:
  """{lang: sorted characters of its text, space excluded} as saved in tokenizer.json."""
  return {lang: "".join(sorted(set(cs) - {" "})) for lang, cs in sorted(chars.items())}


def _write_json(path: str, obj: Any) -> None:
  with fileio.open(path, "w", encoding="utf-8") as f:
    json.dump(obj, f, ensure_ascii=False, indent=1, sort_keys=True)
    f.write("\n")


def _read_config(directory: str, expected_type: str | None = None) -> dict[str, Any]:
  path = fileio.join(directory, CONFIG_FILE)
  if not fileio.exists(path):
    raise FileNotFoundError(f"{path} not found: not a tokenizer directory (write one with "
                            "Tokenizer.save or SentencePieceTokenizer.train).")
  with fileio.open(path, encoding="utf-8") as f:
    config = json.load(f)
  if expected_type is not None and config.get("type") != expected_type:
    raise ValueError(f"{path} holds a {config.get('type')!r} tokenizer, not {expected_type!r}; "
                     "use mlasr.data.tokenizer.load_tokenizer.")
  return config
