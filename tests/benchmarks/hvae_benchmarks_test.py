"""The HVAE benchmarks run at a tiny size and print one JSON object on their last line."""

import json
import subprocess
import sys

import numpy as np
import pytest


def _run(*args):
  cmd = [sys.executable, "-m", *args]
  proc = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600)
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_scan_benchmark_tiny():
  r = _run(
    "benchmarks.scan",
    "--depths",
    "7",
    "8",
    "--ratio-depth",
    "8",
    "--width",
    "8",
    "--repeats",
    "2",
    "--compile-repeats",
    "1",
    "--skip-unrolled-compile",
    "--variants",
    "unrolled",
    "scan",
  )
  # three compiles (scan at 7 and 8, unrolled at 8) keep this under a minute on 2 cores
  assert r["benchmark"] == "scan" and r["depths"] == [7, 8]
  assert set(r["step_s"]) == {"unrolled", "scan"} and r["scan_xla_over_unrolled"] is None
  assert r["scan_over_unrolled"] > 0 and r["compile_64_over_8"] > 0
  assert r["over_unrolled"] == {"unrolled": 1.0, "scan": r["scan_over_unrolled"]}
  assert set(r["compile_s"]["scan"]) == {"7", "8"} and set(r["compile_s"]["unrolled"]) == {"8"}


def test_hvae_step_benchmark_tiny():
  r = _run(
    "benchmarks.hvae_step",
    "--preset",
    "micro4",
    "--batch",
    "2",
    "--mode",
    "shared",
    "--repeats",
    "2",
    "--compute-dtype",
    "bfloat16",
  )
  for key in ("step_s", "compile_s", "params", "images_per_s"):
    assert r[key] > 0
  assert r["n_cells"] == 2 and r["n_applications"] == 4 and r["conv_backward"] == "custom"
  assert r["compute_dtype"] == "bfloat16" and np.isfinite(r["loss"])


def test_memory_benchmark_tiny():
  r = _run("benchmarks.memory", "--presets", "micro4", "--batch", "2", "--repeats", "1")
  assert [row["remat"] for row in r["rows"]] == ["none", "block", "resolution"]
  for row in r["rows"]:
    assert row["peak_mib"] > 0 and row["step_s"] > 0 and row["params"] > 0


def test_inference_benchmark_tiny():
  r = _run(
    "benchmarks.inference", "--preset", "micro4", "--batch", "2", "--k", "3", "--repeats", "1"
  )
  assert [row["mode"] for row in r["rows"]] == ["unroll", "scan"]
  for row in r["rows"]:
    assert row["samples_per_s"] > 0 and row["iw_images_per_s"] > 0
