"""Resuming after a change or a damaged checkpoint: say what differs, never delete, train on.

* a changed architecture field is named (field, old and new value; first differing array)
  instead of being called corruption, and nothing in the directory changes;
* a changed execution-only field (same parameter tree) resumes;
* a truncated data file or truncated metadata sets that step aside (kept, renamed), falls back
  to the previous good step, trains past the bad step to the end and saves that step afresh;
  the result equals an uninterrupted run bit for bit.
"""

import pathlib

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from mrflax import training
from mrflax.training import loop
from mrflax.training.checkpoint import CheckpointMismatchError
from mrflax.training.steps import StepConfig
from tests.training.toy import toy_iter, toy_loss

STEP = StepConfig(lr=1e-2, warmup_steps=2, ema_decay=0.9)


class WideToy(nnx.Module):
  """The toy regression with a width (architecture) and a remat switch (execution only)."""

  def __init__(self, width, remat, *, rngs):
    self.conv = nnx.Conv(2, width, (3, 3), rngs=rngs)
    self.out = nnx.Linear(width, 1, rngs=rngs)
    self.remat = remat

  def __call__(self, x):
    conv = lambda m, x: jax.nn.gelu(m(x))
    h = nnx.remat(conv)(self.conv, x) if self.remat else conv(self.conv, x)
    return self.out(jnp.mean(h, axis=(1, 2)))[:, 0]


def run(workdir, steps, *, width=4, remat=False):
  return loop.fit(
    model_fn=lambda rngs: WideToy(width, remat, rngs=rngs),
    loss_fn=toy_loss,
    step_config=STEP,
    loop=loop.LoopConfig(
      steps=steps, batch_size=8, steps_per_call=2, log_every=2, checkpoint_every=4, seed=3
    ),
    train_iter=toy_iter(seed=3),
    workdir=str(workdir),
    config={"model": {"width": width, "remat": remat}, "train": {"steps": steps}},
  )


def listing(d: pathlib.Path):
  return sorted((str(p.relative_to(d)), p.stat().st_size) for p in d.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """An uninterrupted 12-step run: what every resumed run must end with."""
  return training.params_digest(run(tmp_path_factory.mktemp("ref"), 12).state.params)


def test_changed_architecture_field_is_named_and_nothing_is_touched(tmp_path, reference):
  run(tmp_path, 4)
  ckpts = tmp_path / "checkpoints"
  before = listing(ckpts)
  with pytest.raises(CheckpointMismatchError) as err:
    run(tmp_path, 8, width=6)
  msg = str(err.value)
  assert "does not fit the current model" in msg and "corrupt" not in msg
  assert "model.width: 4 -> 6" in msg and "train.steps: 4 -> 8" in msg
  assert "first differing array: ema/conv/bias/value: saved (4,) float32, current (6,)" in msg
  assert "revert the field(s) above" in msg and "another workdir (--workdir)" in msg
  assert listing(ckpts) == before  # nothing renamed, nothing deleted
  # reverting the field resumes the run, which ends as if never interrupted
  resumed = run(tmp_path, 12)
  assert resumed.resumed_from == 4 and int(resumed.state.step) == 12
  assert training.params_digest(resumed.state.params) == reference


def test_changed_execution_only_field_resumes(tmp_path, capsys, reference):
  run(tmp_path, 4)
  resumed = run(tmp_path, 12, remat=True)
  out = capsys.readouterr().out
  assert resumed.resumed_from == 4 and int(resumed.state.step) == 12
  assert "config changed since that checkpoint (saved -> now): model.remat: False -> True" in out
  assert training.params_digest(resumed.state.params) == reference


def _truncate_data(step_dir: pathlib.Path):
  files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
  assert files
  for p in files:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _truncate_metadata(step_dir: pathlib.Path):
  p = step_dir / "state" / "_METADATA"
  p.write_bytes(p.read_bytes()[:100])


# Orbax's failed read of a truncated data file can leave tensorstore callbacks that fire after
# its asyncio loop closed; pytest reports those as unraisable-exception warnings (seen once in
# a full run). They are noise of the failed read, not of what this test checks.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("damage", [_truncate_data, _truncate_metadata], ids=["data", "metadata"])
def test_damaged_latest_is_set_aside_and_training_goes_past_it(tmp_path, capsys, damage, reference):
  run(tmp_path, 8)  # checkpoints at 4 and 8
  ckpts = tmp_path / "checkpoints"
  damage(ckpts / "8")
  damaged = listing(ckpts / "8")
  resumed = run(tmp_path, 12)
  out = capsys.readouterr().out
  assert resumed.resumed_from == 4 and int(resumed.state.step) == 12
  aside = [p for p in ckpts.iterdir() if p.name.startswith("8.unreadable-")]
  assert len(aside) == 1 and listing(aside[0]) == damaged  # kept as it was, for inspection
  assert f"unreadable checkpoint kept as {aside[0]}" in out
  assert (ckpts / "8").is_dir() and (ckpts / "12").is_dir()  # step 8 saved afresh, then 12
  assert training.params_digest(resumed.state.params) == reference
  # and the next resume reads the fresh step 12 without complaint
  again = run(tmp_path, 12)
  assert again.resumed_from == 12 and "unreadable" not in capsys.readouterr().out
