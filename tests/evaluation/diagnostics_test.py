"""Decoder-state diagnostics (THEORY §5.4, §6.3) on data whose answers are known."""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.spatial.distance
import scipy.stats

from mrflax import evaluation


def test_spearman_monotone_reversed_and_against_scipy():
  i = np.arange(6)
  assert evaluation.spearman(i, np.exp(i)) == pytest.approx(1.0)  # any increasing map
  assert evaluation.spearman(i, -(i**3.0)) == pytest.approx(-1.0)
  assert np.isnan(evaluation.spearman(i[:1], np.ones(1)))  # one element: no ranks to correlate
  rng = np.random.default_rng(0)
  for _ in range(5):
    a, b = rng.normal(size=(2, 17))  # continuous: no ties
    expect = scipy.stats.spearmanr(a, b).statistic
    assert evaluation.spearman(a, b) == pytest.approx(expect, abs=1e-12)


def test_spearman_within_each_resolution_of_three_or_more_blocks():
  values = np.array([9.0, 1.0, 3.0, 2.0, 5.0, 4.0, 3.0, 2.0, 7.0, 7.5])
  res = [1, 4, 4, 4, 8, 8, 8, 8, 16, 16]
  got = evaluation.spearman_within(values, res)
  assert list(got) == ["4", "8"]  # 1x1 and 16x16 have fewer than 3 blocks
  assert got["4"] == pytest.approx(scipy.stats.spearmanr([1, 2, 3], [1.0, 3.0, 2.0]).statistic)
  assert got["8"] == pytest.approx(-1.0)


def test_state_rms_of_constants_and_pooled_over_images():
  states = [jnp.full((3, 4, 4, 2), -1.5), jnp.full((3, 1, 1, 5), 0.25), jnp.zeros((3, 2, 2, 1))]
  np.testing.assert_allclose(evaluation.state_rms(states), [1.5, 0.25, 0.0], rtol=1e-7)
  # pooled: sqrt of the mean square over every element, not the mean of per-image RMS
  h = jnp.stack([jnp.full((2, 2, 1), 1.0), jnp.full((2, 2, 1), 7.0)])
  assert float(evaluation.state_rms([h])[0]) == pytest.approx(5.0)  # sqrt((1 + 49) / 2)
  assert float(evaluation.mean_image_rms([h])[0]) == pytest.approx(4.0)  # (1 + 7) / 2
  x = np.random.default_rng(1).normal(size=(5, 3, 3, 4)).astype(np.float32)
  np.testing.assert_allclose(
    evaluation.mean_image_rms([x]), [np.sqrt((x**2).mean(axis=(1, 2, 3))).mean()], rtol=1e-6
  )


def test_spread_is_the_mean_across_sample_variance():
  assert float(evaluation.state_spread([jnp.full((8, 2, 2, 3), 4.0)])[0]) == 0.0  # a point mass
  x = np.random.default_rng(2).normal(size=(64, 2, 2, 3)).astype(np.float32) * 3.0
  np.testing.assert_allclose(evaluation.state_spread([x]), [x.var(axis=0).mean()], rtol=1e-5)


def test_relative_increments_of_a_geometric_sequence():
  h0 = jnp.asarray(np.random.default_rng(3).normal(size=(2, 4, 4, 3)), jnp.float32)
  states = [h0 * 1.5**i for i in range(4)] + [jnp.ones((2, 8, 8, 3))]
  got = evaluation.relative_increments(states, [4, 4, 4, 4, 8])
  # ||q^{i+1} h - q^i h|| / ||q^i h|| = q - 1; the jump to 8x8 has none
  np.testing.assert_allclose(got[:3], [0.5, 0.5, 0.5], rtol=1e-6)
  assert got.shape == (4,) and np.isnan(got[3])
  zero = evaluation.relative_increments([jnp.zeros((1, 2)), jnp.ones((1, 2))], [1, 1])
  assert zero[0] == pytest.approx(np.sqrt(2) / 1e-12)  # a zero state: the floor 1e-12


def test_exposure_ratio_is_nan_where_the_denominator_is_not_positive():
  got = evaluation.exposure_ratio(np.array([2.0, 1.0, 3.0]), np.array([0.0, -1.0, 1.5]))
  assert got.dtype == np.float64 and np.isnan(got[:2]).all() and got[2] == 2.0


