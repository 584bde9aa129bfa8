"""Masked ELBO averaging, unit conversions, pictures."""

import math

import jax
import numpy as np
import pytest
from PIL import Image

from mrflax import eval as mreval


def test_masked_average_counts_every_example_once():
  # two batches of 3; the last one holds one padding example with absurd values
  batches = [
    {"x": np.zeros(3), "mask": np.ones(3)},
    {"x": np.zeros(3), "mask": np.array([1.0, 1.0, 0.0])},
  ]
  values = iter(
    [
      {"distortion": np.array([1.0, 2.0, 3.0]), "kl": np.array([[0.1, 0.2]] * 3)},
      {"distortion": np.array([4.0, 5.0, 1e9]), "kl": np.array([[0.3, 0.4], [0.5, 0.6], [9, 9]])},
    ]
  )
  seen_keys = []

  def terms(batch, key):
    assert "mask" not in batch
    seen_keys.append(np.asarray(jax.random.key_data(key)))
    return next(values)

  res = mreval.evaluate_elbo(terms, batches, key=jax.random.key(0), data_dims=64)
  assert res.num_examples == 5
  assert res.distortion == pytest.approx(3.0)
  np.testing.assert_allclose(res.kl_per_block, [1.1 / 5, 1.6 / 5])
  assert res.rate == pytest.approx(0.54)
  assert res.nats_per_dim == pytest.approx(3.54)
  assert res.bits_per_dim == pytest.approx(3.54 / math.log(2))
  assert res.nats_per_image == pytest.approx(3.54 * 64)
  assert not np.array_equal(seen_keys[0], seen_keys[1])  # a fresh key per batch
  assert res.to_dict()["kl_per_block"] == pytest.approx([0.22, 0.32])


def test_no_examples_is_an_error():
  with pytest.raises(ValueError, match="no examples"):
    mreval.evaluate_elbo(lambda b, k: None, [], key=jax.random.key(0), data_dims=1)


def test_grid_and_kl_plot(tmp_path):
  rows = [np.zeros((3, 4, 5, 1), np.uint8), np.full((2, 4, 5, 1), 255, np.uint8)]
  mreval.save_grid(rows, tmp_path / "g.png", scale=2)
  with Image.open(tmp_path / "g.png") as im:
    assert im.size == (2 * (3 * 6 + 1), 2 * (2 * 5 + 1))
  mreval.save_kl_plot([0.1, 0.2, 0.05], [1, 4, 4], tmp_path / "kl.png")
  assert (tmp_path / "kl.png").stat().st_size > 1000
  np.testing.assert_array_equal(
    mreval.to_uint8(np.array([-1.0, 0.0, 1.0, 2.0])), [0, 128, 255, 255]
  )
