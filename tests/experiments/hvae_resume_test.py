"""experiments.main on a trained workdir: a changed model is named (not called corrupt), an
execution-only change resumes, eval says what it loaded and writes what it says, typos are one
line."""

import json
import subprocess
import sys

import pytest

from experiments.digits import config as digits_config
from experiments.hvae import train


def tiny_config(data_dir, steps):
  c = digits_config.get_config("tiny")
  c.model.preset = "tiny8"
  c.data.data_dir = str(data_dir)
  c.train.steps = steps
  c.train.steps_per_call = 2
  c.train.log_every = 2
  c.train.checkpoint_every = 2
  c.train.eval_every = 0
  c.train.batch_size = 8
  c.eval.batch_size = 128
  c.eval.num_samples = 2
  c.eval.temperatures = (1.0,)
  return c


def cli(tmp_path, *extra, timeout=600):
  args = [
    "--config=experiments/digits/config.py:tiny",
    "--config.model.preset=tiny8",
    f"--config.data.data_dir={tmp_path / 'data'}",
    f"--workdir={tmp_path / 'run'}",
    "--config.train.batch_size=8",
    "--config.train.steps_per_call=2",
    "--config.eval.num_samples=2",
    *extra,
  ]
  return subprocess.run(
    [sys.executable, "-m", "experiments.main", *args],
    capture_output=True,
    text=True,
    timeout=timeout,
    check=False,
  )


@pytest.mark.slow
def test_changed_model_execution_change_and_eval_mode(tmp_path):
  work = tmp_path / "run"
  first = train.train_and_evaluate(tiny_config(tmp_path / "data", 2), str(work))
  assert first["step"] == 2
  before = sorted(p.name for p in (work / "checkpoints").iterdir())

  # an architecture field changed: one clear message, exit code 2, nothing touched
  proc = cli(tmp_path, "--config.model.share=2", "--config.train.steps=4")
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr and "corrupt" not in proc.stderr
  assert proc.stderr.startswith("error: the checkpoint at step 2 in ")
  assert "model.share: '1' -> '2'" in proc.stderr and "first differing array: " in proc.stderr
  assert "revert the field(s) above" in proc.stderr and "(--workdir)" in proc.stderr
  assert sorted(p.name for p in (work / "checkpoints").iterdir()) == before

  # an execution-only field changed: the run resumes and finishes
  c = tiny_config(tmp_path / "data", 4)
  c.model.exec_mode = "scan"
  resumed = train.train_and_evaluate(c, str(work))
  assert resumed["resumed_from"] == 2 and resumed["step"] == 4

  # eval: says which checkpoint (step, EMA), writes eval.json naming it, claims only what it wrote
  summary_before = (work / "summary.json").read_text()
  (work / "eval.json").unlink()
  proc = cli(tmp_path, "--mode=eval", "--config.train.steps=4")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "loaded the checkpoint at step 4 from " in proc.stdout
  assert "(using its EMA parameters)" in proc.stdout
  assert "summary.json" not in proc.stdout
  assert f"wrote {work}/eval.json, samples.png, reconstructions.png" in proc.stdout
  assert json.loads((work / "eval.json").read_text())["checkpoint"] == {"step": 4, "ema": True}
  assert (work / "summary.json").read_text() == summary_before


@pytest.mark.parametrize(
  "flag,message",
  [
    (
      "--config.train.stepz=3",
      "--config.train.stepz=3: no field 'stepz' in config.train; did you mean 'steps'?",
    ),
    (
      "--config.trian.steps=3",
      "--config.trian.steps=3: no field 'trian' in config; did you mean 'train'?",
    ),
  ],
)
def test_config_typo_is_one_line(tmp_path, flag, message):
  proc = cli(tmp_path, flag, timeout=120)
  assert proc.returncode == 2
  assert proc.stderr == f"error: {message}\n"
