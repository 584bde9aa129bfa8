"""Bad input raises ValueError naming the argument, the axis and the size; nothing is padded."""

import re

import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest

from mrflax import wavelets


@pytest.fixture(autouse=True)
def _without_jaxtyping(monkeypatch):
  """These calls break the annotations on purpose, to check the ValueError users get (no
  jaxtyping outside the test run); the test run's jaxtyping check would answer first."""
  monkeypatch.setattr(jaxtyping.config, "jaxtyping_disable", True)


ALL = [wavelets.haar_analysis, wavelets.project, wavelets.detail]


@pytest.mark.parametrize("fn", ALL)
def test_size_not_halvable(fn):
  x = jnp.zeros((2, 12, 16, 3))
  with pytest.raises(ValueError, match=r"x has spatial axis 1 of size 12.*levels=3"):
    fn(x, levels=3, ndim=2)
  fn(x, levels=2, ndim=2)  # 12 = 3 * 4 is fine for two levels


def test_odd_size_in_single_step_and_3d():
  with pytest.raises(ValueError, match=r"axis 2 of size 7"):
    wavelets.haar_step(jnp.zeros((1, 4, 7, 4, 1)), ndim=3)


@pytest.mark.parametrize("fn", [*ALL, wavelets.embed, wavelets.haar_step])
def test_rank_too_small(fn):
  kwargs = {} if fn is wavelets.haar_step else {"levels": 1}
  with pytest.raises(ValueError, match=re.escape("x must have at least ndim + 1 = 4 axes")):
    fn(jnp.zeros((8, 8)), ndim=3, **kwargs)
  with pytest.raises(ValueError, match=r"rank 2"):
    fn(jnp.zeros((8, 8)), ndim=2, **kwargs)


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.uint8, bool])
@pytest.mark.parametrize("fn", [*ALL, wavelets.embed])
def test_non_floating_dtype(fn, dtype):
  with pytest.raises(ValueError, match=r"x must have a floating dtype.*got dtype"):
    fn(jnp.zeros((1, 4, 4, 1), dtype), levels=1, ndim=2)


@pytest.mark.parametrize("fn", [*ALL, wavelets.embed])
def test_negative_or_non_integer_levels(fn):
  with pytest.raises(ValueError, match=r"levels must be >= 0, got levels=-1"):
    fn(jnp.zeros((1, 4, 4, 1)), levels=-1, ndim=2)
  with pytest.raises(ValueError, match=r"levels must be a non-negative integer"):
    fn(jnp.zeros((1, 4, 4, 1)), levels=1.5, ndim=2)


@pytest.mark.parametrize("ndim", [0, 4, 2.0])
def test_bad_ndim(ndim):
  with pytest.raises(ValueError, match=r"ndim must be"):
    wavelets.haar_analysis(jnp.zeros((1, 4, 4, 4, 4, 1)), ndim=ndim)


def test_options_are_keyword_only():
  with pytest.raises(TypeError):
    wavelets.haar_analysis(jnp.zeros((1, 4, 4, 1)), 2)  # levels must be a keyword


def test_synthesis_rejects_mismatched_pyramid():
  pyr = wavelets.haar_analysis(jnp.zeros((1, 8, 8, 2)), levels=2)
  bad = wavelets.HaarPyramid(approx=pyr.approx, details=pyr.details[::-1], ndim=2)
  with pytest.raises(ValueError, match=r"details\[0\] has shape \(1, 4, 4, 3, 2\)"):
    wavelets.haar_synthesis(bad)
  with pytest.raises(ValueError, match=r"must be a HaarPyramid"):
    wavelets.haar_synthesis((pyr.approx, pyr.details))
  with pytest.raises(ValueError, match=r"details must have shape \(1, 2, 2, 3, 2\)"):
    wavelets.haar_step_inverse(pyr.approx, jnp.zeros((1, 2, 2, 2, 2)), ndim=2)


def test_l2_inner_shape_mismatch():
  with pytest.raises(ValueError, match=r"same shape"):
    wavelets.l2_inner(jnp.zeros((1, 4, 4, 1)), jnp.zeros((1, 4, 4, 2)))


def test_numpy_input_accepted():
  x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
  np.testing.assert_allclose(wavelets.project(x)[0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])
