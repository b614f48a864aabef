"""Configs: one base per task, defaults stated once, old runs' configs still load."""
import json
import os

import pytest

from mlasr import config_lib, masking


def _json(config) -> dict:
  return json.loads(config.to_json_best_effort(sort_keys=True))


def test_each_task_carries_only_the_fields_it_reads():
  ctc, hubert, lid = (config_lib.base_config(t) for t in ("ctc", "hubert", "lid"))
  assert "tokenizer" in ctc and "tokenizer" not in hubert and "tokenizer" not in lid
  assert "finetune_masking" in ctc.model and "masking" not in ctc.model
  assert "masking" in hubert.model and "head" not in hubert.model and "adapters" not in lid.model
  assert lid.model.pooling == "stats" and "label_rate" not in lid.model
  # Fine-tuning masking is off by default; pretraining masking is fairseq HuBERT's 0.8 / 10.
  assert ctc.model.finetune_masking.mask_prob == 0.0
  assert hubert.model.masking.mask_prob == masking.MaskingConfig().mask_prob == 0.8
  assert (ctc.data.long_clips, hubert.data.long_clips, lid.data.long_clips) == (
      "drop", "crop", "crop")
  with pytest.raises(ValueError, match="config.task='asr'.*'ctc', 'hubert', 'lid'"):
    config_lib.base_config("asr")


def test_a_run_saved_before_fields_existed_loads_with_their_defaults(tmp_path):
  """Fields added after a run was saved take base_config's defaults; what it saved wins."""
  saved = _json(config_lib.base_config("ctc"))
  for key in ("prng_impl", "accum_steps", "mesh"):
    del saved[key]
  del saved["data"]["augment"], saved["data"]["source_alpha"]
  saved["model"]["finetune_masking"] = {"mask_prob": 0.1, "mask_length": 5}  # a partial block
  saved["optim"]["lr"] = 3e-4
  saved["imported_from"] = "facebook/mms-1b-all"  # keys only the run has are kept
  (tmp_path / "config.json").write_text(json.dumps(saved))

  loaded = config_lib.load_config(str(tmp_path))
  expected = config_lib.base_config("ctc")
  expected.optim.lr = 3e-4
  expected.model.finetune_masking.update(mask_prob=0.1, mask_length=5)
  expected.imported_from = "facebook/mms-1b-all"
  assert _json(loaded) == _json(expected)
  assert loaded.model.finetune_masking.min_masks == 2  # filled in, not MaskingConfig's own


def test_the_saved_task_picks_the_base(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps({"task": "lid", "model": {"layer": 3}}))
  loaded = config_lib.load_config(str(tmp_path))
  assert loaded.model.layer == 3 and loaded.model.pooling == "stats"
  assert "tokenizer" not in loaded
  (tmp_path / "config.json").write_text(json.dumps({"task": "tts"}))
  with pytest.raises(ValueError, match=r"config\.json: task='tts' is unknown"):
    config_lib.load_config(str(tmp_path))


def test_parse_arg_types_and_typos():
  arg = config_lib.parse_arg("steps=20,lr=1e-3,name=x,flag", steps=1, lr=0.1, name="", flag=False)
  assert (arg.steps, arg.lr, arg.name, arg.flag) == (20, 1e-3, "x", True)
  with pytest.raises(ValueError, match="Unknown config arg 'stpes'"):
    config_lib.parse_arg("stpes=3", steps=1)
  with pytest.raises(ValueError, match="must be true/false"):
    config_lib.parse_arg("flag=maybe", flag=False)


def test_compilation_cache_is_turned_on_once_and_a_given_one_is_kept(tmp_path):
  import jax  # pylint: disable=g-import-not-at-top
  given = jax.config.jax_compilation_cache_dir  # the test session's (conftest.py)
  min_time = jax.config.jax_persistent_cache_min_compile_time_secs
  try:
    config_lib.enable_compilation_cache(str(tmp_path / "other"))
    assert jax.config.jax_compilation_cache_dir == given  # a cache already set is kept
    jax.config.update("jax_compilation_cache_dir", None)
    config_lib.enable_compilation_cache("")
    assert jax.config.jax_compilation_cache_dir is None  # "" leaves it off
    config_lib.enable_compilation_cache("~/run_cache")
    assert jax.config.jax_compilation_cache_dir == os.path.expanduser("~/run_cache")
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 1.0
  finally:
    jax.config.update("jax_compilation_cache_dir", given)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_time)
