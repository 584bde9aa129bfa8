"""jaxwavelets as a second, independent Haar oracle (next to PyWavelets in ``haar_test.py``).

jaxwavelets (PyPI ``jaxwavelets``, a PyWavelets-compatible wavelet library written in JAX: padded
``jnp.convolve`` filter banks, axis by axis) checks mrflax's Haar analysis and synthesis, one
level in 1-D, 2-D and 3-D and the multi-level decomposition, in float64 (``jax.enable_x64``
around every test, as in the other float64 wavelet tests). The mapping is the one
``haar_test.py`` documents for PyWavelets, with no sign or scale change: mrflax's approximation
is ``cA`` / the all-``a`` band; its detail band ``eta`` (in increasing binary value, first
spatial axis most significant) is the band keyed ``"".join("ad"[e] for e in eta)`` (2-D:
mrflax ``01, 10, 11`` = ``cV, cH, cD``); multi-level details coarsest first in both.

jaxwavelets 0.1.13 agrees with PyWavelets 1e-15 for the Haar wavelet on everything these tests
use (even sizes; modes ``symmetric``, ``reflect``, ``periodization``, which coincide for Haar on
even sizes) and on odd sizes in those modes; ``test_jaxwavelets_agrees_with_pywavelets`` checks
the even-size part. Where it differs from PyWavelets (outside what mrflax needs, so not tested):

* modes ``zero``, ``periodic``, ``smooth``, ``antisymmetric`` raise ``NotImplementedError``
  (the mode goes straight to ``jnp.pad``), and ``constant`` is ``jnp.pad``'s zero padding
  instead of PyWavelets' edge replication: different coefficients on odd lengths;
* ``waverecn`` / ``idwtn`` of an odd-sized decomposition trims to the original shape, whereas
  ``pywt.waverecn`` returns the even (padded) size; cropped, the two agree;
* ``reflect`` on an axis of length 1 (deep levels) works in jaxwavelets, PyWavelets raises;
* no biorthogonal wavelets (``bior*``); irrelevant for Haar.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import jaxwavelets as jw
import numpy as np
import pytest
import pywt

from mrflax import wavelets

DIMS = (1, 2, 3)
ATOL = 1e-12  # float64; the sums involve at most 2^(3*4) terms of size ~1


@pytest.fixture(autouse=True)
def _x64():
  with jax.enable_x64(True):  # jaxwavelets builds its filters inside: float64 too
    yield


def _random(shape, seed=0):
  return np.random.default_rng(seed).standard_normal(shape)


def _keys(d):
  """jaxwavelets / PyWavelets band keys in mrflax's band order (``a``: 0, ``d``: 1)."""
  return ["".join("ad"[e] for e in eta) for eta in itertools.product((0, 1), repeat=d)][1:]


def _to_pyramid(coeffs: jw.WaveletCoeffs, d: int) -> wavelets.HaarPyramid:
  details = tuple(jnp.stack([level[k] for k in _keys(d)], axis=-2) for level in coeffs.details)
  return wavelets.HaarPyramid(approx=coeffs.approx, details=details, ndim=d)


