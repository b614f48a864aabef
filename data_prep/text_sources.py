"""Natural sentences per language from Debian packages, with their source and license.

The packages (fortunes, LibreOffice/Firefox translations, translated man pages) are fetched
with `apt-get download` into `$MLASR_CACHE/debs` (default ~/.cache/mlasr), unpacked with
`dpkg -x`, and the filtered sentences of each language are cached in
`$MLASR_CACHE/text/<version>/<lang>.tsv` (sentence, source, license) so later builds are instant.
See shared/reference/TEXT_SOURCES.md for where the text sits inside each package.
"""

from __future__ import annotations

import collections
import dataclasses
import fcntl
import gettext
import gzip
import html
import os
import pathlib
import re
import subprocess
import tempfile
import unicodedata
import zipfile
from collections.abc import Iterable, Iterator

from mlasr.data import languages

CACHE_VERSION = "v1"
MIN_WORDS, MAX_WORDS = 3, 20
FINAL_PUNCT = ".!?।॥"


@dataclasses.dataclass(frozen=True)
class Sentence:
  text: str
  source: str    # Debian package it came from
  license: str


@dataclasses.dataclass(frozen=True)
class Source:
  package: str
  kind: str      # fortunes | manpages | lo_l10n | firefox | lo_help
  license: str
  arg: str = ""  # kind-specific: locale dir, file list, ...
  extra: bool = False  # large package, only fetched when the small ones give too few sentences


_EN_FORTUNES = ("computers cookie definitions education food humorists kids law literature love "
                "magic medicine men-women miscellaneous people pets platitudes politics pratchett "
                "riddles science sports wisdom work fortunes paradoxum goedel")
_MPL, _GPL3, _GPL2 = "MPL-2.0", "GPL-3+", "GPL-2+"

