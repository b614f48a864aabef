"""Two JAX processes on localhost (gloo CPU collectives) train exactly like one process.

Each worker (this file as a script) has 2 fake CPU devices, joins a 2-process
jax.distributed cluster, builds a (data=2, fsdp=2) mesh over the 4 global devices, feeds only
its own half of the global batch through jax.make_array_from_process_local_data (what
mlasr.data.inputs does with shard_index=process_index) and runs the real sharded update
step. Process 0 gathers the parameters; the test compares them with a single-device run on
the whole batch in this process.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import test_sharding as common  # pylint: disable=wrong-import-position

NUM_PROCESSES = 2
LOCAL_DEVICES = 2
MESH = [("data", NUM_PROCESSES), ("fsdp", LOCAL_DEVICES), ("tensor", 1)]
NUM_STEPS = 2
TIMEOUT_S = 240


def _worker(process_id: int, port: int, out_dir: str):
  import jax  # pylint: disable=import-outside-toplevel
  from mlasr import sharding  # pylint: disable=import-outside-toplevel

  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=f"localhost:{port}",
                             num_processes=NUM_PROCESSES, process_id=process_id,
                             initialization_timeout=60, heartbeat_timeout_seconds=30,
                             shutdown_timeout_seconds=30)
  assert jax.process_count() == NUM_PROCESSES and jax.local_device_count() == LOCAL_DEVICES
  batch = common.fixed_batch()
  rows = len(batch["audio"]) // NUM_PROCESSES
  local = {k: v[process_id * rows:(process_id + 1) * rows] for k, v in batch.items()}
  losses, graphdef, state, _, mesh, _ = common.train_tiny(MESH, sharding.PRESETS["fsdp"], local,
                                                          NUM_STEPS)
  # Parameters really are split across the two processes, not replicated.
  sharded = [a for a in jax.tree.leaves(state) if not a.is_fully_addressable]
  params = common.param_arrays(graphdef, state)  # collective: every process takes part
  if process_id == 0:
    np.savez(os.path.join(out_dir, "params.npz"), **params)
    with open(os.path.join(out_dir, "result.json"), "w", encoding="utf-8") as f:
      json.dump(dict(losses=losses, mesh=dict(mesh.shape), num_not_addressable=len(sharded),
                     device_count=jax.device_count()), f)
  jax.distributed.shutdown()


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
  out_dir = tmp_path_factory.mktemp("multihost")
  port = _free_port()
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=common.with_device_count(LOCAL_DEVICES))
  procs = [subprocess.Popen([sys.executable, __file__, str(i), str(port), str(out_dir)],
                            env=env, cwd=common.ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
           for i in range(NUM_PROCESSES)]
  logs = []
  try:
    for proc in procs:
      logs.append(proc.communicate(timeout=TIMEOUT_S)[0])
  except subprocess.TimeoutExpired:
    pass
  finally:
    for proc in procs:  # never leave a worker waiting on a dead peer
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  tails = "\n".join(f"--- worker {i} (rc {p.returncode}) ---\n{(logs[i] if i < len(logs) else '')[-3000:]}"
                    for i, p in enumerate(procs))
  assert all(p.returncode == 0 for p in procs), tails
  result = json.loads((out_dir / "result.json").read_text())
  return result, dict(np.load(out_dir / "params.npz"))


def test_two_processes_train_like_one(two_processes):
  from mlasr import sharding  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  result, params = two_processes
  assert result["device_count"] == NUM_PROCESSES * LOCAL_DEVICES
  assert result["mesh"] == dict(data=2, fsdp=2, tensor=1)
  assert result["num_not_addressable"] > 0
  losses, graphdef, state, *_ = common.train_tiny(
      [("data", 1), ("fsdp", 1), ("tensor", 1)], sharding.PRESETS["fsdp"], common.fixed_batch(),
      NUM_STEPS, devices=jax.devices()[:1])
  reference = common.param_arrays(graphdef, state)
  np.testing.assert_allclose(result["losses"], losses, rtol=1e-5)
  assert sorted(params) == sorted(reference)
  for key, value in reference.items():
    np.testing.assert_allclose(params[key], value, atol=5e-5, err_msg=key)


if __name__ == "__main__":
  _worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
