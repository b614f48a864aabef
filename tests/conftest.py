"""Shared pytest fixtures: a tiny synthetic benchmark built once per test session."""

from __future__ import annotations

import pathlib

import pytest


@pytest.fixture(scope="session")
def tiny_benchmark(tmp_path_factory) -> pathlib.Path:
  """Root of a built `tiny` preset (Common Voice en/ru/hi + VoxPopuli cs), seed 0.

  The first session on a machine also fetches the Debian text packages into $MLASR_CACHE.
  """
  from data_prep import synth_benchmark  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("tiny_benchmark")
  synth_benchmark.build("tiny", root, seed=0, workers=2, progress=False)
  return root