SOURCES: dict[str, list[Source]] = {
    "en": [Source("fortunes", "fortunes", "BSD-3-Clause", _EN_FORTUNES),
           Source("fortunes-min", "fortunes", "BSD-3-Clause", _EN_FORTUNES),
           Source("libreoffice-help-en-us", "lo_help", _MPL, "en-US", extra=True)],
    "de": [Source("fortunes-de", "fortunes", _GPL2), Source("manpages-de", "manpages", _GPL3, "de"),
           Source("libreoffice-help-de", "lo_help", _MPL, "de", extra=True)],
    "fr": [Source("manpages-fr", "manpages", _GPL3, "fr"),
           Source("libreoffice-help-fr", "lo_help", _MPL, "fr")],
    "es": [Source("fortunes-es", "fortunes", "public-domain (presumed)"),
           Source("manpages-es", "manpages", _GPL3, "es"),
           Source("libreoffice-help-es", "lo_help", _MPL, "es", extra=True)],
    "it": [Source("fortunes-it", "fortunes", "public-domain"),
           Source("manpages-it", "manpages", _GPL3, "it"),
           Source("libreoffice-help-it", "lo_help", _MPL, "it", extra=True)],
    "pt": [Source("fortunes-br", "fortunes", _GPL2),
           Source("manpages-pt-br", "manpages", _GPL3, "pt_BR")],
    "ca": [Source("libreoffice-l10n-ca", "lo_l10n", _MPL, "ca"),
           Source("libreoffice-help-ca", "lo_help", _MPL, "ca", extra=True)],
    "fi": [Source("manpages-fi", "manpages", _GPL3, "fi"),
           Source("libreoffice-l10n-fi", "lo_l10n", _MPL, "fi"),
           Source("libreoffice-help-fi", "lo_help", _MPL, "fi", extra=True)],
    "cs": [Source("fortunes-cs", "fortunes", _GPL3, "cs"),
           Source("manpages-cs", "manpages", _GPL3, "cs"),
           Source("libreoffice-help-cs", "lo_help", _MPL, "cs", extra=True)],
    "pl": [Source("fortunes-pl", "fortunes", _GPL2),
           Source("manpages-pl", "manpages", _GPL3, "pl")],
    "ru": [Source("fortunes-ru", "fortunes", _GPL2), Source("manpages-ru", "manpages", _GPL3, "ru"),
           Source("libreoffice-help-ru", "lo_help", _MPL, "ru", extra=True)],
    "uk": [Source("libreoffice-l10n-uk", "lo_l10n", _MPL, "uk"),
           Source("manpages-uk", "manpages", _GPL3, "uk")],
    "bg": [Source("fortunes-bg", "fortunes", _GPL2)],
    "hi": [Source("libreoffice-l10n-hi", "lo_l10n", _MPL, "hi"),
           Source("firefox-esr-l10n-hi-in", "firefox", _MPL),
           Source("libreoffice-help-hi", "lo_help", _MPL, "hi", extra=True)],
    "mr": [Source("libreoffice-l10n-mr", "lo_l10n", _MPL, "mr"),
           Source("firefox-esr-l10n-mr", "firefox", _MPL)],
    "te": [Source("libreoffice-l10n-te", "lo_l10n", _MPL, "te"),
           Source("firefox-esr-l10n-te", "firefox", _MPL)],
    "ta": [Source("libreoffice-l10n-ta", "lo_l10n", _MPL, "ta"),
           Source("firefox-esr-l10n-ta", "firefox", _MPL)],
    "bn": [Source("libreoffice-l10n-bn", "lo_l10n", _MPL, "bn"),
           Source("firefox-esr-l10n-bn", "firefox", _MPL)],
    "gu": [Source("libreoffice-l10n-gu", "lo_l10n", _MPL, "gu"),
           Source("firefox-esr-l10n-gu-in", "firefox", _MPL)],
    "kn": [Source("libreoffice-l10n-kn", "lo_l10n", _MPL, "kn"),
           Source("firefox-esr-l10n-kn", "firefox", _MPL)],
    "pa": [Source("libreoffice-l10n-pa-in", "lo_l10n", _MPL, "pa-IN"),
           Source("firefox-esr-l10n-pa-in", "firefox", _MPL)],
    "ml": [Source("libreoffice-l10n-ml", "lo_l10n", _MPL, "ml")],
    "ne": [Source("libreoffice-l10n-ne", "lo_l10n", _MPL, "ne")],
}

# Function words that mark an untranslated English sentence inside another Latin-script language
# (words that are also common words of the target languages, e.g. "a", "in", "to", "on", left out).
_ENGLISH_MARKERS = frozenset(
    "the and of is are you your this that with for be not was have can will from by an or which "
    "when what if all there their been has does should would it".split())
# Crude words, matched at word start (first group) or anywhere inside a word (second group).
_CRUDE_PREFIX = re.compile(
    r"\b(fuck|shit|cunt|cock|dick|pussy|whore|slut|bitch|asshole|nigg|fag|rape|"
    r"cazz|merd|stronz|puttan|vaffancul|fig[ao]\b|troi|"
    r"kurv|prdel|hovn|píč|čurák|mrd|šuk|"
    r"[её]б|бля|сук[аиу]|жоп|муда|говн|срат|трах|минет)", re.IGNORECASE)
_CRUDE_INFIX = re.compile(r"(пизд|хуй|хуё|хуе|хуя|бляд|залуп|пидор|пидар|шлюх|ебан|ебал|ебат|"
                          r"fuck|motherf)", re.IGNORECASE)
_CODE_CHARS = set('"<>[]{}()/\\_=*#@|~^$%&+`;')
_URL = re.compile(r"://|www\.|\.(com|org|net|html?)\b", re.IGNORECASE)
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?।॥])[\"'»”]?\s+")


def cache_root() -> pathlib.Path:
  return pathlib.Path(os.environ.get("MLASR_CACHE", "~/.cache/mlasr")).expanduser()


