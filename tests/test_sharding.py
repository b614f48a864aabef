"""mlasr.sharding: rules -> specs, and sharded training equal to one device on 8 fake CPUs.

The 8-device checks run in a subprocess (this file as a script) because the fake device count
must be set before jax is imported, and pytest has imported jax already. The subprocess trains
the real CTC model with the real loss for a few steps under each preset and reports losses,
parameters and per-device bytes; the tests here compare them with a single-device run. It
also checkpoints states of one layout and resumes them on another (1 device -> fsdp x 8,
dp x 8 -> fsdp x 4 + tensor x 2) through mlasr.checkpoint, as a job moved to a new slice would.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
NUM_DEVICES = 8


def with_device_count(n: int) -> str:
  """The suite's XLA flags (tests/conftest.py) plus `n` fake CPU devices, for a subprocess."""
  return f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n}".strip()


RUNS = {  # name -> (preset, mesh)
    "single": ("fsdp", [("data", 1), ("fsdp", 1), ("tensor", 1)]),
    "dp": ("dp", [("data", -1), ("fsdp", 1), ("tensor", 1)]),
    "fsdp": ("fsdp", [("data", 1), ("fsdp", -1), ("tensor", 1)]),
    "fsdp_tp": ("fsdp_tp", [("data", 1), ("fsdp", -1), ("tensor", 2)]),
}
NUM_STEPS = 2


# ------------------------------------------------------------------------------------------
# Helpers shared with tests/test_multihost.py (they import jax lazily).
# ------------------------------------------------------------------------------------------
def tiny_build_fn(vocab_size: int = 12, seed: int = 0):
  """() -> (CTCModel, Optimizer): a small waveform HuBERT + CTC head, AdamW as in training."""
  from flax import nnx  # pylint: disable=import-outside-toplevel
  from mlasr import config_lib, optim  # pylint: disable=import-outside-toplevel
  from mlasr.models import ctc, encoder as encoder_lib  # pylint: disable=import-outside-toplevel

  enc = encoder_lib.get_config("tiny", frontend="waveform", conv_dim=(32, 32), conv_kernel=(10, 4),
                          conv_stride=(5, 4), d_model=64, num_layers=1, num_heads=4, ffn_dim=128,
                          pos_conv_kernel=8, pos_conv_groups=4, conv_module_kernel=0)
  opt_cfg = config_lib.base_config().optim
  opt_cfg.update(schedule="constant", lr=1e-3, clip_norm=1.0)

  def build():
    model = ctc.CTCModel(enc, vocab_size, 0.1, rngs=nnx.Rngs(params=seed, dropout=seed + 1))
    return model, nnx.Optimizer(model, optim.make_optimizer(opt_cfg, 10)[0], wrt=nnx.Param)

  return build


