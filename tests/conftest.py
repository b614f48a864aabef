"""Shared pytest fixtures: a tiny synthetic benchmark built once per test session."""

from __future__ import annotations

import os
import pathlib

import pytest

# The suite is compile-bound on CPU (tiny models, a few steps each): LLVM without its
# optimisation passes took a group of 8 training tests from 172 s to 114 s in one measured
# pair of runs. Set before any test imports jax, and inherited by the processes tests start.
# Correctness checks do not depend on it; speed is measured in benchmarks/, without it.
FAST_XLA = "--xla_backend_optimization_level=0"
if FAST_XLA not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_XLA}".strip()


@pytest.fixture(scope="session")
def tiny_benchmark(tmp_path_factory) -> pathlib.Path:
  """Root of a built `tiny` preset (Common Voice en/ru/hi + VoxPopuli cs), seed 0.

  The first session on a machine also fetches the Debian text packages into $MLASR_CACHE.
  """
  from data_prep import synth_benchmark  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("tiny_benchmark")
  synth_benchmark.build("tiny", root, seed=0, workers=2, progress=False)
  return root


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> tuple[str, tuple[str, ...]]:
  """(root, sources) of a seconds-to-build corpus: CV hi/ru + VoxPopuli it, clips of 0.3-2.6 s.

  Shared by the training tests (tests/test_train.py, tests/test_preemption.py); session scope
  so its TFDS datasets are prepared once, by whichever test trains first.
  """
  import corpus_fixture  # pylint: disable=g-import-not-at-top
  root = str(tmp_path_factory.mktemp("corpus"))
  corpus_fixture.make_corpus(root)
  return root, ("commonvoice:hi", "commonvoice:ru", "voxpopuli:it")


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
  """One persistent XLA cache for the session, as `make demo` uses one across runs.

  Many tests train the same tiny shapes several times (straight, preempted, resumed); with
  the cache only the first run compiles. Tests that must see a cold compile set their own.
  """
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  yield


@pytest.fixture(scope="session")
def unlabelled_corpus(small_corpus) -> tuple[str, dict[str, float]]:
  """(root, {recording: seconds}): small_corpus's root plus unlabeled long recordings in the
  VoxPopuli unlabelled_data layout and audio_dir trees/manifests (corpus_fixture.UNLABELLED)."""
  import corpus_fixture  # pylint: disable=g-import-not-at-top
  root = small_corpus[0]
  return root, corpus_fixture.make_unlabelled(root)
