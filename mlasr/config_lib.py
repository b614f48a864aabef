"""Config helpers in the big_vision style: `get_config(arg)` in `experiments/<name>.py`.

`--config experiments/demo_ctc.py:root=/data/demo,steps=2000 --config.optim.lr=1e-3`
reaches `get_config("root=/data/demo,steps=2000")`; `parse_arg` turns that string into a
ConfigDict with types taken from the defaults.
"""
from __future__ import annotations

import json
import os

import ml_collections


def parse_arg(arg: str | None, lazy: bool = False, **defaults) -> ml_collections.ConfigDict:
  """Parses "a=1,b=x,flag" into a ConfigDict typed like `defaults`.

  A bare key means True. Unknown keys are an error unless `lazy`, so a typo in a command
  line never silently falls back to a default.
  """
  out = ml_collections.ConfigDict(dict(defaults))
  if not arg:
    return out
  for item in arg.split(","):
    if not item:
      continue
    key, _, value = item.partition("=")
    if key not in defaults and not lazy:
      raise ValueError(f"Unknown config arg {key!r} in {arg!r}; known: {sorted(defaults)}")
    default = defaults.get(key)
    if not _:
      out[key] = True
    elif isinstance(default, bool):
      if value.lower() not in ("true", "false", "1", "0"):
        raise ValueError(f"Config arg {key}={value!r} must be true/false.")
      out[key] = value.lower() in ("true", "1")
    elif default is None or isinstance(default, str):
      out[key] = value
    else:
      out[key] = type(default)(value)
  return out


def save_config(config: ml_collections.ConfigDict, workdir: str, name: str = "config.json"):
  """Writes the resolved config next to the results; returns the path."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, name)
  with open(path, "w") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  return path


def load_config(workdir: str, name: str = "config.json") -> ml_collections.ConfigDict:
  with open(os.path.join(workdir, name)) as f:
    return ml_collections.ConfigDict(json.load(f))
