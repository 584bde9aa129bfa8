"""mrflax.nn.gelu: the erf form of the exact GELU against JAX's erfc form and the definition."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from mrflax.nn import gelu


def _phi(x: float) -> float:
  return 0.5 * math.erfc(-x / math.sqrt(2.0))  # standard normal CDF, accurate in both tails


def test_matches_jax_erfc_form_to_float32_round_off():
  xs = jnp.linspace(-12.0, 12.0, 240_001, dtype=jnp.float32)
  ours, theirs = gelu(xs), jax.nn.gelu(xs, approximate=False)
  assert ours.dtype == jnp.float32
  np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)
  g_ours = jax.vmap(jax.grad(gelu))(xs)
  g_theirs = jax.vmap(jax.grad(lambda x: jax.nn.gelu(x, approximate=False)))(xs)
  np.testing.assert_allclose(g_ours, g_theirs, rtol=0, atol=1e-6)


def test_is_x_times_the_normal_cdf_in_float64():
  with jax.enable_x64():
    xs = np.array([-6.0, -3.0, -1.0, -0.1, 0.0, 0.3, 1.0, 2.5, 8.0])
    got = np.asarray(gelu(jnp.asarray(xs, jnp.float64)))
    want = np.array([x * _phi(x) for x in xs])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    # derivative: Phi(x) + x phi(x)
    d = np.asarray(jax.vmap(jax.grad(gelu))(jnp.asarray(xs, jnp.float64)))
    dwant = np.array([_phi(x) + x * math.exp(-x * x / 2) / math.sqrt(2 * math.pi) for x in xs])
    np.testing.assert_allclose(d, dwant, rtol=1e-12, atol=1e-15)


def test_keeps_bfloat16():
  x = jnp.linspace(-3, 3, 7, dtype=jnp.bfloat16)
  y = gelu(x)
  assert y.dtype == jnp.bfloat16
  np.testing.assert_allclose(
    np.asarray(y, np.float32), np.asarray(gelu(x.astype(jnp.float32))), atol=2e-2
  )
