"""GHM evaluation metrics with known answers (THEORY §7.5-7.7)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mrflax import ghm as G


@pytest.fixture(scope="module")
def rhm():
  return G.random_hierarchy_model(jax.random.key(0), v=4, num_classes=4, m=2, s=2, num_levels=3)


def test_samples_of_the_model_are_valid_and_have_its_classes(rhm):
  x = G.sample(jax.random.key(1), rhm, 4000)
  np.testing.assert_array_equal(G.validity_per_level(rhm, x), [1.0, 1.0, 1.0])
  assert G.root_tv(rhm, x) < 0.03  # sampling error only: sd of each bin ~ 0.007
  # uniform random sequences are almost never valid: at most m v / v^s = 1/2 of the families
  # at the bottom level parse, and far fewer at the top
  junk = jax.random.randint(jax.random.key(2), (4000, 8), 0, 4)
  val = G.validity_per_level(rhm, junk)
  assert val[0] < 0.1 and val[-1] < 0.01 and np.all(np.diff(val) <= 0)


def test_root_tv_known_answers(rhm):
  levels = G.sample_levels(jax.random.key(3), rhm, 2000)
  only0 = levels[-1][levels[0] == 0]
  assert G.root_tv(rhm, only0) == pytest.approx(0.75)  # one class of 4: 1 - 1/4
  half = levels[-1][levels[0] < 2]
  assert G.root_tv(rhm, half) == pytest.approx(0.5, abs=0.05)
  # no valid sample at all: the empirical class histogram is zero, TV = 1/2 sum pi = 1/2
  assert G.root_tv(rhm, jnp.full((10, 8), 3, jnp.int32)) == pytest.approx(0.5)


def test_total_variation():
  p = np.array([0.2, 0.3, 0.5])
  assert G.total_variation(p, p) == 0.0
  assert G.total_variation(p, p[::-1]) == pytest.approx(0.3)
  assert G.total_variation(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == 1.0


def test_distinct_and_copy_fractions(rhm):
  train = np.asarray(G.sample(jax.random.key(4), rhm, 300))
  assert G.copy_fraction(train, train) == 1.0  # a copied training set
  assert G.copy_fraction(train[::-1], train) == 1.0
  assert G.copy_fraction(np.full((5, 8), 7), train) == 0.0  # symbol 7 is not in the vocabulary
  mixed = np.concatenate([train[:100], np.full((100, 8), 7)])
  assert G.copy_fraction(mixed, train) == 0.5
  assert G.distinct_fraction(np.concatenate([train[:50], train[:50]])) == pytest.approx(
    len({tuple(r) for r in train[:50].tolist()}) / 100
  )
  assert G.distinct_fraction(np.zeros((4, 8), int)) == 0.25
  # grids: rows are compared as whole images
  quad = np.zeros((3, 4, 4), int)
  quad[1, 2, 3] = 1
  assert G.distinct_fraction(quad) == pytest.approx(2 / 3)
  assert G.copy_fraction(quad[1:2], quad[:1]) == 0.0


def test_per_leaf_mse_and_bp_reference(rhm):
  levels = G.sample_levels(jax.random.key(5), rhm, 2000)
  x = G.one_hot(levels[-1], 4)
  assert G.per_leaf_mse(x, x) == 0.0
  assert G.per_leaf_mse(x, jnp.zeros_like(x)) == pytest.approx(1.0)
  assert G.per_leaf_mse(x, jnp.full_like(x, 0.25)) == pytest.approx(0.75)
  sigma = 0.75
  z = G.add_noise(jax.random.key(6), x, sigma=sigma)
  stats, d_star = G.bp_reference(rhm, levels[0], x, z, sigma=sigma)
  assert stats["mmse_bp"] == pytest.approx(G.per_leaf_mse(x, d_star))
  # BP is the MMSE: below both per-leaf baselines, which are below the prior's 1 - 1/v ...
  assert stats["mmse_bp"] < stats["mse_local_pos"] <= stats["mse_local_pool"] + 1e-3 < 0.75
  # ... and the Bayes classifier beats chance; calibrated, its mean P(true class) is
  # E sum_a P(a | Z)^2 <= E max_a P(a | Z) = its accuracy (up to sampling error)
  assert 0.25 < stats["bp_root_acc"] <= 1.0
  assert 0.25 < stats["p_root_kept_exact"] < stats["bp_root_acc"] + 0.02
  assert stats["bp_root_ce"] > 0
  # no noise: BP recovers everything
  clean, _ = G.bp_reference(rhm, levels[0], x, x, sigma=1e-3)
  assert clean["mmse_bp"] < 1e-6 and clean["bp_root_acc"] == 1.0
