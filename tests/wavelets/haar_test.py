"""One-level and multi-level Haar transforms: exactness, orthonormality, adjointness, oracles."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import pywt

from mrflax import wavelets

DIMS = (1, 2, 3)


def _random(shape, seed=0, dtype=np.float64):
  return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _shape(batch, d, n, c):
  return (*batch, *([n] * d), c)


def _brute_force_step(x, d):
  """The defining formula y_eta[p] = 2^{-d/2} sum_o (-1)^{<eta,o>} x[2p+o], in numpy."""
  bands = []
  for eta in itertools.product((0, 1), repeat=d):  # increasing binary value, first axis MSB
    acc = 0
    for o in itertools.product((0, 1), repeat=d):
      idx = (Ellipsis, *(slice(oa, None, 2) for oa in o), slice(None))
      acc = acc + (-1) ** int(np.dot(eta, o)) * x[idx]
    bands.append(acc * 2.0 ** (-d / 2))
  return bands[0], np.stack(bands[1:], axis=-2)


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
def test_step_matches_defining_formula(d, batch):
  x = _random(_shape(batch, d, 4, 2))
  with jax.enable_x64(True):
    approx, details = wavelets.haar_step(jnp.asarray(x), ndim=d)
    ref_a, ref_d = _brute_force_step(x, d)
    np.testing.assert_allclose(approx, ref_a, atol=1e-12)
    np.testing.assert_allclose(details, ref_d, atol=1e-12)
    assert details.shape == (*batch, *([2] * d), 2**d - 1, 2)


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("levels", [0, 1, 2, 3])
def test_perfect_reconstruction_and_parseval_float64(d, levels):
  x = _random(_shape((2,), d, 8, 3), seed=d + levels)
  with jax.enable_x64(True):
    pyr = wavelets.haar_analysis(jnp.asarray(x), levels=levels, ndim=d)
    assert pyr.levels == levels
    np.testing.assert_allclose(wavelets.haar_synthesis(pyr), x, atol=1e-12)
    energies = wavelets.band_energies(pyr)
    np.testing.assert_allclose(
      energies.total(), np.sum(x**2, axis=tuple(range(1, d + 2))), rtol=1e-12
    )
    np.testing.assert_allclose(jnp.sum(energies.spectrum(), axis=-1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("d", DIMS)
def test_orthonormal_matrix(d):
  """Analysis of the standard basis gives an orthogonal matrix; synthesis is its transpose."""
  n = 2**d
  shape = (*([2] * d), 1)
  with jax.enable_x64(True):
    basis = jnp.eye(n, dtype=jnp.float64).reshape(n, *shape)
    approx, details = wavelets.haar_step(basis, ndim=d)
    rows = jnp.concatenate([approx.reshape(n, 1), details.reshape(n, n - 1)], axis=1)
    np.testing.assert_allclose(rows @ rows.T, np.eye(n), atol=1e-14)


@pytest.mark.parametrize("d", DIMS)
def test_synthesis_is_adjoint_of_analysis_via_vjp(d):
  x = _random(_shape((2,), d, 8, 2), seed=1)
  with jax.enable_x64(True):
    x = jnp.asarray(x)
    analysis = lambda v: wavelets.haar_analysis(v, levels=2, ndim=d)
    pyr, vjp_analysis = jax.vjp(analysis, x)
    # A random cotangent pyramid g: A^T g must equal synthesis(g).
    leaves, treedef = jax.tree.flatten(pyr)
    g = jax.tree.unflatten(treedef, [_random(a.shape, seed=7 + i) for i, a in enumerate(leaves)])
    (at_g,) = vjp_analysis(g)
    np.testing.assert_allclose(at_g, wavelets.haar_synthesis(g), atol=1e-12)
    # And the adjoint of synthesis is analysis.
    _, vjp_synthesis = jax.vjp(wavelets.haar_synthesis, g)
    (st_x,) = vjp_synthesis(x)
    for got, want in zip(jax.tree.leaves(st_x), jax.tree.leaves(analysis(x)), strict=True):
      np.testing.assert_allclose(got, want, atol=1e-12)


@pytest.mark.parametrize("d", DIMS)
def test_multi_level_equals_repeated_single_level(d):
  x = jnp.asarray(_random(_shape((2,), d, 8, 2), seed=3, dtype=np.float32))
  pyr = wavelets.haar_analysis(x, levels=3, ndim=d)
  approx = x
  finest_first = []
  for _ in range(3):
    approx, det = wavelets.haar_step(approx, ndim=d)
    finest_first.append(det)
  np.testing.assert_array_equal(pyr.approx, approx)
  for got, want in zip(pyr.details, finest_first[::-1], strict=True):
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("d", DIMS)
def test_approximation_is_scaled_average_pool(d):
  x = _random(_shape((2,), d, 8, 2), seed=4)
  with jax.enable_x64(True):
    x = jnp.asarray(x)
    approx, _ = wavelets.haar_step(x, ndim=d)
    np.testing.assert_allclose(approx, 2 ** (d / 2) * wavelets.project(x, ndim=d), atol=1e-12)
    coarsest = wavelets.haar_analysis(x, levels=3, ndim=d).approx
    mean = jnp.mean(x, axis=tuple(range(1, d + 1)), keepdims=True)
    np.testing.assert_allclose(coarsest, 2 ** (3 * d / 2) * mean, atol=1e-12)
    # Details carry exactly the energy of the detail projection Q x (THEORY §2.4).
    _, details = wavelets.haar_step(x, ndim=d)
    np.testing.assert_allclose(
      jnp.sum(details**2), jnp.sum(wavelets.detail(x, ndim=d) ** 2), rtol=1e-12
    )


# ----------------------------------------------------------------------------- PyWavelets oracle
def test_matches_pywavelets_dwt_1d():
  x = _random((3, 16, 2), seed=5)
  with jax.enable_x64(True):
    approx, details = wavelets.haar_step(jnp.asarray(x), ndim=1)
  ca, cd = pywt.dwt(x, "haar", axis=1)
  np.testing.assert_allclose(approx, ca, atol=1e-12)
  np.testing.assert_allclose(details[..., 0, :], cd, atol=1e-12)


def test_matches_pywavelets_dwt2():
  x = _random((3, 8, 16, 2), seed=6)
  with jax.enable_x64(True):
    approx, details = wavelets.haar_step(jnp.asarray(x), ndim=2)
  ca, (ch, cv, cd) = pywt.dwt2(x, "haar", axes=(1, 2))
  np.testing.assert_allclose(approx, ca, atol=1e-12)
  # band order 01 (across W) = cV, 10 (across H) = cH, 11 = cD
  for k, ref in enumerate((cv, ch, cd)):
    np.testing.assert_allclose(details[..., k, :], ref, atol=1e-12)


def test_matches_pywavelets_dwtn_3d():
  x = _random((2, 4, 8, 4, 3), seed=7)
  with jax.enable_x64(True):
    approx, details = wavelets.haar_step(jnp.asarray(x), ndim=3)
  ref = pywt.dwtn(x, "haar", axes=(1, 2, 3))
  np.testing.assert_allclose(approx, ref["aaa"], atol=1e-12)
  for k, eta in enumerate(list(itertools.product((0, 1), repeat=3))[1:]):
    key = "".join("ad"[e] for e in eta)
    np.testing.assert_allclose(details[..., k, :], ref[key], atol=1e-12)


@pytest.mark.parametrize("d", DIMS)
def test_matches_pywavelets_wavedecn_energies_and_reconstruction(d):
  levels = 3
  x = _random(_shape((2,), d, 16, 2), seed=8 + d)
  axes = tuple(range(1, d + 1))
  coeffs = pywt.wavedecn(x, "haar", level=levels, axes=axes)
  with jax.enable_x64(True):
    pyr = wavelets.haar_analysis(jnp.asarray(x), levels=levels, ndim=d)
    energies = wavelets.band_energies(pyr)
    reduce = (*range(1, d + 1), -1)
    np.testing.assert_allclose(energies.approx, np.sum(coeffs[0] ** 2, axis=reduce), rtol=1e-12)
    bands = list(itertools.product((0, 1), repeat=d))[1:]
    for level in range(levels):  # both coarsest first
      for k, eta in enumerate(bands):
        key = "".join("ad"[e] for e in eta)
        ref = coeffs[1 + level][key]
        np.testing.assert_allclose(pyr.details[level][..., k, :], ref, atol=1e-12)
        np.testing.assert_allclose(
          energies.details[level][..., k], np.sum(ref**2, axis=reduce), rtol=1e-12
        )
    recon = pywt.waverecn(coeffs, "haar", axes=axes)
    np.testing.assert_allclose(wavelets.haar_synthesis(pyr), recon, atol=1e-12)


# ------------------------------------------------------------------------- dtypes and transforms
@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.float32])
def test_dtype_preserved(dtype):
  x = jnp.asarray(_random((2, 8, 8, 3), seed=9), dtype=dtype)
  pyr = wavelets.haar_analysis(x, levels=2)
  assert {a.dtype for a in jax.tree.leaves(pyr)} == {jnp.dtype(dtype)}
  y = wavelets.haar_synthesis(pyr)
  assert y.dtype == dtype
  tol = {jnp.float16: 1e-2, jnp.bfloat16: 5e-2, jnp.float32: 1e-5}[dtype]
  np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(x, np.float32), atol=tol * 4)
  for f in (wavelets.project, wavelets.embed, wavelets.detail):
    assert f(x, ndim=2).dtype == dtype


def test_jit_vmap_grad_and_scan():
  x = jnp.asarray(_random((4, 8, 8, 2), seed=10, dtype=np.float32))
  analysis = jax.jit(lambda v: wavelets.haar_analysis(v, levels=2))
  pyr = analysis(x)
  np.testing.assert_allclose(jax.jit(wavelets.haar_synthesis)(pyr), x, atol=1e-5)
  # vmap over the batch equals the direct batched call (batch independence, T13).
  per_example = jax.vmap(lambda v: wavelets.haar_analysis(v, levels=2))(x)
  for a, b in zip(jax.tree.leaves(per_example), jax.tree.leaves(pyr), strict=True):
    np.testing.assert_allclose(a, b, atol=1e-6)
  # T14: grad of the detail energy sum((Qx)^2) is 2 Qx.
  g = jax.grad(lambda v: jnp.sum(wavelets.detail(v) ** 2))(x)
  np.testing.assert_allclose(g, 2 * wavelets.detail(x), atol=1e-5)
  # The pyramid is a pytree that lax.scan can carry.
  out, _ = jax.lax.scan(lambda p, _: (jax.tree.map(lambda a: 2 * a, p), None), pyr, length=2)
  np.testing.assert_allclose(wavelets.haar_synthesis(out), 4 * x, atol=1e-4)
