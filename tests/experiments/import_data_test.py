"""The offline import CLI, run as a user would (subprocess)."""

import subprocess
import sys

import numpy as np

from mrflax import data


def test_cli_imports_idx_folder(tmp_path):
  src = tmp_path / "src"
  src.mkdir()
  rng = np.random.default_rng(0)
  for prefix, n in (("train", 6), ("t10k", 3)):
    data.write_idx(
      src / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    )
    data.write_idx(src / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8))
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.import_data",
      "mnist",
      "--source",
      str(src),
      "--data_dir",
      str(tmp_path / "tfds"),
    ],
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "imported mnist" in proc.stdout and "'train': 6, 'test': 3" in proc.stdout
  assert len(data.open_source("mnist", "test", data_dir=tmp_path / "tfds")) == 3


def test_cli_rejects_unknown_dataset(tmp_path):
  proc = subprocess.run(
    [sys.executable, "-m", "experiments.import_data", "cifar10", "--data_dir", str(tmp_path)],
    capture_output=True,
    text=True,
    timeout=120,
    check=False,
  )
  assert proc.returncode != 0
  assert "no offline importer for 'cifar10'" in proc.stderr