# ----------------------------------------------------------------------------------------------
# Filters
# ----------------------------------------------------------------------------------------------
def char_script(ch: str) -> str | None:
  """Unicode script of a letter or combining mark ('LATIN', 'DEVANAGARI', ...), else None."""
  if not unicodedata.category(ch)[0] in "LM":
    return None
  try:
    return unicodedata.name(ch).split()[0]
  except ValueError:
    return None


def reject_reason(text: str, lang: str) -> str | None:
  """Why `text` (already NFC, whitespace-collapsed) is not a usable sentence of `lang`, or None."""
  script = languages.script_of(lang).upper()
  words = text.split()
  if not MIN_WORDS <= len(words) <= MAX_WORDS:
    return "length"
  if text[-1] not in FINAL_PUNCT or text.endswith("..") or "…" in text:
    return "ending"
  if any(unicodedata.category(c) == "Nd" for c in text):
    return "digits"
  if _URL.search(text) or any(c in _CODE_CHARS for c in text):
    return "code"
  scripts = [s for s in map(char_script, text) if s]
  if not scripts:
    return "script"
  if sum(s == script for s in scripts) < 0.9 * len(scripts):
    return "script"
  if script != "LATIN" and re.search(r"[A-Za-z]", text):
    return "latin_in_nonlatin"
  if script in ("LATIN", "CYRILLIC"):
    first = next(c for c in text if char_script(c))
    if not first.isupper():
      return "lowercase_start"
  if script == "LATIN" and lang != "en":
    lowered = [w.strip(".,!?;:'’\"«»").lower() for w in words]
    hits = sum(w in _ENGLISH_MARKERS for w in lowered)
    if hits >= 2 and hits >= 0.25 * len(words):
      return "english"
  if _CRUDE_PREFIX.search(text) or _CRUDE_INFIX.search(text):
    return "crude"
  return None


_IT_ACCENT = re.compile(r"\b(\w+?)([aeiou])['’](?=[\s.,;:!?]|$)")
_IT_KEEP = {"po", "mo", "to", "di", "da", "fa", "sta", "va", "ne", "de", "be", "pe", "co", "ca"}


def fix_italian_accents(text: str) -> str:
  """fortunes-it writes accents as apostrophes (perche', e', piu'); keep real elisions (po')."""

  def repl(m: re.Match) -> str:
    stem, vowel = m.group(1), m.group(2)
    word = stem + vowel
    if word.lower() in _IT_KEEP:
      return m.group(0)
    if vowel == "e" and (stem.lower().endswith("ch") or word.lower() in {"ne", "se", "te"}):
      accented = "é"
    else:
      accented = {"a": "à", "e": "è", "i": "ì", "o": "ò", "u": "ù"}[vowel]
    return stem + accented

  text = re.sub(r"(?<![\w'])([EeAa])['’](?=\s)", lambda m: {"e": "è", "E": "È", "a": "à",
                                                          "A": "À"}[m.group(1)], text)
  return _IT_ACCENT.sub(repl, text)


def split_sentences(block: str) -> list[str]:
  """Normalises a paragraph (NFC, whitespace) and splits it into sentences."""
  block = unicodedata.normalize("NFC", block).replace("\u00a0", " ")
  block = re.sub(r"\s+", " ", block).strip()
  return [s.strip() for s in _SENTENCE_SPLIT.split(block) if s.strip()]


def filter_sentences(blocks: Iterable[str], lang: str,
                     counts: collections.Counter | None = None) -> Iterator[str]:
  """Sentences of `blocks` that pass `reject_reason`; rejections are counted by reason."""
  for block in blocks:
    if lang == "it":
      block = fix_italian_accents(block)
    for sent in split_sentences(block):
      reason = reject_reason(sent, lang)
      if counts is not None:
        counts[reason or "kept"] += 1
      if reason is None:
        yield sent


# ----------------------------------------------------------------------------------------------
# Package extraction
# ----------------------------------------------------------------------------------------------
def _read_text(path: pathlib.Path) -> str:
  data = path.read_bytes()
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError:
    return data.decode("latin-1")


