"""experiments.main: one entry point; every config names a runner that has the mode it runs in."""

from __future__ import annotations

import importlib
import pathlib
import subprocess
import sys

import pytest

from experiments import main

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = sorted(p.parent.name for p in (ROOT / "experiments").glob("*/config.py"))


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_names_a_runner_with_a_train_mode(name):
  config = importlib.import_module(f"experiments.{name}.config").get_config()
  assert config.runner in main.RUNNERS, (name, config.runner)
  modes = importlib.import_module(main.RUNNERS[config.runner]).MODES
  assert "train" in modes and all(callable(f) for f in modes.values())


def test_the_runners_are_the_experiment_packages():
  # no runner outside the table: every experiments/<x>/run.py is reachable through main
  runs = {f"experiments.{p.parent.name}.run" for p in (ROOT / "experiments").glob("*/run.py")}
  assert runs <= set(main.RUNNERS.values())
  assert {"hvae", "ghm", "unet_haar", "hvae_claims"} == set(main.RUNNERS)


def test_a_mode_the_runner_lacks_is_one_line_and_exit_2(tmp_path):
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.main",
      "--config=experiments/ghm/config.py:ci",
      f"--workdir={tmp_path}",
      "--mode=eval",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 2, proc.stderr
  assert proc.stderr.strip() == (
    "error: --mode=eval is not a mode of the ghm runner (it has train)"
  ), proc.stderr
  assert list(tmp_path.iterdir()) == []
