"""fit(): logging, checkpoints, exact resume (also after SIGKILL), divergence alarm, SIGTERM."""

import json
import os
import signal
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from mrflax import training
from mrflax.training import loop
from mrflax.training.steps import StepConfig
from tests.training.toy import Toy, make_batch, toy_iter, toy_loss

STEP = StepConfig(lr=1e-2, warmup_steps=2, ema_decay=0.9)


def run(workdir, steps, *, loss_fn=toy_loss, on_log=None, eval_fn=None, **kw):
  cfg = dict(steps=steps, batch_size=8, steps_per_call=2, log_every=2, checkpoint_every=4, seed=3)
  cfg.update(kw)
  return loop.fit(
    model_fn=lambda rngs: Toy(rngs=rngs),
    loss_fn=loss_fn,
    step_config=STEP,
    loop=loop.LoopConfig(**cfg),
    train_iter=toy_iter(seed=3),
    workdir=str(workdir),
    config={"toy": True},
    on_log=on_log,
    eval_fn=eval_fn,
  )


def test_fit_logs_checkpoints_and_resumes_exactly(tmp_path, capsys):
  full = run(tmp_path / "full", 12)
  assert full.resumed_from is None and full.state.step == 12
  lines = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
  records = [json.loads(line) for line in lines]
  assert [r["step"] for r in records] == [2, 4, 6, 8, 10, 12]
  assert records[-1]["loss"] < records[0]["loss"]
  assert "steps/s ETA" in capsys.readouterr().out
  part = run(tmp_path / "part", 8)
  assert part.state.step == 8
  resumed = run(tmp_path / "part", 12)
  assert resumed.resumed_from == 8
  assert training.params_digest(resumed.state.params) == training.params_digest(full.state.params)
  assert training.params_digest(resumed.state.ema) == training.params_digest(full.state.ema)
  again = run(tmp_path / "part", 12)  # already done: nothing to do, same weights
  assert training.params_digest(again.state.params) == training.params_digest(full.state.params)


@pytest.mark.slow
def test_exact_resume_after_sigkill(tmp_path):
  def script(*args):
    return subprocess.run(
      [sys.executable, "-m", "tests.training.fit_script", *map(str, args)],
      capture_output=True,
      text=True,
      timeout=600,
      check=False,
    )

  ref = script(tmp_path / "ref", 12)
  assert ref.returncode == 0, ref.stderr[-3000:]
  killed = script(tmp_path / "run", 12, 6)  # SIGKILL after step 6: last checkpoint at step 4
  assert killed.returncode == -signal.SIGKILL
  resumed = script(tmp_path / "run", 12)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "resumed from checkpoint at step 4" in resumed.stdout
  digest = [ln for ln in ref.stdout.splitlines() if ln.startswith("DIGEST")]
  assert digest and digest == [ln for ln in resumed.stdout.splitlines() if ln.startswith("DIGEST")]


def test_divergence_raises_a_clear_alarm(tmp_path):
  def nan_loss(model, batch, key):
    loss, metrics = toy_loss(model, batch, key)
    return loss * jnp.nan, metrics

  with pytest.raises(loop.TrainingDivergedError, match=r"4 consecutive updates were skipped"):
    run(tmp_path, 12, loss_fn=nan_loss, max_consecutive_skips=4)


def test_sigterm_saves_and_stops(tmp_path):
  def on_log(step, metrics):
    if step == 4:
      os.kill(os.getpid(), signal.SIGTERM)

  result = run(tmp_path, 12, on_log=on_log)
  assert result.preempted and int(result.state.step) == 4
  resumed = run(tmp_path, 12)
  assert resumed.resumed_from == 4 and int(resumed.state.step) == 12


def _toy_eval(model):
  batch = make_batch(99, n=16)
  mse = float(jnp.mean((model(batch["x"]) - batch["y"]) ** 2))
  return {"loss": mse, "rmse": mse**0.5}


def test_periodic_eval_logs_and_keeps_the_best(tmp_path, capsys):
  from tensorboard.backend.event_processing import event_accumulator

  from mrflax.training.checkpoint import Checkpointer

  seen = []

  def eval_fn(model):
    seen.append(model)
    out = _toy_eval(model)
    return out if len(seen) != 2 else {**out, "loss": 0.0}  # the step-8 eval is "best"

  res = run(tmp_path, 12, eval_fn=eval_fn, eval_every=4)
  assert len(seen) == 3 and res.best_eval == 0.0
  assert res.eval_metrics["rmse"] == pytest.approx(_toy_eval(seen[-1])["rmse"])
  # the EMA model was evaluated
  ema = res.trainer.model(res.state, ema=True)
  assert _toy_eval(ema)["loss"] == pytest.approx(res.eval_metrics["loss"])
  assert "eval at step 8: loss=0 " in capsys.readouterr().out
  records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  evals = [r for r in records if "eval/loss" in r]
  assert [r["step"] for r in evals] == [4, 8, 12] and "eval/eval_s" in evals[0]
  train = [r for r in records if "loss" in r]
  for r in train:  # the window's largest gradient norm is logged next to its mean
    assert r["grad_norm_max"] >= r["grad_norm"] > 0
  # the TensorBoard event file holds the same scalars as the JSON lines (float32)
  acc = event_accumulator.EventAccumulator(str(tmp_path))
  acc.Reload()
  for tag, rows in (("loss", train), ("grad_norm", train), ("eval/rmse", evals)):
    got = [(e.step, e.value) for e in acc.Scalars(tag)]
    assert got == [(r["step"], pytest.approx(r[tag], rel=1e-6)) for r in rows], tag
  # the best state (step 8) is kept apart and restores
  ckpt = Checkpointer(tmp_path / "checkpoints" / "best")
  best = ckpt.restore(res.state)
  ckpt.close()
  assert best.step == 8 and int(best.state.step) == 8
  assert _toy_eval(res.trainer.model(best.state, ema=True))["loss"] > 0
  ckpt = Checkpointer(tmp_path / "checkpoints")
  assert ckpt.all_steps()[-1] == 12  # "best" is not mistaken for a step
  ckpt.close()


