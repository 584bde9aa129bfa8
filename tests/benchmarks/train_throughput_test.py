"""The train-step throughput benchmark runs on a tiny preset and ends with one JSON object."""

import json
import subprocess
import sys

import pytest

from benchmarks import run_all


@pytest.mark.slow
def test_train_throughput_tiny():
  cmd = [
    sys.executable,
    "-m",
    "benchmarks.train_throughput",
    "--config",
    "digits",
    "--preset",
    "tiny8",
    "--batch",
    "4",
    "--repeats",
    "2",
    "--steps_per_call",
    "2",
  ]
  proc = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600)
  lines = proc.stdout.strip().splitlines()
  assert any("compile" in ln for ln in lines[:-1])  # progress before the result
  result = json.loads(lines[-1])
  assert result["benchmark"] == "train_throughput" and result["preset"] == "tiny8"
  assert (result["batch"], result["steps_per_call"], result["repeats"]) == (4, 2, 2)
  assert result["images_per_s"] == pytest.approx(8 / result["call_s_median"], rel=0.01)
  for key in ("compile_s", "call_s_median", "flops_per_call", "loss"):
    assert result[key] > 0, key
  assert result["skipped"] == 0


def test_registered_in_run_all():
  assert run_all._command("train_throughput")[0] == "train_throughput"
  module, args = run_all._command("train_throughput_cifar10")
  assert module == "train_throughput" and "vdvae_cifar10" in args
