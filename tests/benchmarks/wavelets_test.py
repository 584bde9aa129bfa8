"""The wavelet benchmark runs at a tiny size and prints one JSON object on its last line."""

import json
import subprocess
import sys


def test_wavelet_benchmark_tiny():
  cmd = [
    sys.executable,
    "-m",
    "benchmarks.wavelets",
    "--batch",
    "2",
    "--size",
    "32",
    "--levels",
    "3",
    "--repeats",
    "2",
    "--pywt_repeats",
    "1",
  ]
  proc = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300)
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  assert result["benchmark"] == "wavelets"
  assert result["shape"] == [2, 32, 32, 3]
  for key in ("mrflax_s", "copy_s", "pywt_s", "over_copy", "speedup_vs_pywt", "mrflax_compile_s"):
    assert result[key] > 0
