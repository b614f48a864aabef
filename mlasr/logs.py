"""Keeps library chatter out of the user's terminal: the command-line tools log through absl,
and at INFO orbax writes dozens of lines per checkpoint, TFDS a line per split, shard and
dataset it opens, Beam a line per worker channel and stage, and JAX's backend probe one line
per missing platform (libtpu)."""
from __future__ import annotations

import logging as std_logging

from absl import logging

_CHATTY = ("/orbax/", "/tensorflow_datasets/", "/jax/_src/xla_bridge.py", "/apache_beam/")
# Warnings that say nothing to act on: TFDS warns "Using custom data configuration" for every
# dataset mlasr prepares, since each (corpus, language) is a named BuilderConfig by design.
_NOT_ACTIONABLE = (("/tensorflow_datasets/", "Using custom data configuration"),)


class QuietLibraries(std_logging.Filter):
  """Drops INFO (and lower) records logged from the libraries in `_CHATTY`, and the
  warnings in `_NOT_ACTIONABLE`; other warnings pass."""

  def filter(self, record):
    if any(lib in record.pathname and str(record.msg).startswith(text)
           for lib, text in _NOT_ACTIONABLE):
      return False
    return record.levelno >= std_logging.WARNING or not any(
        lib in record.pathname for lib in _CHATTY)


def quiet_libraries() -> None:
  """Installs `QuietLibraries` on absl's handler once per process (call it before JAX starts
  its backends, so the backend probe is filtered too)."""
  handler = logging.get_absl_handler()
  if not any(isinstance(f, QuietLibraries) for f in handler.filters):
    handler.addFilter(QuietLibraries())
