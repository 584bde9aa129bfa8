"""Normative test V1 (THEORY.md §4.2): one decoder block = one two-step Euler step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mrflax import diffusion
from mrflax.nn import DecBlock, decblock_as_sde


def _block64(res, seed, n_blocks=5, **kw):
  blk = DecBlock(res=res, width=8, zdim=3, num_applications=n_blocks, rngs=nnx.Rngs(seed), **kw)
  st = nnx.state(blk, nnx.Param)
  leaves, tree = jax.tree_util.tree_flatten(st)
  leaves = [
    jnp.asarray(np.asarray(p, np.float64) + 0.1 * np.random.default_rng(i).normal(size=p.shape))
    for i, p in enumerate(leaves)
  ]
  nnx.update(blk, jax.tree_util.tree_unflatten(tree, leaves))
  return blk


@pytest.mark.parametrize("res", [1, 4])
@pytest.mark.parametrize("posterior", [True, False])
@pytest.mark.parametrize(
  "kw", [{}, {"step_size": "explicit"}, {"step_size": "explicit", "shared_sigma": True}]
)
def test_block_equals_two_step_euler(res, posterior, kw):
  n_blocks = 5
  with jax.enable_x64(True):
    blk = _block64(res, seed=res, **kw)
    assert blk.prior.c4.kernel[...].dtype == jnp.float64
    rng = np.random.default_rng(10 + res)
    h = jnp.asarray(rng.normal(size=(2, res, res, 8)))
    acts = jnp.asarray(rng.normal(size=(2, res, res, 8))) if posterior else None
    eps = jnp.asarray(rng.normal(size=(2, res, res, 3)))
    tau = 0.63
    ref = blk.step_from_eps(h, acts, eps, temperature=tau).x
    assert ref.dtype == jnp.float64
    for dt in (1.0 / n_blocks, 1.0, 0.37):
      sde = decblock_as_sde(blk, h, acts, temperature=tau, dt=dt)
      dw = diffusion.brownian_increment(eps, dt=dt)
      h_half = diffusion.euler_maruyama_step(
        h, drift=sde.drift, diffusion=sde.diffusion, dw=dw, dt=dt
      )
      h_next = diffusion.euler_step(h_half, drift=sde.residual_drift(h_half), dt=dt)
      np.testing.assert_allclose(np.asarray(h_next), np.asarray(ref), rtol=0, atol=1e-12)
      assert float(jnp.max(jnp.abs(h_next - h))) > 1e-3  # the step does something


def test_temperature_scales_only_the_diffusion():
  with jax.enable_x64(True):
    blk = _block64(4, seed=0)
    h = jnp.asarray(np.random.default_rng(0).normal(size=(1, 4, 4, 8)))
    a = decblock_as_sde(blk, h, temperature=1.0, dt=0.5)
    b = decblock_as_sde(blk, h, temperature=0.5, dt=0.5)
    np.testing.assert_allclose(b.drift, a.drift, atol=1e-14)
    np.testing.assert_allclose(b.diffusion, 0.5 * a.diffusion, atol=1e-14)
  with pytest.raises(ValueError, match="dt"):
    decblock_as_sde(blk, h, dt=0.0)
  with pytest.raises(ValueError, match="temperature"):
    decblock_as_sde(blk, h, temperature=0.0, dt=1.0)


def test_float32_relative():
  blk = DecBlock(res=4, width=8, zdim=3, num_applications=5, rngs=nnx.Rngs(0))
  h = jax.random.normal(jax.random.key(0), (1, 4, 4, 8))
  e = jax.random.normal(jax.random.key(1), (1, 4, 4, 8))
  eps = jax.random.normal(jax.random.key(2), (1, 4, 4, 3))
  ref = blk.step_from_eps(h, e, eps).x
  sde = decblock_as_sde(blk, h, e, dt=0.37)
  hh = diffusion.euler_maruyama_step(
    h,
    drift=sde.drift,
    diffusion=sde.diffusion,
    dw=diffusion.brownian_increment(eps, dt=0.37),
    dt=0.37,
  )
  out = diffusion.euler_step(hh, drift=sde.residual_drift(hh), dt=0.37)
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(ref))))


def test_explicit_step_size_fields_do_not_depend_on_dt():
  """Explicit mode (THEORY.md §4.3): f, g, F are the same networks whatever N is."""
  with jax.enable_x64(True):
    a = _block64(4, seed=3, n_blocks=5, step_size="explicit")
    b = _block64(4, seed=3, n_blocks=20, step_size="explicit")
    rng = np.random.default_rng(0)
    h = jnp.asarray(rng.normal(size=(2, 4, 4, 8)))
    e = jnp.asarray(rng.normal(size=(2, 4, 4, 8)))
    for acts in (e, None):
      fa = decblock_as_sde(a, h, acts, dt=a.dt)
      fb = decblock_as_sde(b, h, acts, dt=b.dt)
      np.testing.assert_allclose(fa.drift, fb.drift, rtol=1e-12, atol=1e-12)
      np.testing.assert_allclose(fa.diffusion, fb.diffusion, rtol=1e-12, atol=1e-12)
      np.testing.assert_allclose(fa.residual_drift(h), fb.residual_drift(h), rtol=1e-10, atol=1e-12)
      assert float(jnp.max(jnp.abs(fa.drift))) > 1e-2
    # and the step itself shrinks with dt: increments O(dt) + O(sqrt(dt)) noise
    eps = jnp.zeros((2, 4, 4, 3))
    da = a.step_from_eps(h, e, eps).x - h
    db = b.step_from_eps(h, e, eps).x - h
    ratio = float(jnp.linalg.norm(db) / jnp.linalg.norm(da))
    assert 0.15 < ratio < 0.5  # deterministic part scales like dt (1/4) plus sqrt(dt) mean terms


def test_shared_sigma_has_no_variance_mismatch():
  with jax.enable_x64(True):
    blk = _block64(4, seed=0, shared_sigma=True)
    assert blk.enc.c4.kernel.shape[-1] == 3  # the posterior outputs a mean only
    rng = np.random.default_rng(1)
    h = jnp.asarray(rng.normal(size=(1, 4, 4, 8)))
    e = jnp.asarray(rng.normal(size=(1, 4, 4, 8)))
    p = blk.parts(h, e)
    np.testing.assert_array_equal(p["q_logstd"], p["p_logstd"])
    out = blk.step_from_eps(h, e, jnp.zeros((1, 4, 4, 3)))
    drift = 0.5 * jnp.sum((p["q_mean"] - p["p_mean"]) ** 2 * jnp.exp(-2 * p["p_logstd"]), (1, 2))
    assert float(jnp.min(drift)) > 1e-2
    np.testing.assert_allclose(out.kl, drift, rtol=1e-12)