def _fortunes(root: pathlib.Path, src: Source) -> Iterator[str]:
  base = root / "usr/share/games/fortunes"
  names = set(src.arg.split()) if src.arg and " " in src.arg else None
  for path in sorted(base.rglob("*")):
    rel = path.relative_to(base)
    # .u8 files and cz/ are symlinks to the same text; off/ holds the offensive collections.
    if path.is_symlink() or not path.is_file() or path.suffix in (".dat", ".u8"):
      continue
    if "off" in rel.parts or (src.arg and names is None and rel.parts[0] != src.arg):
      continue
    if names is not None and (len(rel.parts) != 1 or rel.name not in names):
      continue
    for entry in re.split(r"^%\s*$", _read_text(path), flags=re.MULTILINE):
      lines = [l for l in entry.splitlines() if not l.strip().startswith("--")]
      yield "\n".join(lines)


def _manpages(root: pathlib.Path, src: Source) -> Iterator[str]:
  for path in sorted((root / "usr/share/man" / src.arg).glob("man*/*.gz")):
    try:
      text = gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace")
    except (OSError, EOFError):
      continue
    para: list[str] = []
    verbatim = False
    for line in text.splitlines():
      if line.startswith((".nf", ".EX")):
        verbatim = True
      elif line.startswith((".fi", ".EE")):
        verbatim = False
      if line.startswith((".", "'")) or verbatim:
        if para:
          yield " ".join(para)
          para = []
        continue
      if "\\f" in line or "\\*" in line:  # option names / strings: keep the paragraph boundary
        if para:
          yield " ".join(para)
        para = []
        continue
      line = (line.replace("\\-", "-").replace("\\&", "").replace("\\(em", "—")
              .replace("\\(en", "–").replace("\\ ", " "))
      if "\\" in line:
        para = []
        continue
      para.append(line)
    if para:
      yield " ".join(para)


def _lo_l10n(root: pathlib.Path, src: Source) -> Iterator[str]:
  base = root / "usr/lib/libreoffice/program/resource" / src.arg / "LC_MESSAGES"
  for path in sorted(base.glob("*.mo")):
    with path.open("rb") as f:
      catalog = gettext.GNUTranslations(f)._catalog  # noqa: SLF001 (no public accessor)
    for key in sorted(catalog, key=str):
      value = catalog[key]
      if isinstance(value, str) and value and value != (key[0] if isinstance(key, tuple) else key):
        yield value.replace("~", "")


def _firefox(root: pathlib.Path, src: Source) -> Iterator[str]:
  for xpi in sorted(root.glob("usr/lib/firefox-esr/browser/extensions/langpack-*.xpi")):
    with zipfile.ZipFile(xpi) as z:
      for name in sorted(z.namelist()):
        if not name.endswith((".ftl", ".properties")):
          continue
        values: list[str] = []
        for line in z.read(name).decode("utf-8", errors="replace").splitlines():
          if line.lstrip().startswith("#"):
            continue
          m = re.match(r"^\s*\.?[\w.-]+\s*=\s*(.*)$", line)
          if m and not (line[:1].isspace() and values and not line.lstrip().startswith(".")):
            values.append(m.group(1))
          elif line[:1].isspace() and values:  # Fluent continuation line
            values[-1] += " " + line.strip()
        for value in values:
          if "{" not in value and "%" not in value:  # placeholders make unreadable sentences
            yield value


def _lo_help(root: pathlib.Path, src: Source) -> Iterator[str]:
  para = re.compile(r'<p[^>]*class="paragraph"[^>]*>(.*?)</p>', re.DOTALL)
  for path in sorted((root / "usr/share/libreoffice/help" / src.arg / "text").rglob("*.html")):
    for m in para.finditer(_read_text(path)):
      yield html.unescape(re.sub(r"<[^>]+>", "", m.group(1)))


_EXTRACTORS = {"fortunes": _fortunes, "manpages": _manpages, "lo_l10n": _lo_l10n,
               "firefox": _firefox, "lo_help": _lo_help}


