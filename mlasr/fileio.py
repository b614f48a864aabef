"""Run-folder I/O that works on a local disk and on a bucket (`--workdir gs://bucket/runs/x`).

Every file mlasr writes or reads under a workdir (config.json, metrics.jsonl, the tokenizer,
checkpoints, evaluation reports) goes through here or through Orbax, which takes gs:// paths
itself. Local paths keep the plain `os`/`open` calls mlasr always made; remote paths (any
`scheme://`) go through `etils.epath`, which reaches GCS through TensorFlow's gfile when
TensorFlow is installed and through gcsfs (fsspec) otherwise, as MaxText does. A remote path
is never `abspath`ed or `expanduser`ed: `os.path.abspath("gs://b/x")` is `<cwd>/gs:/b/x`, a
local folder named `gs:` that each pod worker would write its own copy into.

GCS has no folders (an object name holds the whole path) and no appends: `makedirs` is a
no-op there, and an append is a rewrite of the whole object (`MetricsWriter` keeps its lines
in memory for that). Tools that need a local file name (KenLM, sox) are not given remote
paths.

Datasets are different: array_record's C++ reader opens local files only (without
TensorFlow), so `config.data.root` / `data_dir` must be local or a gcsfuse mount of the
bucket (`require_local` says so).
"""
from __future__ import annotations

import builtins
import io
import logging
import os
import re
import uuid

from etils import epath

_REMOTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_remote(path) -> bool:
  """True for `gs://...` (or any other `scheme://...`) paths."""
  return bool(_REMOTE.match(os.fspath(path)))


def absolute(path, expanduser: bool = False) -> str:
  """`path` made absolute (after `~` expansion with `expanduser`); remote paths unchanged."""
  path = os.fspath(path)
  if is_remote(path):
    return path
  return os.path.abspath(os.path.expanduser(path) if expanduser else path)


def join(path, *names) -> str:
  """os.path.join, which is also right for `gs://bucket/x` (its separator is '/')."""
  return os.path.join(os.fspath(path), *names)


def makedirs(path) -> None:
  """os.makedirs(path, exist_ok=True); nothing to do on GCS (objects create their prefix)."""
  if is_remote(path):
    epath.Path(path).mkdir(parents=True, exist_ok=True)  # gcsfs: a no-op, creates no bucket
  else:
    os.makedirs(path, exist_ok=True)


def open(path, mode: str = "r", encoding: str = "utf-8"):  # pylint: disable=redefined-builtin
  """A file object for `path`: the builtin open locally, epath on a bucket.

  Text is UTF-8 in both cases (epath's fsspec backend would otherwise use the locale's
  encoding). Append mode exists only for local files: a GCS object cannot be appended to.
  """
  path = os.fspath(path)
  binary = "b" in mode
  if not is_remote(path):
    return builtins.open(path, mode, encoding=None if binary else encoding)
  if "a" in mode or "+" in mode:
    raise ValueError(f"{path}: mode {mode!r} is not supported on a bucket (objects are "
                     "written whole); rewrite the file instead")
  raw = epath.Path(path).open(mode if binary else mode.replace("t", "") + "b")
  return raw if binary else io.TextIOWrapper(raw, encoding=encoding)


def exists(path) -> bool:
  path = os.fspath(path)
  return epath.Path(path).exists() if is_remote(path) else os.path.exists(path)


def isfile(path) -> bool:
  path = os.fspath(path)
  return epath.Path(path).is_file() if is_remote(path) else os.path.isfile(path)


def isdir(path) -> bool:
  path = os.fspath(path)
  return epath.Path(path).is_dir() if is_remote(path) else os.path.isdir(path)


def listdir(path) -> list[str]:
  """Names (not paths) in `path`."""
  path = os.fspath(path)
  if is_remote(path):
    return [p.name for p in epath.Path(path).iterdir()]
  return os.listdir(path)


def glob(directory, pattern: str) -> list[str]:
  """Paths under `directory` matching `pattern` (glob syntax, relative), sorted."""
  directory = os.fspath(directory)
  if is_remote(directory):
    return sorted(os.fspath(p) for p in epath.Path(directory).glob(pattern))
  import glob as glob_lib  # pylint: disable=import-outside-toplevel
  return sorted(glob_lib.glob(os.path.join(directory, pattern)))


def read_text(path, encoding: str = "utf-8") -> str:
  with open(path, "r", encoding=encoding) as f:
    return f.read()


def read_bytes(path) -> bytes:
  with open(path, "rb") as f:
    return f.read()


def write_text(path, text: str, encoding: str = "utf-8") -> None:
  with open(path, "w", encoding=encoding) as f:
    f.write(text)


def write_bytes(path, data: bytes) -> None:
  with open(path, "wb") as f:
    f.write(data)


def check_writable(path) -> None:
  """Writes and deletes a uniquely named probe object in a remote folder (raises on failure;
  the local counterpart is config_lib.ensure_writable_dir's temporary file)."""
  probe = epath.Path(join(path, f".mlasr_write_check_{uuid.uuid4().hex}"))
  probe.write_bytes(b"")
  probe.unlink()


def require_local(path: str, setting: str) -> None:
  """Raises ValueError for a remote dataset path, saying to mount the bucket with gcsfuse."""
  if path and is_remote(path):
    raise ValueError(
        f"{setting}={path!r} is on a bucket, which cannot be read directly: the array_record "
        "reader (without TensorFlow) opens local files only. Mount the "
        "bucket with gcsfuse, e.g. `gcsfuse --implicit-dirs BUCKET /tmp/gcsfuse`, and point "
        f"the config at the mount ({setting}=/tmp/gcsfuse/...). Run folders (--workdir) can "
        "be gs:// paths.")


class _QuietGcsfs(logging.Filter):
  """Drops gcsfs's "Could not determine bucket type ... falling back to GCSFileSystem"
  warning: it comes once per bucket access when the hierarchical-namespace probe has no
  credentials for it (e.g. a local emulator) and changes nothing (plain GCS is used)."""

  def filter(self, record):
    return not str(record.msg).startswith("Could not determine bucket type")


def quiet_gcsfs() -> None:
  """Installs `_QuietGcsfs` on gcsfs's logger (once)."""
  logger = logging.getLogger("gcsfs")
  if not any(isinstance(f, _QuietGcsfs) for f in logger.filters):
    logger.addFilter(_QuietGcsfs())


quiet_gcsfs()
