"""Train step semantics: skipping, clipping, EMA, k-steps-per-call, 1 vs 4 devices."""

import jax
import numpy as np
import pytest

from mrflax import sharding
from mrflax.training.steps import StepConfig, global_norm
from tests.training.toy import make, make_batch, toy_loss


def leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_accepted_step_updates_params_and_ema():
  trainer, s0 = make()
  step = jax.jit(trainer.train_step)
  s1, m1 = step(s0, make_batch(0))
  assert int(m1["skipped"]) == 0 and float(m1["lr"]) == 0.0  # warm-up starts at lr 0
  s2, m2 = step(s1, make_batch(1))
  assert float(m2["lr"]) == pytest.approx(5e-3)
  assert any(
    not np.array_equal(a, b) for a, b in zip(leaves(s2.params), leaves(s1.params), strict=True)
  )
  for e, p0, p in zip(leaves(s2.ema), leaves(s1.params), leaves(s2.params), strict=True):
    np.testing.assert_allclose(e, 0.9 * p0 + 0.1 * p, rtol=1e-5, atol=1e-7)
  assert int(s2.accepted) == 2 and int(s2.step) == 2 and int(s2.skipped) == 0


@pytest.mark.parametrize("bad", ["nan_input", "huge_grad"])
def test_skip_leaves_params_opt_and_ema_untouched(bad):
  trainer, s0 = make()
  step = jax.jit(trainer.train_step)
  s1, _ = step(s0, make_batch(0))
  s1, _ = step(s1, make_batch(1))
  batch = make_batch(2)
  if bad == "nan_input":
    batch["x"][0, 0, 0, 0] = np.nan
  else:
    batch = make_batch(2, scale=1e5)  # gradient norm far above the threshold of 50
  s2, m = step(s1, batch)
  assert int(m["skipped"]) == 1
  if bad == "huge_grad":
    assert float(m["grad_norm"]) >= 50.0
  else:
    assert not np.isfinite(float(m["loss"]))
  for name in ("params", "opt_state", "ema"):
    for a, b in zip(leaves(getattr(s2, name)), leaves(getattr(s1, name)), strict=True):
      np.testing.assert_array_equal(a, b)
  assert int(s2.step) == 3 and int(s2.skipped) == 1 and int(s2.consecutive_skips) == 1
  s3, m3 = step(s2, make_batch(3))  # a good batch resets the run of skips
  assert int(m3["skipped"]) == 0 and int(s3.consecutive_skips) == 0 and int(s3.skipped) == 1
  assert float(m3["lr"]) == pytest.approx(1e-2)  # the schedule advanced through the skip


def test_clipping_applied_after_measuring_the_norm():
  cfg = StepConfig(
    lr=1.0,
    warmup_steps=0,
    weight_decay=0.0,
    grad_clip=1e-3,
    skip_threshold=None,
    ema_decay=None,
    optimizer="adamw",
  )
  trainer, s0 = make(cfg)
  _, _, _, grads = trainer.loss_and_grads(s0.params, s0.rest, make_batch(0), trainer.step_key(s0))
  _, m = trainer.train_step(s0, make_batch(0))
  np.testing.assert_allclose(float(m["grad_norm"]), float(global_norm(grads)), rtol=1e-5)
  assert float(m["grad_norm"]) > 1e-3  # the reported norm is the pre-clip one


def test_adaptive_threshold_kicks_in():
  cfg = StepConfig(lr=1e-3, warmup_steps=0, skip_threshold=1e9, adaptive_skip=3.0, adaptive_after=2)
  trainer, s = make(cfg)
  step = jax.jit(trainer.train_step)
  norms = []
  for i in range(3):
    before = s
    s, m = step(s, make_batch(i))
    assert int(m["skipped"]) == 0
    norms.append(np.float32(m["grad_norm"]))
    # the threshold of this step: the fixed one until `adaptive_after` updates were accepted,
    # then 3 x the running mean of accepted norms *before* this step's update (float32)
    expect = np.float32(1e9) if i < 2 else np.float32(3.0) * np.asarray(before.norm_ema)
    assert np.float32(m["skip_threshold"]) == expect, i
  # the running mean, recomputed: the first accepted norm, then 0.99 / 0.01 updates
  ema = norms[0]
  for g in norms[1:]:
    ema = np.float32(0.99) * ema + np.float32(0.01) * g
  np.testing.assert_allclose(np.asarray(s.norm_ema), ema, rtol=1e-6)
  threshold = np.float32(3.0) * np.asarray(s.norm_ema)
  s, m = step(s, make_batch(9, scale=1e3))
  assert np.float32(m["skip_threshold"]) == threshold
  # skipped by the adaptive threshold alone: the norm is far below the fixed one
  assert int(m["skipped"]) == 1 and threshold <= float(m["grad_norm"]) < 1e9


def test_k_steps_per_call_equal_k_single_steps():
  trainer, s0 = make()
  batches = [make_batch(i) for i in range(4)]
  stacked = jax.tree.map(lambda *xs: np.stack(xs), *batches)
  sk, mk = jax.jit(trainer.train_steps)(s0, stacked)
  s = s0
  single = jax.jit(trainer.train_step)
  losses = []
  for b in batches:
    s, m = single(s, b)
    losses.append(float(m["loss"]))
  np.testing.assert_allclose(np.asarray(mk["loss"]), losses, rtol=1e-6)
  for a, b in zip(leaves(sk), leaves(s), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  # k = 1 takes the loop-free path: the same as one single step, metrics stacked to [1]
  s1, m1 = jax.jit(trainer.train_steps)(s0, jax.tree.map(lambda x: x[:1], stacked))
  assert m1["loss"].shape == (1,) and float(m1["loss"][0]) == pytest.approx(losses[0], rel=1e-6)
  s_one, _ = single(s0, batches[0])
  for a, b in zip(leaves(s1), leaves(s_one), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_one_device_equals_four_devices():
  trainer, s0 = make()
  batches = jax.tree.map(lambda *xs: np.stack(xs), *[make_batch(i) for i in range(3)])
  results = []
  for n in (1, 4):
    mesh = sharding.make_mesh(n)
    rep = sharding.replicated(mesh)
    step = jax.jit(
      trainer.train_steps,
      in_shardings=(rep, sharding.batch_sharding(mesh, leading=1)),
      out_shardings=(rep, rep),
    )
    state = jax.device_put(s0, rep)
    out_state, metrics = step(state, sharding.shard_batch(batches, mesh, leading=1))
    results.append((out_state, metrics))
  (s1, m1), (s4, m4) = results
  np.testing.assert_allclose(np.asarray(m1["loss"]), np.asarray(m4["loss"]), rtol=1e-5)
  for a, b in zip(leaves(s1.params), leaves(s4.params), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_eval_step_uses_ema():
  trainer, s0 = make()
  s1, _ = jax.jit(trainer.train_step)(s0, make_batch(0))
  s1, _ = jax.jit(trainer.train_step)(s1, make_batch(1))
  key = jax.random.key(5)
  ema_loss = trainer.eval_step(s1, make_batch(7), key)["loss"]
  raw_loss = trainer.eval_step(s1, make_batch(7), key, ema=False)["loss"]
  ema_model = trainer.model(s1, ema=True)
  np.testing.assert_allclose(ema_loss, toy_loss(ema_model, make_batch(7), key)[0], rtol=1e-6)
  assert float(ema_loss) != float(raw_loss)


def test_bad_optimizer_name():
  with pytest.raises(ValueError, match="optimizer must be 'adamw' or 'adamax'"):
    StepConfig(optimizer="sgd").transform()