def fetch_package(package: str, cache: pathlib.Path | None = None) -> pathlib.Path:
  """Downloads and unpacks Debian `package` once; returns the directory it was unpacked into."""
  cache = cache or cache_root()
  out = cache / "extracted" / package
  if out.is_dir():
    return out
  debs = cache / "debs"
  debs.mkdir(parents=True, exist_ok=True)
  with open(debs / ".lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent test sessions share the cache
    if out.is_dir():
      return out
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
      found = _apt_download(package, debs)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{package}-"))
    subprocess.run(["dpkg", "-x", str(found[-1]), str(tmp)], check=True)
    os.replace(tmp, out)
  return out


def _apt_download(package: str, debs: pathlib.Path) -> list[pathlib.Path]:
  for attempt in range(2):
    r = subprocess.run(["apt-get", "download", package], cwd=debs, capture_output=True, text=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if r.returncode == 0 and found:
      return found
    if attempt == 0 and ("nable to locate" in r.stderr or "has no installation candidate"
                         in r.stderr):
      subprocess.run(["apt-get", "update"], capture_output=True, check=False)  # fresh machine
      continue
    break
  raise RuntimeError(f"`apt-get download {package}` failed in {debs}: {r.stderr.strip()[-500:]}. "
                     "Run as root with network access to a Debian 12 mirror.")


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------
def extract_sentences(lang: str, min_sentences: int = 0,
                      counts: collections.Counter | None = None) -> list[Sentence]:
  """Fetches the packages of `lang` and returns its filtered, de-duplicated sentences."""
  if lang not in SOURCES:
    raise KeyError(f"no text sources for {lang!r}; languages with sources: "
                   f"{', '.join(sorted(SOURCES))}")
  seen: set[str] = set()
  out: list[Sentence] = []
  for src in SOURCES[lang]:
    if src.extra and len(out) >= min_sentences:
      continue
    root = fetch_package(src.package)
    for sent in filter_sentences(_EXTRACTORS[src.kind](root, src), lang, counts):
      key = sent.casefold()
      if key in seen:
        if counts is not None:
          counts["duplicate"] += 1
        continue
      seen.add(key)
      out.append(Sentence(sent, src.package, src.license))
  return out


def load_sentences(lang: str, min_sentences: int = 0) -> list[Sentence]:
  """Cached `extract_sentences`: the first call per language fetches, later calls read a TSV."""
  path = cache_root() / "text" / CACHE_VERSION / f"{lang}.tsv"
  if path.exists():
    sents = _read_tsv(path)
    used = {x.source for x in sents}
    if len(sents) >= min_sentences or all(s.package in used for s in SOURCES[lang] if s.extra):
      return sents  # enough, or already everything the sources can give
  sents = extract_sentences(lang, min_sentences)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.{os.getpid()}")
  with tmp.open("w", encoding="utf-8") as f:
    f.write("sentence\tsource\tlicense\n")
    for s in sents:
      f.write(f"{s.text}\t{s.source}\t{s.license}\n")
  os.replace(tmp, path)
  return sents


def _read_tsv(path: pathlib.Path) -> list[Sentence]:
  with path.open(encoding="utf-8") as f:
    header = f.readline().rstrip("\n").split("\t")
    if header != ["sentence", "source", "license"]:
      raise ValueError(f"{path}: unexpected header {header}; delete the file to rebuild it")
    return [Sentence(*line.rstrip("\n").split("\t")) for line in f if line.strip()]


def main() -> None:
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("langs", nargs="+")
  args = parser.parse_args()
  for lang in args.langs:
    counts: collections.Counter = collections.Counter()
    sents = extract_sentences(lang, counts=counts)
    by_src = collections.Counter(s.source for s in sents)
    print(f"{lang}: {len(sents)} sentences {dict(by_src)}; filter: {dict(counts)}")


if __name__ == "__main__":
  main()