def _to_coeffs(pyr: wavelets.HaarPyramid, x_shape, axes) -> jw.WaveletCoeffs:
  d = pyr.ndim
  details = tuple({k: level[..., i, :] for i, k in enumerate(_keys(d))} for level in pyr.details)
  shapes = []
  shape = list(x_shape)
  for _ in range(pyr.levels):  # the shape before each level, finest first, then reversed
    shapes.append(tuple(shape))
    shape = [s // 2 if i in axes else s for i, s in enumerate(shape)]
  return jw.WaveletCoeffs(pyr.approx, details, tuple(reversed(shapes)), axes)


def test_dwt_1d():
  x = _random((3, 16, 2), seed=1)
  approx, details = wavelets.haar_step(jnp.asarray(x), ndim=1)
  # jw.dwt is 1-D: map it over the batch and channel axes
  one = jax.vmap(jax.vmap(lambda r: jw.dwt(r, "haar"), in_axes=1, out_axes=1))
  ca, cd = one(jnp.asarray(x))
  np.testing.assert_allclose(approx, ca, atol=ATOL)
  np.testing.assert_allclose(details[..., 0, :], cd, atol=ATOL)
  bands = jw.dwtn(jnp.asarray(x), "haar", axes=(1,))
  np.testing.assert_allclose(approx, bands["a"], atol=ATOL)
  np.testing.assert_allclose(details[..., 0, :], bands["d"], atol=ATOL)
  inverse = jax.vmap(jax.vmap(lambda a, c: jw.idwt(a, c, "haar"), in_axes=1, out_axes=1))
  np.testing.assert_allclose(
    wavelets.haar_step_inverse(approx, details, ndim=1), inverse(ca, cd), atol=ATOL
  )


def test_dwt2():
  x = _random((3, 8, 16, 2), seed=2)
  approx, details = wavelets.haar_step(jnp.asarray(x), ndim=2)
  ca, (ch, cv, cd) = jw.dwt2(jnp.asarray(x), "haar", axes=(1, 2))
  np.testing.assert_allclose(approx, ca, atol=ATOL)
  for k, ref in enumerate((cv, ch, cd)):  # mrflax bands 01, 10, 11
    np.testing.assert_allclose(details[..., k, :], ref, atol=ATOL)
  ours = (approx, (details[..., 1, :], details[..., 0, :], details[..., 2, :]))
  back = jw.idwt2(ours, "haar", axes=(1, 2))
  np.testing.assert_allclose(back, x, atol=ATOL)
  np.testing.assert_allclose(wavelets.haar_step_inverse(ca, details, ndim=2), x, atol=ATOL)


@pytest.mark.parametrize("d", DIMS)
def test_dwtn_and_idwtn(d):
  x = _random((2, *([8] * d), 3), seed=3 + d)
  axes = tuple(range(1, d + 1))
  approx, details = wavelets.haar_step(jnp.asarray(x), ndim=d)
  bands = jw.dwtn(jnp.asarray(x), "haar", axes=axes)
  assert set(bands) == {"a" * d, *_keys(d)}
  np.testing.assert_allclose(approx, bands["a" * d], atol=ATOL)
  for k, key in enumerate(_keys(d)):
    np.testing.assert_allclose(details[..., k, :], bands[key], atol=ATOL)
  ours = {"a" * d: approx, **{key: details[..., k, :] for k, key in enumerate(_keys(d))}}
  np.testing.assert_allclose(jw.idwtn(ours, "haar", axes=axes), x, atol=ATOL)


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("levels", [1, 2, None])  # None: jaxwavelets' maximum level (4 here)
def test_wavedecn_and_waverecn(d, levels):
  x = _random((2, *([16] * d), 2), seed=10 + d)
  axes = tuple(range(1, d + 1))
  coeffs = jw.wavedecn(jnp.asarray(x), "haar", level=levels, axes=axes)
  assert len(coeffs.details) == (levels or 4)  # log2(16): the maximum level of size 16
  levels = len(coeffs.details)
  pyr = wavelets.haar_analysis(jnp.asarray(x), levels=levels, ndim=d)
  np.testing.assert_allclose(pyr.approx, coeffs.approx, atol=ATOL)
  for level in range(levels):  # both coarsest first
    for k, key in enumerate(_keys(d)):
      np.testing.assert_allclose(
        pyr.details[level][..., k, :], coeffs.details[level][key], atol=ATOL
      )
  # synthesis: each library inverts the other's coefficients, and both invert to x
  np.testing.assert_allclose(wavelets.haar_synthesis(_to_pyramid(coeffs, d)), x, atol=ATOL)
  np.testing.assert_allclose(jw.waverecn(_to_coeffs(pyr, x.shape, axes), "haar"), x, atol=ATOL)
  np.testing.assert_allclose(wavelets.haar_synthesis(pyr), jw.waverecn(coeffs, "haar"), atol=ATOL)
  # band energies (Parseval per band) from the oracle's coefficients
  energies = wavelets.band_energies(pyr)
  reduce = (*axes, -1)
  np.testing.assert_allclose(energies.approx, jnp.sum(coeffs.approx**2, axis=reduce), rtol=1e-12)
  for level in range(levels):
    for k, key in enumerate(_keys(d)):
      np.testing.assert_allclose(
        energies.details[level][..., k],
        jnp.sum(coeffs.details[level][key] ** 2, axis=reduce),
        rtol=1e-12,
      )


def test_wavedec2_and_waverec2():
  x = _random((2, 8, 16, 3), seed=20)
  coeffs = jw.wavedec2(jnp.asarray(x), "haar", level=3, axes=(1, 2))  # [cA3, (cH, cV, cD)...]
  pyr = wavelets.haar_analysis(jnp.asarray(x), levels=3, ndim=2)
  np.testing.assert_allclose(pyr.approx, coeffs[0], atol=ATOL)
  for level, (ch, cv, cd) in enumerate(coeffs[1:]):
    for k, ref in enumerate((cv, ch, cd)):
      np.testing.assert_allclose(pyr.details[level][..., k, :], ref, atol=ATOL)
  np.testing.assert_allclose(jw.waverec2(coeffs, "haar", axes=(1, 2)), x, atol=ATOL)


@pytest.mark.parametrize("mode", ["symmetric", "reflect", "periodization"])
def test_jaxwavelets_agrees_with_pywavelets(mode):
  """The two oracles agree with each other where they are used here (Haar, even sizes)."""
  for d in DIMS:
    x = _random((2, *([8] * d), 2), seed=30 + d)
    axes = tuple(range(1, d + 1))
    ours = jw.wavedecn(jnp.asarray(x), "haar", mode=mode, level=2, axes=axes)
    ref = pywt.wavedecn(x, "haar", mode=mode, level=2, axes=axes)
    np.testing.assert_allclose(ours.approx, ref[0], atol=ATOL)
    for got, want in zip(ours.details, ref[1:], strict=True):
      assert set(got) == set(want)
      for key in want:
        np.testing.assert_allclose(got[key], want[key], atol=ATOL)
    np.testing.assert_allclose(
      jw.waverecn(ours, "haar", mode=mode),
      pywt.waverecn(ref, "haar", mode=mode, axes=axes),
      atol=ATOL,
    )
