"""Average pooling is the L2 projection onto V_{j-1}: THEORY.md §2.3 and tests T1-T16."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mrflax import wavelets

DIMS = (1, 2, 3)


def _random(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape))


def _shape(batch, d, n, c):
  return (*batch, *([n] * d), c)


@pytest.fixture(autouse=True)
def _x64():
  with jax.enable_x64(True):
    yield


@pytest.mark.parametrize("d", DIMS)
def test_project_is_block_mean(d):
  x = _random(_shape((2,), d, 8, 3))
  for levels in (1, 2, 3):
    block = 2**levels
    # reference: numpy block mean via reshape (fine here: no sharding in the oracle)
    ref = np.asarray(x)
    for axis in range(1, d + 1):
      shp = list(ref.shape)
      shp[axis : axis + 1] = [shp[axis] // block, block]
      ref = ref.reshape(shp).mean(axis=axis + 1)
    np.testing.assert_allclose(wavelets.project(x, levels=levels, ndim=d), ref, atol=1e-12)
  # T10: P∘P = P^{∘2}
  np.testing.assert_allclose(
    wavelets.project(wavelets.project(x, ndim=d), ndim=d),
    wavelets.project(x, levels=2, ndim=d),
    atol=1e-12,
  )


@pytest.mark.parametrize("d", DIMS)
def test_projection_identities(d):
  x = _random(_shape((3,), d, 8, 2), seed=1)
  g = _random(_shape((3,), d, 4, 2), seed=2)
  P = lambda v: wavelets.project(v, ndim=d)
  E = lambda v: wavelets.embed(v, ndim=d)
  Q = lambda v: wavelets.detail(v, ndim=d)
  inner = lambda a, b: wavelets.l2_inner(a, b, ndim=d)
  np.testing.assert_allclose(P(E(g)), g, atol=1e-12)  # T2: P ι = I
  np.testing.assert_allclose(E(P(E(P(x)))), E(P(x)), atol=1e-12)  # T3: ιP idempotent
  np.testing.assert_allclose(Q(Q(x)), Q(x), atol=1e-12)  # T3: Q idempotent
  np.testing.assert_allclose(P(Q(x)), 0.0, atol=1e-12)  # T3: P Q = 0
  np.testing.assert_allclose(inner(P(x), g), inner(x, E(g)), atol=1e-12)  # T4: adjoint
  np.testing.assert_allclose(inner(Q(x), E(g)), 0.0, atol=1e-12)  # T5: residual ⟂ V_{j-1}
  np.testing.assert_allclose(
    inner(x, x), inner(E(P(x)), E(P(x))) + inner(Q(x), Q(x)), rtol=1e-12
  )  # T6: Pythagoras
  np.testing.assert_allclose(
    wavelets.l2_norm(E(g), ndim=d), wavelets.l2_norm(g, ndim=d), rtol=1e-12
  )  # T16: resolution invariance
  # Q is self-adjoint for the Euclidean inner product too.
  y = _random(x.shape, seed=3)
  np.testing.assert_allclose(jnp.sum(Q(x) * y), jnp.sum(x * Q(y)), rtol=1e-10)


@pytest.mark.parametrize("d", DIMS)
def test_projection_is_the_best_approximation(d):
  """ιPx is closer to x than any other element of ι(V_{j-1}) (optimality of the projection)."""
  x = _random(_shape((), d, 8, 1), seed=4)
  best = wavelets.l2_norm(wavelets.detail(x, ndim=d), ndim=d)
  for seed in range(5):
    g = wavelets.project(x, ndim=d) + 0.1 * _random(_shape((), d, 4, 1), seed=10 + seed)
    assert wavelets.l2_norm(x - wavelets.embed(g, ndim=d), ndim=d) > best


def test_linear_channel_maps_commute_relu_does_not():
  x = _random((2, 8, 8, 3), seed=5)
  w = _random((3, 4), seed=6)
  P = wavelets.project
  np.testing.assert_allclose(P(x @ w), P(x) @ w, atol=1e-12)  # T11
  assert float(jnp.max(jnp.abs(P(jax.nn.relu(x)) - jax.nn.relu(P(x))))) > 0.1


def test_max_pooling_is_not_a_projection():
  """THEORY §2.3: the max-pool residual is not orthogonal to the coarse space."""
  x = _random((256, 8, 8, 1), seed=7)
  m = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
  resid = x - wavelets.embed(m)
  assert float(jnp.mean(wavelets.l2_inner(resid, wavelets.embed(m)))) < -0.1


def test_pixel_coefficient_conversion():
  x = _random((2, 8, 8, 3), seed=8)
  y = _random((2, 8, 8, 3), seed=9)
  cx = wavelets.pixels_to_coefficients(x)
  np.testing.assert_allclose(wavelets.coefficients_to_pixels(cx), x, atol=1e-12)
  # Euclidean inner product of coefficients = L2 inner product of the functions.
  cy = wavelets.pixels_to_coefficients(y)
  np.testing.assert_allclose(jnp.sum(cx * cy, axis=(1, 2, 3)), wavelets.l2_inner(x, y), rtol=1e-12)
  # Analysis of the coefficients = wavelet coefficients of the function: at the coarsest level
  # <f, phi_{0,0}> = mean(x) (phi_0 = 1 on [0,1)^2).
  approx = wavelets.haar_analysis(cx, levels=3).approx
  np.testing.assert_allclose(approx[:, 0, 0, :], jnp.mean(x, axis=(1, 2)), atol=1e-12)


# ----------------------------------------------------------------------- property-based (T1-T16)
_DTYPES = {"float32": (jnp.float32, 2e-5), "float64": (jnp.float64, 1e-12)}


@functools.partial(jax.jit, static_argnames=("levels", "d"))
def _property_terms(x, y, g, *, levels, d):
  """Everything the property test compares, in one compiled call (one compile per example)."""
  pyr = wavelets.haar_analysis(x, levels=levels, ndim=d)
  lin = wavelets.haar_analysis(2 * x - y, levels=levels, ndim=d)
  lin_ref = jax.tree.map(
    lambda a, b: 2 * a - b, pyr, wavelets.haar_analysis(y, levels=levels, ndim=d)
  )
  return dict(
    pyr=pyr,
    recon=wavelets.haar_synthesis(pyr),
    total=wavelets.band_energies(pyr).total(),
    energy=jnp.sum(x**2, axis=tuple(range(-d - 1, 0))),
    lin=lin,
    lin_ref=lin_ref,
    pooled=2 ** (levels * d / 2) * wavelets.project(x, levels=levels, ndim=d),
    pe=wavelets.project(wavelets.embed(g, levels=levels, ndim=d), levels=levels, ndim=d),
    adj_l=wavelets.l2_inner(wavelets.project(x, levels=levels, ndim=d), g, ndim=d),
    adj_r=wavelets.l2_inner(x, wavelets.embed(g, levels=levels, ndim=d), ndim=d),
  )


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
  d=st.sampled_from(DIMS),
  levels=st.integers(0, 3),
  batch=st.sampled_from([(), (1,), (3,), (2, 3)]),
  channels=st.integers(1, 3),
  extra=st.integers(1, 2),
  dtype=st.sampled_from(sorted(_DTYPES)),
  seed=st.integers(0, 2**16),
)
def test_properties(d, levels, batch, channels, extra, dtype, seed):
  dt, tol = _DTYPES[dtype]
  n = 2**levels * extra
  x = _random(_shape(batch, d, n, channels), seed).astype(dt)
  y = _random(x.shape, seed + 1).astype(dt)
  g = _random(_shape(batch, d, extra, channels), seed + 2).astype(dt)
  r = _property_terms(x, y, g, levels=levels, d=d)
  pyr = r["pyr"]
  assert pyr.approx.shape == _shape(batch, d, extra, channels)
  assert all(a.dtype == dt for a in jax.tree.leaves(pyr))
  assert r["recon"].dtype == dt
  # T7 perfect reconstruction and T8 Parseval
  np.testing.assert_allclose(r["recon"], x, atol=tol * 10, rtol=tol)
  np.testing.assert_allclose(r["total"], r["energy"], rtol=tol)
  # T1 linearity
  for a, b in zip(jax.tree.leaves(r["lin"]), jax.tree.leaves(r["lin_ref"]), strict=True):
    np.testing.assert_allclose(a, b, atol=tol * 20)
  # T9 the coarsest approximation is a scaled block mean; T2 P ι = I; T4 adjointness.
  np.testing.assert_allclose(pyr.approx, r["pooled"], atol=tol * 20, rtol=tol * 10)
  np.testing.assert_allclose(r["pe"], g, atol=tol * 10)
  np.testing.assert_allclose(r["adj_l"], r["adj_r"], atol=tol * 20, rtol=tol * 10)
