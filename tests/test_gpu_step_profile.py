"""benchmarks/gpu_step.py's profile summary, on a CPU trace of a small jitted function.

The GPU run gets one try in a short lease, so the code that reads the jax.profiler trace
must be known to work before it gets there.
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
import gpu_step  # pylint: disable=wrong-import-position


def test_kernel_categories_of_real_gpu_kernel_names():
  # Names as the H200 run of 2026-12-04 reported them.
  cases = {
      "cudnn_generated_fort_native_sdpa_sm90_flash_bprop_wgmma_f16_knob_26": "attention",
      "sm90_xmma_dgrad_implicit_gemm_indexed_bf16bf16_bf16f32_f32_nhwckrsc": "convolution",
      "nvjet_sm90_tst_128x224_64x4_2x1_v_bz_coopA_NNT": "matmul",
      "triton_gemm_dot_7": "matmul",
      "loop_convert_multiply_fusion": "elementwise",
      "input_add_reduce_fusion_1": "reduction",
      "memcpy128": "copy",
      "conv_general_dilated.72": "convolution",
  }
  for name, category in cases.items():
    assert gpu_step.kernel_category(name).startswith(category), name
  assert gpu_step.kernel_category("some_unknown_kernel") == "other"


def test_profile_summary_of_a_cpu_trace(tmp_path):
  f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum(0))
  x = jnp.asarray(np.random.default_rng(0).standard_normal((256, 256)), jnp.float32)
  f(x).block_until_ready()

  def step(state, batch, i):
    del i
    return state, {"loss": f(batch)}

  _, next_step, summary = gpu_step.profile_steps(step, x, [x], 0, 3, str(tmp_path), 0.01)
  assert next_step == 3
  assert "error" not in summary, summary
  assert summary["source"] == "host threads" and summary["steps"] == 3
  assert summary["kernel_ms_per_step"] > 0 and summary["distinct_kernels"] > 0
  top = summary["top_kernels"]
  assert top and all(k["ms_per_step"] >= 0 for k in top)
  assert [k["ms_per_step"] for k in top] == sorted((k["ms_per_step"] for k in top),
                                                   reverse=True)
  # Python frames of the host trace are not kernels.
  assert not any(k["name"].startswith("$") for k in top)
  assert abs(sum(summary["categories_ms_per_step"].values()) -
             summary["kernel_ms_per_step"]) < 1e-6
  # XLA's thunks carry the HLO instruction that ran them.
  assert any(k["hlo_ops"] for k in top)


def test_profile_summary_reports_a_missing_trace(tmp_path):
  assert "error" in gpu_step.summarise_trace(str(tmp_path), 1, 0.1)