def test_eval_needs_its_callable_and_metric(tmp_path):
  with pytest.raises(ValueError, match="needs an eval_fn"):
    run(tmp_path / "a", 4, eval_every=2)
  with pytest.raises(ValueError, match="without the eval_metric 'loss'"):
    run(tmp_path / "b", 4, eval_every=2, eval_fn=lambda m: {"mse": 1.0})


def test_bad_loop_config(tmp_path):
  with pytest.raises(ValueError, match="log_every=3 must be a multiple of steps_per_call=2"):
    loop.LoopConfig(steps=4, batch_size=8, steps_per_call=2, log_every=3)
  with pytest.raises(ValueError, match="eval_every=3 must be a multiple"):
    loop.LoopConfig(steps=4, batch_size=8, steps_per_call=2, eval_every=3)
  with pytest.raises(ValueError, match="eval_every must be >= 0"):
    loop.LoopConfig(steps=4, batch_size=8, eval_every=-1)
  with pytest.raises(ValueError, match="not divisible by the 4 devices"):
    run(tmp_path, 4, batch_size=6)


def test_digest_is_sensitive():
  a = {"w": np.zeros(3, np.float32)}
  b = {"w": np.array([0, 0, 1e-30], np.float32)}
  assert training.params_digest(a) != training.params_digest(b)
  assert training.params_digest(a) == training.params_digest({"w": np.zeros(3, np.float32)})


def test_skip_limit_is_checked_at_every_step_inside_a_call(tmp_path):
  """4 steps per call, logs every 8: the limit of 3 still fires at step 3 exactly."""

  def nan_loss(model, batch, key):
    loss, metrics = toy_loss(model, batch, key)
    return loss * jnp.nan, metrics

  with pytest.raises(
    loop.TrainingDivergedError, match=r"^3 consecutive updates were skipped .* at step 3:"
  ):
    run(
      tmp_path,
      16,
      loss_fn=nan_loss,
      max_consecutive_skips=3,
      steps_per_call=4,
      log_every=8,
      checkpoint_every=8,
    )


def _sample_toy(key):
  """An on-device batch source for the toy regression (4 devices: batch 8 splits evenly)."""
  import jax

  x = jax.random.normal(key, (8, 4, 4, 2))
  return {"x": x, "y": jnp.mean(x, axis=(1, 2, 3))}


def run_sampled(workdir, steps, **kw):
  import jax

  cfg = dict(steps=steps, batch_size=8, steps_per_call=2, log_every=2, checkpoint_every=4, seed=3)
  cfg.update(kw)
  return loop.fit(
    model_fn=lambda rngs: Toy(rngs=rngs),
    loss_fn=toy_loss,
    step_config=STEP,
    loop=loop.LoopConfig(**cfg),
    sample_batch=_sample_toy,
    key=jax.random.key(11),
    workdir=str(workdir),
  )


def test_fit_with_an_on_device_sampler_learns_and_resumes_exactly(tmp_path):
  import jax

  full = run_sampled(tmp_path / "full", 12)
  records = [json.loads(r) for r in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [2, 4, 6, 8, 10, 12]
  assert records[-1]["loss"] < records[0]["loss"]
  # the batches come from the state's keys: a resumed run sees the same ones
  run_sampled(tmp_path / "part", 8)
  resumed = run_sampled(tmp_path / "part", 12)
  assert resumed.resumed_from == 8
  assert training.params_digest(resumed.state.params) == training.params_digest(full.state.params)
  # the base key is the one given (another key, other batches, other weights)
  assert int(full.state.step) == 12
  np.testing.assert_array_equal(full.state.key, jax.random.key_data(jax.random.key(11)))
  other = loop.fit(
    model_fn=lambda rngs: Toy(rngs=rngs),
    loss_fn=toy_loss,
    step_config=STEP,
    loop=loop.LoopConfig(steps=12, batch_size=8, steps_per_call=2, log_every=2, seed=3),
    sample_batch=_sample_toy,
    workdir=str(tmp_path / "other"),
  )
  assert training.params_digest(other.state.params) != training.params_digest(full.state.params)
  # one step per call (no loop) draws the same batches as two per call
  single = run_sampled(tmp_path / "single", 12, steps_per_call=1, log_every=1, checkpoint_every=4)
  for a, b in zip(
    jax.tree.leaves(single.state.params), jax.tree.leaves(full.state.params), strict=True
  ):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_fit_needs_exactly_one_batch_source(tmp_path):
  with pytest.raises(ValueError, match="exactly one batch source"):
    loop.fit(
      model_fn=lambda rngs: Toy(rngs=rngs),
      loss_fn=toy_loss,
      step_config=STEP,
      loop=loop.LoopConfig(steps=2, batch_size=8),
      workdir=str(tmp_path),
    )
  with pytest.raises(ValueError, match="exactly one batch source"):
    loop.fit(
      model_fn=lambda rngs: Toy(rngs=rngs),
      loss_fn=toy_loss,
      step_config=STEP,
      loop=loop.LoopConfig(steps=2, batch_size=8),
      train_iter=toy_iter(),
      sample_batch=_sample_toy,
      workdir=str(tmp_path),
    )
