"""benchmarks/device_check.py --smoke: the accelerator check's code path on the CPU."""

import json
import subprocess
import sys

import pytest

from benchmarks import device_check


def test_smoke_runs_the_device_check_code_path():
  variants = "scan/float32/xla,shared2/bfloat16/custom"  # between them: every option
  proc = subprocess.run(
    [sys.executable, "-m", "benchmarks.device_check", "--smoke", f"--only={variants}"],
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out["benchmark"] == "device_check" and out["smoke"] and out["backend"] == "cpu"
  assert out["preset"] == "tiny8_rgb" and out["batch"] == 2
  rows = out["mrflax"]
  assert [(r["mode"], r["dtype"], r["conv_backward"]) for r in rows] == [
    ("scan", "float32", "xla"),
    ("shared2", "bfloat16", "custom"),
  ]
  for r in rows:
    assert "error" not in r, r
    assert r["images_per_s"] == pytest.approx(2 / r["step_s"], rel=1e-3)
    assert r["step_s_min"] <= r["step_s"]
  # the shared model has fewer parameters; the untrained loss is the same order (nats/dim)
  assert rows[1]["params"] < rows[0]["params"]
  assert abs(rows[0]["loss"] - rows[1]["loss"]) < 0.1 * rows[0]["loss"]
  assert out["pytorch"] == {"skipped": "no --vdvae_dir given"} and out["ratios"] == {}
  assert out["skipped_for_budget"] == []


def test_ratios_pair_every_mrflax_row_with_every_pytorch_row():
  rows = [
    dict(framework="mrflax", mode="scan", dtype="float32", conv_backward="xla", images_per_s=30),
    dict(framework="pytorch", dtype="float32", images_per_s=20),
    dict(framework="pytorch", dtype="amp_fp16", images_per_s=40),
  ]
  assert device_check._ratios(rows) == {
    "scan_float32_xla_over_torch_float32": 1.5,
    "scan_float32_xla_over_torch_amp_fp16": 0.75,
  }
