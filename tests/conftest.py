"""Test setup: 4 fake CPU devices, no silent rank promotion, fixed seeds."""

import os

os.environ.setdefault("XLA_FLAGS", "")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax

jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_numpy_rank_promotion", "raise")
# Not "jax_numpy_dtype_promotion=strict": it breaks optax.adam/adamw in these versions.


# Longest first, so that two xdist workers (`make test` uses `--dist worksteal`) finish together
# instead of one waiting out a five-minute test at the end. Order only: nothing is skipped.
# Seconds measured on the 2-core development machine (pytest --durations), refresh when they move.
_LONGEST = {
  "tests/experiments/hvae_test.py::test_train_evaluate_resume_and_cli_modes": 425,
  "tests/experiments/hvae_claims_test.py::test_small_runs_write_results": 378,
  "tests/colabs/notebooks_test.py::test_notebook_runs[03_hvae_weight_sharing]": 337,
  "tests/experiments/hvae_resume_test.py::test_changed_model_execution_change_and_eval_mode": 282,
  "tests/experiments/ghm_test.py::test_small_e1_to_e4_write_results": 242,
  "tests/experiments/hvae_fashion_test.py::test_small_study_end_to_end": 90,
  "tests/benchmarks/hvae_benchmarks_test.py::test_scan_benchmark_tiny": 224,
  "tests/experiments/unet_haar_test.py::"
  "test_small_run_writes_json_figures_and_exact_invariants": 163,
  "tests/colabs/notebooks_test.py::test_notebook_runs[02_unets_and_haar]": 155,
  "tests/nn/hvae_model_test.py::test_cifar10_count_from_whole_model_shapes": 114,
  "tests/training/ghm_test.py::"
  "test_interrupted_training_resumes_bit_for_bit_and_a_finished_run_is_loaded": 101,
  "tests/colabs/notebooks_test.py::test_notebook_runs[04_ghm_belief_propagation]": 75,
  "tests/benchmarks/scan_settle_test.py::test_settle_mode_tiny_end_to_end": 66,
}


def pytest_collection_modifyitems(config, items):
  del config

  def cost(item):
    return _LONGEST.get(item.nodeid, 20 if item.get_closest_marker("slow") else 0)

  items.sort(key=cost, reverse=True)  # stable: equal costs keep their collection order