def fixed_batch(batch_size: int = 8, num_samples: int = 1600, num_labels: int = 6) -> dict:
  """A random but fixed batch in the mlasr.data.pipeline format, with some padding."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  audio_mask = np.ones((batch_size, num_samples), np.int32)
  audio_mask[1, num_samples * 3 // 4:] = 0
  label_mask = np.ones((batch_size, num_labels), np.int32)
  label_mask[2, num_labels - 2:] = 0
  example_mask = np.ones((batch_size,), np.int32)
  example_mask[-1] = 0
  return dict(audio=rng.normal(size=(batch_size, num_samples)).astype(np.float32),
              audio_mask=audio_mask,
              labels=rng.integers(1, 12, size=(batch_size, num_labels)).astype(np.int32) *
              label_mask, label_mask=label_mask,
              lang_id=np.zeros((batch_size,), np.int32), example_mask=example_mask)


def train_tiny(mesh_config, rules, batch: dict, num_steps: int, devices=None):
  """Born-sharded state, sharded update step, `num_steps` steps on `batch` (host-local rows).

  Returns (losses, graphdef, state, state_shardings, mesh, memory_analysis of the step).
  """
  import optax  # pylint: disable=import-outside-toplevel
  from mlasr import sharding, train  # pylint: disable=import-outside-toplevel
  from mlasr.tasks import ctc as ctc_task  # pylint: disable=import-outside-toplevel

  mesh = sharding.make_mesh(mesh_config, devices=devices)
  graphdef, state, shardings = sharding.create_sharded_state(tiny_build_fn(), rules, mesh)
  batch_sh = sharding.batch_sharding(mesh, rules)
  step_fn = sharding.shard_update_step(
      train.make_update_step(graphdef, ctc_task, optax.constant_schedule(1e-3), seed=0),
      shardings, batch_sh)
  device_batch = sharding.to_device(batch, batch_sh)
  compiled = step_fn.lower(state, device_batch, 0).compile()
  losses = []
  for step in range(num_steps):
    state, metrics = compiled(state, device_batch, step)
    losses.append(float(metrics["loss"]))
  return losses, graphdef, state, shardings, mesh, compiled.memory_analysis()


def param_arrays(graphdef, state) -> dict:
  """{path: global numpy array} of the model parameters (gathers across processes)."""
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

  params = nnx.state(nnx.merge(graphdef, state)[0], nnx.Param)
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  out = {}
  for path, leaf in flat:
    if not leaf.is_fully_addressable:
      leaf = multihost_utils.process_allgather(leaf, tiled=True)
    out[jax.tree_util.keystr(path)] = np.asarray(leaf)
  return out


# ------------------------------------------------------------------------------------------
# The 8-device subprocess.
# ------------------------------------------------------------------------------------------
def _subprocess_main(out_path: str):
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel
  from mlasr import sharding  # pylint: disable=import-outside-toplevel

  assert jax.device_count() == NUM_DEVICES, jax.devices()
  batch = fixed_batch()
  results, reference, trained = {}, None, {}
  for name, (preset, mesh_config) in RUNS.items():
    devices = jax.devices()[:1] if name == "single" else None
    rules = sharding.PRESETS[preset]
    losses, graphdef, state, shardings, mesh, memory = train_tiny(
        mesh_config, rules, batch, NUM_STEPS, devices)
    trained[name] = (graphdef, state, shardings, rules)
    params = param_arrays(graphdef, state)
    reference = reference or params
    model_state = nnx.state(nnx.merge(graphdef, state)[0], nnx.Param)
    # Born sharded and kept sharded: every array's layout is the rules' layout.
    layouts_ok = all(a.sharding.is_equivalent_to(s, a.ndim) for a, s in
                     zip(jax.tree.leaves(state), jax.tree.leaves(shardings)))
    results[name] = dict(
        preset=preset, mesh=dict(mesh.shape), losses=losses, layouts_ok=layouts_ok,
        max_param_diff=max(float(np.max(np.abs(params[k] - reference[k]))) for k in params),
        max_param_abs=max(float(np.max(np.abs(v))) for v in params.values()),
        params_bytes_per_device=sharding.bytes_per_device(model_state),
        state_bytes_per_device=sharding.bytes_per_device(state),
        device0_params_bytes=sum(a.addressable_shards[0].data.nbytes
                                 for a in jax.tree.leaves(model_state)),
        argument_bytes=int(memory.argument_size_in_bytes))
  results["aot_fsdp"] = _aot_check()
  results["resume"] = _resume_into_other_meshes(
      trained, batch, os.path.join(os.path.dirname(out_path), "checkpoints"))
  with open(out_path, "w", encoding="utf-8") as f:
    json.dump(results, f, indent=1)


RESUMES = {"single->fsdp": ("single", "fsdp"), "dp->fsdp_tp": ("dp", "fsdp_tp")}


def _resume_into_other_meshes(trained: dict, batch: dict, directory: str) -> dict:
  """Checkpoints saved after NUM_STEPS on one layout, restored into another, trained on.

  Each source state (1 device; 8-way replicated) goes through mlasr.checkpoint on disk and
  back into the target run's shardings (abstract tree carrying them, as mlasr.train restores).
  The reference is the target run itself continued, i.e. one that never changed mesh; both
  continue with the same compiled step, so any difference comes from the first NUM_STEPS.
  """
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel
  from mlasr import checkpoint as ckpt_lib  # pylint: disable=import-outside-toplevel
  from mlasr import sharding, train  # pylint: disable=import-outside-toplevel
  from mlasr.tasks import ctc as ctc_task  # pylint: disable=import-outside-toplevel

  def continue_training(graphdef, state, step_fn, batch_sh):
    device_batch, losses = sharding.to_device(batch, batch_sh), []
    for step in range(NUM_STEPS, 2 * NUM_STEPS):
      state, metrics = step_fn(state, device_batch, step)
      losses.append(float(metrics["loss"]))
    return losses, param_arrays(graphdef, state)

  out = {}
  for name, (source, target) in RESUMES.items():
    # Save the source run's full train state (params + AdamW moments + counters).
    saved = ckpt_lib.train_state(*nnx.merge(*trained[source][:2]))
    saved_np = jax.tree.map(np.asarray, saved)
    ckpt = ckpt_lib.Checkpointer(os.path.join(directory, name))
    ckpt.save(NUM_STEPS, saved, {"position": NUM_STEPS}, {"step": NUM_STEPS})
    ckpt.wait()

    # Restore into a freshly initialised target-layout state, as mlasr.train does.
    ref_graphdef, ref_state, ref_shardings, rules = trained[target]
    mesh = jax.tree.leaves(ref_shardings)[0].mesh
    graphdef, fresh, shardings = sharding.create_sharded_state(tiny_build_fn(), rules, mesh)
    model, optimizer = nnx.merge(graphdef, fresh)
    target_tree = ckpt_lib.abstract_like(ckpt_lib.train_state(model, optimizer))
    restored, data_state, meta = ckpt.restore(NUM_STEPS, target_tree)
    ckpt.close()
    flat_restored = jax.tree.leaves(restored)
    exact = len(flat_restored) == len(jax.tree.leaves(saved_np)) and all(
        np.array_equal(np.asarray(a), b) and np.asarray(a).dtype == b.dtype
        for a, b in zip(flat_restored, jax.tree.leaves(saved_np)))
    layouts_ok = all(a.sharding.is_equivalent_to(t.sharding, a.ndim)
                     for a, t in zip(flat_restored, jax.tree.leaves(target_tree)))
    split = sum(a.addressable_shards[0].data.size < a.size for a in flat_restored)
    ckpt_lib.load_train_state(model, optimizer, restored)
    graphdef, resumed = nnx.split((model, optimizer))
    before = param_arrays(graphdef, resumed)

    batch_sh = sharding.batch_sharding(mesh, rules)
    step_fn = sharding.shard_update_step(
        train.make_update_step(graphdef, ctc_task, optax.constant_schedule(1e-3), seed=0),
        shardings, batch_sh)
    losses, params = continue_training(graphdef, resumed, step_fn, batch_sh)
    ref_losses, ref_params = continue_training(ref_graphdef, ref_state, step_fn, batch_sh)
    out[name] = dict(
        mesh=dict(mesh.shape), exact=exact, layouts_ok=layouts_ok, num_leaves=len(flat_restored),
        num_split=split, data_state=data_state, meta=meta, losses=losses, ref_losses=ref_losses,
        max_param_diff=max(float(np.max(np.abs(params[k] - ref_params[k]))) for k in params),
        max_update=max(float(np.max(np.abs(params[k] - before[k]))) for k in params))
  return out


def _aot_check() -> dict:
  """benchmarks/aot_memory.py's analysis (abstract state, nothing allocated): tiny, fsdp x 8."""
  sys.path.insert(0, ROOT)
  from benchmarks import aot_memory  # pylint: disable=import-outside-toplevel
  from mlasr import sharding  # pylint: disable=import-outside-toplevel
  mesh = sharding.make_mesh(RUNS["fsdp"][1])
  return aot_memory.analyze(tiny_build_fn(), sharding.PRESETS["fsdp"], mesh,
                            clips_per_device=1, num_samples=1600, num_labels=6)


