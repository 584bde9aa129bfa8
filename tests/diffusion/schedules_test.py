"""Noise schedules, log-uniform noise levels and the reverse VE sampler (THEORY §7.2, §7.5)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from mrflax import diffusion as D


def test_schedules():
  a, s = D.ve(jnp.array([0.1, 2.0]))
  np.testing.assert_array_equal(a, [1.0, 1.0])
  np.testing.assert_allclose(s, [0.1, 2.0])
  t = jnp.array([0.1, 1.0, 3.0])
  a, s = D.vp(t)
  np.testing.assert_allclose(a, np.exp(-np.array([0.1, 1.0, 3.0])), rtol=1e-6)
  np.testing.assert_allclose(a**2 + s**2, 1.0, atol=1e-6)
  a, s = D.ddpm(jnp.array([0.9, 0.25]))
  np.testing.assert_allclose(a, [math.sqrt(0.9), 0.5], rtol=1e-6)
  np.testing.assert_allclose(a**2 + s**2, 1.0, atol=1e-6)


def test_log_uniform_sigmas_is_uniform_in_log_sigma():
  lo, hi = 0.02, 10.0
  s = np.asarray(D.log_uniform_sigmas(jax.random.key(0), 20000, lo, hi))
  assert s.shape == (20000,) and s.min() >= lo and s.max() <= hi
  u = (np.log(s) - math.log(lo)) / math.log(hi / lo)
  assert scipy.stats.kstest(u, "uniform").pvalue > 1e-3
  # the same draw as exp(U[log lo, log hi]) with that key (the GHM training stream)
  want = jnp.exp(
    jax.random.uniform(jax.random.key(0), (20000,), minval=jnp.log(lo), maxval=jnp.log(hi))
  )
  np.testing.assert_array_equal(s, want)
  np.testing.assert_allclose(D.log_uniform_sigmas(jax.random.key(1), 3, 0.5, 0.5), 0.5, rtol=1e-6)
  for lo_, hi_ in ((0.0, 1.0), (2.0, 1.0), (1.0, math.inf)):
    with pytest.raises(ValueError, match="0 < lo <= hi"):
      D.log_uniform_sigmas(jax.random.key(0), 3, lo_, hi_)


def test_ve_sigma_grid():
  g = D.ve_sigma_grid(num_steps=4, sigma_max=16.0, sigma_min=1.0)
  np.testing.assert_allclose(g, [16.0, 8.0, 4.0, 2.0, 1.0], rtol=1e-6)
  with pytest.raises(ValueError, match="num_steps must be >= 1"):
    D.ve_sigma_grid(num_steps=0)
  with pytest.raises(ValueError, match="sigma_min < sigma_max"):
    D.ve_sigma_grid(num_steps=3, sigma_max=1.0, sigma_min=2.0)


def test_reverse_ve_with_the_exact_gaussian_denoiser():
  # X ~ N(mu, tau^2): D(z, s) = mu + tau^2 / (tau^2 + s^2) (z - mu); the sampler returns ~X.
  mu, tau = 1.5, 0.5
  denoise = lambda z, s: mu + tau**2 / (tau**2 + s[:, None] ** 2) * (z - mu)
  sig = D.ve_sigma_grid(num_steps=400, sigma_max=20.0, sigma_min=1e-3)
  z0 = mu + float(sig[0]) * jax.random.normal(jax.random.key(0), (20000, 1))
  z = np.asarray(jax.jit(lambda k, z: D.reverse_ve(k, denoise, z, sig))(jax.random.key(1), z0))
  assert abs(z.mean() - mu) < 0.03
  assert abs(z.std() - math.hypot(tau, 1e-3)) < 0.03
  # no noise steps at all: a one-step grid moves z to the denoiser's output plus the noise
  one = D.reverse_ve(jax.random.key(2), lambda z, s: jnp.zeros_like(z), jnp.ones((2, 1)), sig[-2:])
  assert one.shape == (2, 1)
