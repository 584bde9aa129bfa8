"""Preprocessing: VDVAE constants, bit reduction, binarisation statistics, padding."""

import numpy as np
import pytest

from mrflax import data


def test_vdvae_normalisation_constants():
  x = np.array([0, 255], np.uint8)
  np.testing.assert_allclose(
    data.normalize_input(x, dataset="cifar10"), (x - 120.63838) / 64.16736, rtol=1e-6
  )
  np.testing.assert_allclose(
    data.normalize_input(x, dataset="imagenet32"), (x - 116.2373) / 69.37404, rtol=1e-6
  )
  np.testing.assert_allclose(data.to_target(x), [-1.0, 1.0])


def test_reduce_bits_five():
  x = np.array([0, 7, 8, 255], np.uint8)
  np.testing.assert_array_equal(data.reduce_bits(x, 5), [0, 0, 8, 248])
  with pytest.raises(ValueError, match=r"bits must be in 1\.\.8"):
    data.reduce_bits(x, 9)


def test_dynamic_binarisation_matches_intensity():
  x = np.full((200, 200, 1), 64, np.uint8)
  b = data.binarize(x, np.random.default_rng(0))
  assert abs(b.mean() - 64 / 255) < 0.01
  np.testing.assert_array_equal(data.binarize(np.array([100, 200], np.uint8), None), [0, 1])


def test_pad_and_errors():
  x = np.ones((28, 28, 1), np.float32)
  y = data.pad_to(x, 32, value=-1.0)
  assert y.shape == (32, 32, 1) and y[0, 0, 0] == -1.0 and y[2, 2, 0] == 1.0
  with pytest.raises(ValueError, match="symmetrically"):
    data.pad_to(x, 31)
  with pytest.raises(ValueError, match="binarize must be"):
    data.Preprocess("mnist", binarize="yes")