# ------------------------------------------------------------------------------------------
# Tests.
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory):
  out = tmp_path_factory.mktemp("sharding") / "results.json"
  env = dict(os.environ, XLA_FLAGS=with_device_count(NUM_DEVICES), JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, __file__, str(out)], env=env, cwd=ROOT,
                        capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  results = json.loads(out.read_text())
  print(params_table(results))
  return results


def params_table(results: dict) -> str:
  base = results["single"]["params_bytes_per_device"]
  lines = ["| run | preset | mesh (data,fsdp,tensor) | params bytes/device | ratio |",
           "|---|---|---|---|---|"]
  for name in RUNS:
    r = results[name]
    m = r["mesh"]
    lines.append(f"| {name} | {r['preset']} | {m['data']},{m['fsdp']},{m['tensor']} | "
                 f"{r['params_bytes_per_device']} | {r['params_bytes_per_device'] / base:.3f} |")
  return "\n".join(lines)


@pytest.mark.parametrize("name", ["dp", "fsdp", "fsdp_tp"])
def test_sharded_training_equals_single_device(eight_devices, name):
  single, run = eight_devices["single"], eight_devices[name]
  assert math.prod(run["mesh"].values()) == NUM_DEVICES
  assert run["layouts_ok"] and single["layouts_ok"]
  assert len(run["losses"]) == NUM_STEPS and single["losses"][1] < single["losses"][0]
  for a, b in zip(run["losses"], single["losses"]):
    assert a == pytest.approx(b, rel=1e-5)
  # Adam's steps are ~lr = 1e-3 per parameter per step; fp32 reduction-order noise is ~1e-6.
  assert run["max_param_diff"] < 5e-5, run


