"""benchmarks.scan --settle: paired rounds on pinned threads, the ratio's interval (issue 14)."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from benchmarks import report, run_all, scan

RATIO_FIELDS = (
  "ratio_median",
  "ratio_median_ci_low",
  "ratio_median_ci_high",
  "ratio_geomean",
  "ratio_ci_low",
  "ratio_ci_high",
  "ratio_geomean_unrolled_first",
  "ratio_geomean_scan_first",
)


def _check_ratio_fields(r, rounds):
  assert r["rounds"] == rounds and len(r["ratios"]) == rounds
  assert len(r["times_s"]["unrolled"]) == len(r["times_s"]["scan"]) == rounds
  for key in RATIO_FIELDS:
    assert r[key] > 0, key
  assert r["ratio_ci_low"] <= r["ratio_geomean"] <= r["ratio_ci_high"]
  assert r["ratio_median_ci_low"] <= r["ratio_median"] <= r["ratio_median_ci_high"]
  assert r["goal_upper"] == 1.10 and r["goal_met"] == (r["ratio_ci_high"] <= 1.10)
  assert r["ratio_ci_level"] == 0.95 and set(r["step_s"]) == {"unrolled", "scan"}


def test_thread_pinning_sets_the_pool_size_and_the_cores():
  env = {"XLA_FLAGS": "--xla_dump_to=/tmp/x"}
  updates, cores = scan.thread_pinning(None, env=env, cpus={5, 0, 1})
  assert cores == [0, 1, 5] and updates == {"PJRT_NPROC": "3", "OMP_NUM_THREADS": "3"}
  updates, cores = scan.thread_pinning(1, env=env, cpus={5, 0, 1})
  assert cores == [0] and updates["PJRT_NPROC"] == "1"
  assert updates["XLA_FLAGS"] == "--xla_dump_to=/tmp/x --xla_cpu_multi_thread_eigen=false"
  updates, _ = scan.thread_pinning(
    1, env={"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=true"}, cpus=[0]
  )
  assert "XLA_FLAGS" not in updates  # the caller's own setting wins
  updates, cores = scan.thread_pinning(2, env={}, cpus=None)  # no affinity API
  assert cores is None and updates["PJRT_NPROC"] == "2"
  with pytest.raises(ValueError):
    scan.thread_pinning(3, env={}, cpus=[0, 1])
  with pytest.raises(ValueError):
    scan.thread_pinning(0, env={}, cpus=[0, 1])


def test_pin_threads_refuses_once_jax_is_imported():
  with pytest.raises(RuntimeError, match="before jax"):
    scan.pin_threads(1)


def test_settle_rounds_on_two_small_programs(capsys):
  x = jnp.ones((64, 64))
  one = jax.jit(lambda x: x @ x).lower(x).compile()
  two = jax.jit(lambda x: (x @ x) @ x.T).lower(x).compile()
  r = scan.settle_rounds(lambda: one(x), lambda: two(x), rounds=8, warmup_rounds=2)
  _check_ratio_fields(r, rounds=8)
  assert r["warmup_rounds"] == 2
  out = capsys.readouterr().out
  assert "t-interval" in out and "goal: interval's upper end <= 1.1" in out


def test_registered_in_run_all_and_summarised_by_report():
  assert run_all._command("scan_settle") == ("scan", ["--settle"])
  assert run_all._command("scan_settle_block") == ("scan", ["--settle", "--scan-remat", "block"])
  r = dict(
    benchmark="scan_settle",
    ratio_depth=16,
    rounds=60,
    threads=2,
    ratio_geomean=1.083,
    ratio_ci_low=1.071,
    ratio_ci_high=1.095,
    ratio_ci_level=0.95,
    ratio_median=1.08,
    goal_upper=1.1,
    cpu_count=2,
  )
  block = report.render({"scan_settle": r})
  assert "95% CI [1.071, **1.095**]" in block and "CI upper end ≤ 1.1: met" in block
  assert "scan/unrolled step" in block  # no remat named when the scanned step has none
  block = report.render({"scan_settle": {**r, "ratio_ci_high": 1.12}})
  assert "CI upper end ≤ 1.1: **not met**" in block
  block = report.render({"scan_settle_block": {**r, "scan_remat": "block"}})
  assert "`scan_settle_block`" in block and "scan (remat=block)/unrolled step" in block


@pytest.mark.slow
def test_settle_mode_tiny_end_to_end():
  cmd = [sys.executable, "-m", "benchmarks.scan", "--settle", "--ratio-depth", "7"]
  cmd += ["--width", "8", "--batch", "2", "--rounds", "4", "--warmup-rounds", "1"]
  cmd += ["--threads", "1"]  # also checks that XLA accepts --xla_cpu_multi_thread_eigen=false
  cmd += ["--scan-remat", "block"]
  proc = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=900)
  lines = proc.stdout.strip().splitlines()
  assert any("compile" in ln for ln in lines[:-1]) and any("t-interval" in ln for ln in lines)
  r = json.loads(lines[-1])
  assert r["benchmark"] == "scan_settle" and r["ratio_depth"] == 7 and r["width"] == 8
  assert r["scan_remat"] == "block"
  _check_ratio_fields(r, rounds=4)
  assert r["threads"] == 1 and len(r["cpus"]) == 1 and r["pinned_env"]["PJRT_NPROC"] == "1"
  assert "--xla_cpu_multi_thread_eigen=false" in r["xla_flags"]
  assert r["compile_s"]["unrolled"] > 0 and r["compile_s"]["scan"] > 0
