"""The import graph has no upward edges (issue 12).

Every module under mlasr/ (and data_prep/) is parsed with `ast`; every import counts, also
those inside functions. Forbidden:
  models   -> targets, tasks, evaluate, evaluators
  targets  -> models (both build on the neutral mlasr.features, which imports neither)
  tasks    -> evaluate
  data     -> models
  mlasr.*  -> data_prep, experiments, papers
  data_prep -> mlasr.evaluate (feature extraction reads checkpoints through mlasr.checkpoint)
"""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (importing package, imported package): both dotted prefixes, matched on whole components.
FORBIDDEN = [
    ("mlasr.models", "mlasr.targets"),
    ("mlasr.models", "mlasr.tasks"),
    ("mlasr.models", "mlasr.evaluate"),
    ("mlasr.models", "mlasr.evaluators"),
    ("mlasr.targets", "mlasr.models"),
    ("mlasr.features", "mlasr.models"),
    ("mlasr.features", "mlasr.targets"),
    ("mlasr.tasks", "mlasr.evaluate"),
    ("mlasr.data", "mlasr.models"),
    ("mlasr", "data_prep"),
    ("mlasr", "experiments"),
    ("mlasr", "papers"),
    ("data_prep", "mlasr.evaluate"),
]


def _within(name: str, package: str) -> bool:
  return name == package or name.startswith(package + ".")


def module_name(path: str) -> str:
  rel = os.path.relpath(path, ROOT)[:-len(".py")].split(os.sep)
  if rel[-1] == "__init__":
    rel = rel[:-1]
  return ".".join(rel)


def imported_names(source: str, module: str, is_package: bool = False) -> set[str]:
  """Every module (or module.attribute) `source` imports, anywhere in the file.

  `from a.b import c` yields both "a.b" and "a.b.c" (c may be a submodule); relative imports
  are resolved against `module`.
  """
  out = set()
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      out.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = module.split(".")
        parts = parts if is_package else parts[:-1]
        parts = parts[:len(parts) - (node.level - 1)]
        base = ".".join(parts + ([base] if base else []))
      out.add(base)
      out.update(f"{base}.{alias.name}" for alias in node.names)
  return out


def violations(module: str, names) -> list[str]:
  return sorted(f"{module} imports {name} ({src} -> {dst})" for name in names
                for src, dst in FORBIDDEN if _within(module, src) and _within(name, dst))


def _modules():
  for top in ("mlasr", "data_prep"):
    for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
      for f in sorted(files):
        if f.endswith(".py"):
          yield os.path.join(dirpath, f)


def test_checker_sees_function_local_and_relative_imports():
  src = "def f():\n  from mlasr.targets import align\n  from ..tasks import ctc\n"
  names = imported_names(src, "mlasr.models.encoder")
  assert {"mlasr.targets.align", "mlasr.tasks.ctc"} <= names
  assert violations("mlasr.models.encoder", names) == [
      "mlasr.models.encoder imports mlasr.targets (mlasr.models -> mlasr.targets)",
      "mlasr.models.encoder imports mlasr.targets.align (mlasr.models -> mlasr.targets)",
      "mlasr.models.encoder imports mlasr.tasks (mlasr.models -> mlasr.tasks)",
      "mlasr.models.encoder imports mlasr.tasks.ctc (mlasr.models -> mlasr.tasks)"]
  # mlasr.evaluators is not mlasr.evaluate: tasks may use the evaluators.
  assert not violations("mlasr.tasks.ctc", {"mlasr.evaluators.asr", "mlasr.evaluators"})
  assert violations("mlasr.tasks.ctc", imported_names("from mlasr import evaluate", "x"))


def test_no_upward_imports():
  paths = list(_modules())
  assert len(paths) > 40
  found = []
  for path in paths:
    with open(path, encoding="utf-8") as f:
      source = f.read()
    module = module_name(path)
    found += violations(module, imported_names(source, module, path.endswith("__init__.py")))
  if found:
    pytest.fail("Upward imports:\n" + "\n".join(found))