def test_probe_features_are_channel_means_and_rms():
  h = np.random.default_rng(4).normal(size=(3, 4, 5, 2))
  f = evaluation.probe_features(h)
  assert f.shape == (3, 4)
  np.testing.assert_allclose(f[:, :2], h.mean(axis=(1, 2)))
  np.testing.assert_allclose(f[:, 2:], np.sqrt((h**2).mean(axis=(1, 2))))


def test_ridge_probe_recovers_a_planted_linear_map():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(400, 5)) * np.array([1.0, 10.0, 0.1, 1.0, 1.0]) + 3.0
  y = x @ np.array([1.0, -2.0, 0.5, 0.0, 0.0]) + 4.0
  mask = np.arange(400) < 200
  exact = evaluation.ridge_probe(x, y, mask, lam=0.0)
  assert exact["r2"] == pytest.approx(1.0, abs=1e-12) and exact["mae"] < 1e-9
  assert evaluation.ridge_probe(x, y, mask, lam=1e-6)["r2"] > 0.999
  # the default penalty shrinks a little: still almost all the held-out variance
  assert 0.99 < evaluation.ridge_probe(x, y, mask)["r2"] < 1.0
  assert evaluation.ridge_probe(x, rng.permutation(y), mask)["r2"] < 0.1  # nothing to learn


def _states(rng, n_img, resolutions, width, depth_signal):
  """States whose channel means drift with the block index by ``depth_signal`` per block."""
  out = []
  for i, r in enumerate(resolutions):
    h = rng.normal(size=(n_img, r, r, width)).astype(np.float32)
    out.append(h + depth_signal * i)
  return out


def test_depth_probe_finds_a_planted_clock_and_not_noise():
  rng = np.random.default_rng(5)
  res = [1, 4, 4, 4, 8, 8, 8, 8]
  clock = evaluation.depth_probe(_states(rng, 60, res, 3, 1.0), res, seed=0)
  assert set(clock["within"]) == {"4", "8"}  # 1x1 has one block only
  assert clock["within"]["8"]["blocks"] == 4
  for r in ("4", "8"):
    v = clock["within"][r]
    assert v["r2"] > 0.95 and v["mae"] < 0.3, v
    assert v["shuffled_r2"] < 0.2, v
  assert clock["global"]["r2"] > 0.95 and clock["global"]["shuffled_r2"] < 0.2
  noise = evaluation.depth_probe(_states(rng, 60, res, 3, 0.0), res, seed=0)
  assert all(v["r2"] < 0.2 for v in noise["within"].values()), noise
  # the same seed, the same halves and shuffles: deterministic
  again = evaluation.depth_probe(_states(np.random.default_rng(5), 60, res, 3, 1.0), res, seed=0)
  assert again == clock
  # states of different widths: no global probe; a final state beyond ``resolutions`` is ignored
  mixed = _states(rng, 20, [4, 4], 2, 1.0) + _states(rng, 20, [8, 8], 3, 1.0)
  out = evaluation.depth_probe(mixed, [4, 4, 8, 8])
  assert set(out) == {"within"} and set(out["within"]) == {"4", "8"}
  final = [*_states(rng, 20, [4, 4], 2, 1.0), np.zeros((20, 4, 4, 5), np.float32)]
  assert set(evaluation.depth_probe(final, [4, 4])) == {"within", "global"}


def test_nonfinite_fraction_pairwise_distance_and_haar_spectrum():
  x = np.zeros((5, 2, 2, 1), np.float32)
  x[1, 0, 1, 0] = np.nan
  x[3, 1, 1, 0] = -np.inf
  assert evaluation.nonfinite_fraction(jnp.asarray(x)) == pytest.approx(0.4)
  y = np.random.default_rng(6).normal(size=(7, 3, 3, 1))
  expect = scipy.spatial.distance.pdist(y.reshape(7, -1)).mean()
  assert evaluation.pairwise_distance(y) == pytest.approx(expect, rel=1e-12)
  # constant on 4x4 blocks, +-1 between them: all energy at the coarsest detail level
  blocks = np.kron(np.array([[1.0, -1.0], [1.0, -1.0]]), np.ones((4, 4)))
  img = np.stack([blocks, 2 * blocks + 5])[..., None]  # the mean is removed per image
  np.testing.assert_allclose(evaluation.haar_spectrum(img), [0, 1, 0, 0], atol=1e-6)