def test_param_bytes_shrink_under_fsdp_and_tp(eight_devices):
  full = eight_devices["single"]["params_bytes_per_device"]
  assert eight_devices["dp"]["params_bytes_per_device"] == full
  for name in ("fsdp", "fsdp_tp"):
    per_device = eight_devices[name]["params_bytes_per_device"]
    assert per_device == eight_devices[name]["device0_params_bytes"]  # analytic == actual
    # Everything but LayerNorm vectors and dims not divisible by 8 is split 8 ways.
    assert full / 8 <= per_device < full / 5, (name, per_device, full)


def test_aot_memory_analysis_and_fsdp_lowers_arguments(eight_devices):
  aot = eight_devices["aot_fsdp"]  # same global batch (8 x 1600 samples) as the runs above
  assert aot["global_batch"] == 8 and aot["mesh"] == eight_devices["fsdp"]["mesh"]
  assert aot["temp_bytes"] > 0 and aot["peak_bytes"] > aot["argument_bytes"] > 0
  state = aot["params_bytes"] + aot["opt_state_bytes"]
  assert aot["params_bytes"] == eight_devices["fsdp"]["params_bytes_per_device"]
  # XLA's own per-device argument bytes = the sharded state + this device's batch rows
  # (+ a few scalars), and the donated state is aliased by the new state.
  expected = state + aot["batch_bytes"]
  assert 0.99 * expected < aot["argument_bytes"] < 1.01 * expected
  assert aot["alias_bytes"] > 0.99 * state
  # The abstract compile agrees with the real one, and fsdp lowers per-device arguments.
  assert aot["argument_bytes"] == eight_devices["fsdp"]["argument_bytes"]
  assert aot["argument_bytes"] < eight_devices["dp"]["argument_bytes"] / 4


@pytest.mark.parametrize("name", list(RESUMES))
def test_checkpoint_restores_into_another_mesh_and_training_continues(eight_devices, name):
  """Resume on a different device layout: exact values, target layouts, same training."""
  r = eight_devices["resume"][name]
  assert math.prod(r["mesh"].values()) == NUM_DEVICES
  # Params, AdamW moments and counters come back bit-exact, already in the target layout,
  # and that layout really differs from the source's (most arrays are split 8 or 4 ways).
  assert r["exact"] and r["layouts_ok"], r
  assert r["num_split"] > r["num_leaves"] // 2, r
  assert r["meta"] == {"step": NUM_STEPS} and r["data_state"] == {"position": NUM_STEPS}
  # Training goes on as on the run that never changed mesh (same compiled step; only the
  # first NUM_STEPS differed, by fp32 reduction order, as in the tests above).
  assert r["max_update"] > 1e-4, r  # Adam moved the parameters ~lr per step
  for a, b in zip(r["losses"], r["ref_losses"]):
    assert a == pytest.approx(b, rel=1e-5)
  assert r["max_param_diff"] < 5e-5, r


