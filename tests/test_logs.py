"""Library INFO chatter is dropped from absl's log; warnings and mlasr's own lines pass."""
import logging as std_logging

from absl import logging

from mlasr import logs


def _record(pathname: str, level: int) -> std_logging.LogRecord:
  return std_logging.LogRecord("x", level, pathname, 1, "msg", None, None)


def test_quiet_libraries_filter():
  quiet = logs.QuietLibraries()
  site = "/usr/lib/python3.11/site-packages"
  for chatty in (f"{site}/tensorflow_datasets/core/dataset_info.py",
                 f"{site}/orbax/checkpoint/checkpointer.py", f"{site}/jax/_src/xla_bridge.py"):
    assert not quiet.filter(_record(chatty, std_logging.INFO))
    assert quiet.filter(_record(chatty, std_logging.WARNING))
  assert quiet.filter(_record("/work/mlasr/train.py", std_logging.INFO))
  builder = f"{site}/tensorflow_datasets/core/dataset_builder.py"
  custom = _record(builder, std_logging.WARNING)
  custom.msg = "Using custom data configuration: %s"
  assert not quiet.filter(custom)  # every mlasr dataset is a named config: nothing to act on
  other = _record(builder, std_logging.WARNING)
  other.msg = "Dataset is using deprecated text encoder API"
  assert quiet.filter(other)
  assert quiet.filter(_record(f"{site}/jax/_src/compiler.py", std_logging.INFO))


def test_quiet_libraries_installs_once():
  handler = logging.get_absl_handler()
  logs.quiet_libraries()
  logs.quiet_libraries()
  assert sum(isinstance(f, logs.QuietLibraries) for f in handler.filters) == 1