# Pure rule logic: abstract meshes, no devices needed.
def _mesh(data=1, fsdp=1, tensor=1):
  from jax.sharding import AbstractMesh  # pylint: disable=import-outside-toplevel
  return AbstractMesh((data, fsdp, tensor), ("data", "fsdp", "tensor"))


def test_rules_fall_back_and_never_crash_on_awkward_sizes():
  from jax.sharding import PartitionSpec as P  # pylint: disable=import-outside-toplevel
  from mlasr import sharding  # pylint: disable=import-outside-toplevel
  tp = sharding.PRESETS["fsdp_tp"]
  mesh = _mesh(fsdp=4, tensor=2)
  assert sharding.logical_to_spec(("embed", "mlp"), (64, 128), tp, mesh) == P("fsdp", "tensor")
  assert sharding.logical_to_spec(("embed", "heads", "kv"), (64, 4, 16), tp, mesh) == \
      P("fsdp", "tensor", None)
  # Vocabulary of 37 fits neither tensor (2) nor fsdp (4): replicated, not an error.
  assert sharding.logical_to_spec(("embed", "vocab"), (64, 37), tp, mesh) == P("fsdp", None)
  # d_model 6 not divisible by fsdp=4: "embed" falls through to nothing.
  assert sharding.logical_to_spec(("embed",), (6,), tp, mesh) == P(None)
  # A repeated name (conformer pointwise_out is ("embed", "embed")) shards only once.
  assert sharding.logical_to_spec(("embed", "embed"), (64, 64), tp, mesh) == P("fsdp", None)
  # Under fsdp, the mlp dim is the fallback when embed is taken/unavailable.
  fsdp = sharding.PRESETS["fsdp"]
  assert sharding.logical_to_spec(("mlp",), (128,), fsdp, mesh) == P("fsdp")
  assert sharding.logical_to_spec((None, "conv_in", "conv_out"), (3, 1, 32), fsdp, mesh) == \
      P(None, None, "fsdp")
  assert sharding.logical_to_spec(("norm",), (64,), fsdp, mesh) == P(None)
  assert sharding.logical_to_spec(None, (3,), fsdp, mesh) == P()
  # Activations: the batch axis goes over data x fsdp.
  assert sharding.logical_to_spec(("activation_batch", None), (8, 5), tp, _mesh(2, 4, 1)) == \
      P(("data", "fsdp"), None)


def test_mesh_shape_and_config_errors():
  from mlasr import config_lib, sharding  # pylint: disable=import-outside-toplevel
  assert sharding.mesh_shape([("data", -1), ("fsdp", 2), ("tensor", 1)], 8) == \
      dict(data=4, fsdp=2, tensor=1)
  with pytest.raises(ValueError, match="more than one -1"):
    sharding.mesh_shape([("data", -1), ("fsdp", -1)], 8)
  with pytest.raises(ValueError, match="not divisible"):
    sharding.mesh_shape([("data", -1), ("fsdp", 3)], 8)
  with pytest.raises(ValueError, match="needs 4 devices but 8"):
    sharding.mesh_shape([("data", 2), ("fsdp", 2)], 8)
  cfg = config_lib.base_config()
  assert sharding.get_rules(cfg) == sharding.PRESETS["dp"]
  cfg.sharding_preset = "fsdp"
  assert sharding.get_rules(cfg) == sharding.PRESETS["fsdp"]
  cfg.logical_axis_rules = [("embed", ["fsdp"])]  # explicit rules replace the preset
  assert sharding.get_rules(cfg) == (("embed", "fsdp"),)
  cfg.logical_axis_rules, cfg.sharding_preset = (), "zero3"
  with pytest.raises(ValueError, match="sharding_preset='zero3'"):
    sharding.get_rules(cfg)


if __name__ == "__main__":
  _subprocess_main(sys.argv[1])
