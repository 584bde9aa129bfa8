"""GHM construction, validation, RHM structure, exact sampling statistics, layouts, noise."""

import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest

from mrflax import ghm as G


def _uniform(L, v, s, n_c=None):
  n_c = v if n_c is None else n_c
  return jnp.full((n_c,), 1 / n_c), jnp.full((L, v, v**s), 1 / v**s)


def test_stacked_and_per_level_kernels_agree():
  key = jax.random.key(0)
  rhm = G.random_hierarchy_model(key, v=4, num_classes=4, m=2, s=2, num_levels=3)
  stacked = G.GHM(rhm.root, jnp.stack(rhm.kernels), 2)
  for a, b in zip(stacked.kernels, rhm.kernels, strict=True):
    np.testing.assert_array_equal(a, b)
  # n_c < v with a stacked array: the level-0 table is the first n_c rows (rest ignored)
  root = jnp.array([0.5, 0.5])
  k = jnp.stack([jnp.eye(16)[jnp.array([0, 5, 10, 15])], jnp.full((4, 16), 1 / 16)])
  model = G.GHM(root, k, 2)
  assert model.kernels[0].shape == (2, 16) and model.num_classes == 2 and model.v == 4
  assert "num_levels=2" in repr(model)


def test_model_is_a_pytree_and_jits():
  model = G.random_hierarchy_model(jax.random.key(0), v=3, num_classes=2, m=2, s=2, num_levels=2)
  leaves, treedef = jax.tree.flatten(model)
  assert len(leaves) == 3
  again = jax.tree.unflatten(treedef, leaves)
  assert (again.s, again.ndim, again.num_levels) == (2, 1, 2)
  total = jax.jit(lambda m: sum(t.sum() for t in m.kernels))(model)
  assert float(total) == pytest.approx(2 + 3)


@pytest.mark.parametrize(
  ("kwargs", "match"),
  [
    (dict(v=4, num_classes=8, m=3, s=2, num_levels=2), "distinct rules"),  # 8 * 3 > 16 at the root
    (
      dict(v=3, num_classes=2, m=4, s=2, num_levels=2),
      "distinct rules",
    ),  # 3 * 4 > 9 below the root
    (dict(v=3, num_classes=2, m=2, s=1, num_levels=2), "s must be >= 2"),
    (dict(v=3, num_classes=2, m=2, s=2, num_levels=0), "num_levels must be >= 1"),
    (dict(v=3, num_classes=2, m=2, s=2, num_levels=2, ndim=2), "s = 2\\*\\*ndim"),
  ],
)
def test_inconsistent_rhm_parameters_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    G.random_hierarchy_model(jax.random.key(0), **kwargs)


def test_bad_models_raise():
  root, k = _uniform(2, 3, 2)
  with pytest.raises(ValueError, match="rows must sum to 1"):
    G.GHM(root, k.at[1, 2, 0].add(0.1), 2)
  with pytest.raises(ValueError, match="negative"):
    G.GHM(root, k.at[1, 2, 0].set(-1 / 9).at[1, 2, 1].add(2 / 9), 2)
  with pytest.raises(ValueError, match="probability vector"):
    G.GHM(jnp.array([0.5, 0.2, 0.2]), k, 2)
  with pytest.raises(ValueError, match="v\\*\\*s columns"):
    G.GHM(root, jnp.full((2, 3, 8), 1 / 8), 2)  # 8 is not a square
  with pytest.raises(ValueError, match="kernels\\[1\\] must have shape"):
    G.GHM(root, [k[0], jnp.full((4, 9), 1 / 9)], 2)  # wrong number of rows below the root
  with pytest.raises(ValueError, match="n_c=4"):
    G.GHM(jnp.full((4,), 0.25), k, 2)  # stacked tables have only v = 3 rows at level 0
  with pytest.raises(ValueError, match="2\\*\\*ndim"):
    G.GHM(root, k, 2, ndim=2)
  with pytest.raises(ValueError, match="at least one level"):
    G.GHM(root, [], 2)


def test_rhm_structure():
  model = G.random_hierarchy_model(jax.random.key(3), v=8, num_classes=8, m=2, s=2, num_levels=4)
  for table in model.kernels:
    t = np.asarray(table)
    assert ((t == 0) | np.isclose(t, 0.5)).all()
    assert ((t > 0).sum(1) == 2).all()  # m rules per symbol
    assert ((t > 0).sum(0) <= 1).all()  # the rule sets of a level are disjoint
  np.testing.assert_allclose(model.root, np.full(8, 1 / 8))
  assert G.num_clean_sequences(num_classes=8, m=2, s=2, num_levels=4) == 8 * 2**15


def test_samples_match_the_model_statistics():
  rng = np.random.default_rng(0)
  v, s = 3, 2
  tables = [rng.dirichlet(np.ones(v**s), size=v) for _ in range(2)]
  model = G.GHM(jnp.asarray(rng.dirichlet(np.ones(v))), [jnp.asarray(t) for t in tables], s)
  n = 40000
  levels = G.sample_levels(jax.random.key(1), model, n)
  se = 4 * np.sqrt(0.25 / n)
  root_freq = np.bincount(np.asarray(levels[0]), minlength=v) / n
  np.testing.assert_allclose(root_freq, model.root, atol=se)
  # child-tuple frequencies given the parent, for every level and position
  for lv in range(2):
    par = np.asarray(levels[lv]).reshape(n, -1)
    ch = np.asarray(levels[lv + 1]).reshape(n, -1, s)
    idx = np.asarray(G.tuple_index(jnp.asarray(ch), v=v))
    for a in range(v):
      sel = idx[par == a]
      freq = np.bincount(sel, minlength=v**s) / sel.size
      np.testing.assert_allclose(freq, tables[lv][a], atol=4 * np.sqrt(0.25 / sel.size))
  # leaf marginals against the exact prior marginals of BP
  leaf = np.asarray(levels[-1])
  freq = np.stack([np.bincount(leaf[:, j], minlength=v) / n for j in range(4)])
  np.testing.assert_allclose(freq, G.prior_marginals(model)[-1], atol=se)


def test_rhm_samples_parse_and_cover_the_support():
  model = G.random_hierarchy_model(jax.random.key(0), v=3, num_classes=2, m=2, s=2, num_levels=2)
  levels = G.sample_levels(jax.random.key(1), model, 2000)
  p = G.parse(model, levels[-1])
  assert bool(p.valid.all())
  np.testing.assert_array_equal(p.root, levels[0])
  distinct = {tuple(x) for x in np.asarray(levels[-1])}
  assert len(distinct) == G.num_clean_sequences(num_classes=2, m=2, s=2, num_levels=2) == 16
  # a corrupted leaf breaks the first parse step for most sequences, never the root class test
  bad = levels[-1].at[:, 0].set((levels[-1][:, 0] + 1) % 3)
  assert float(G.parse(model, bad).valid[:, 0].mean()) < 0.9


def test_quadtree_child_order_matches_haar_bands():
  """Node (l, p) has children 2p + o with k = 2 o_0 + o_1 (first spatial axis most significant)."""
  model = G.random_hierarchy_model(
    jax.random.key(0), v=4, num_classes=2, m=2, s=4, num_levels=2, ndim=2
  )
  levels = G.sample_levels(jax.random.key(1), model, 64)
  assert [x.shape for x in levels] == [(64,), (64, 2, 2), (64, 4, 4)]
  table = np.asarray(model.kernels[1])
  par, leaf = np.asarray(levels[1]), np.asarray(levels[2])
  for p0 in range(2):
    for p1 in range(2):
      kids = [leaf[:, 2 * p0 + o0, 2 * p1 + o1] for o0 in (0, 1) for o1 in (0, 1)]
      b = np.asarray(G.tuple_index(jnp.stack(kids, -1), v=4))
      assert (table[par[:, p0, p1], b] > 0).all()


def test_tree_order_round_trip():
  x = jnp.arange(2 * 8 * 8 * 3).reshape(2, 8, 8, 3)
  seq = G.to_tree_order(x, level=3, ndim=2, event_dims=1)
  assert seq.shape == (2, 64, 3)
  np.testing.assert_array_equal(G.from_tree_order(seq, level=3, ndim=2, event_dims=1), x)
  # the first family is the top-left 2x2 block in (0,0), (0,1), (1,0), (1,1) order
  np.testing.assert_array_equal(
    seq[0, :4, 0], x[0, jnp.array([0, 0, 1, 1]), jnp.array([0, 1, 0, 1]), 0]
  )
  d = G.tuple_digits(jnp.arange(27), v=3, s=3)
  np.testing.assert_array_equal(G.tuple_index(d, v=3), jnp.arange(27))


def test_gaussian_channel_and_leaf_messages():
  x = G.one_hot(jnp.zeros((20000, 4), jnp.int32), 3)
  sigma = jnp.array([0.5] * 10000 + [2.0] * 10000)
  z = G.add_noise(jax.random.key(0), x, sigma=sigma, alpha=0.8)
  np.testing.assert_allclose(z[:10000].mean((0, 1)), [0.8, 0, 0], atol=0.02)
  np.testing.assert_allclose(z[:10000].std((0, 1)), 0.5, atol=0.01)
  np.testing.assert_allclose(z[10000:].std((0, 1)), 2.0, atol=0.03)
  # softmax(lambda z) is the exact posterior of a uniform symbol under N(alpha delta_a, sigma^2 I)
  zz = jax.random.normal(jax.random.key(1), (5, 3))
  logp = jnp.stack(
    [-jnp.sum((zz - 0.8 * jnp.eye(3)[a][None]) ** 2, -1) / (2 * 0.25) for a in range(3)], -1
  )
  np.testing.assert_allclose(
    jax.nn.softmax(G.gaussian_leaf_log_messages(zz, sigma=0.5, alpha=0.8)),
    jax.nn.softmax(logp),
    atol=1e-6,
  )


def test_discrete_channels_through_bp():
  model = G.random_hierarchy_model(jax.random.key(0), v=4, num_classes=2, m=2, s=2, num_levels=3)
  x = G.sample(jax.random.key(1), model, 4)
  prior = G.prior_marginals(model)[-1]
  masked = G.masking_log_messages(x, jnp.ones(x.shape, bool), v=4)
  np.testing.assert_allclose(
    jnp.exp(G.belief_propagation(model, masked).log_marginals[-1]),
    jnp.broadcast_to(prior, (4, 8, 4)),
    atol=1e-5,
  )
  observed = G.masking_log_messages(x, jnp.zeros(x.shape, bool), v=4)
  np.testing.assert_allclose(
    jnp.exp(G.belief_propagation(model, observed).log_marginals[-1]), G.one_hot(x, 4), atol=1e-6
  )
  clean = G.uniform_replacement_log_messages(x, alpha_bar=1.0, v=4)
  np.testing.assert_allclose(
    jnp.exp(G.belief_propagation(model, clean).log_marginals[-1]), G.one_hot(x, 4), atol=1e-6
  )


def test_baseline_denoisers(monkeypatch):
  train = jnp.array([[0, 1, 2, 0], [2, 2, 1, 0]])
  z = G.one_hot(train[::-1], 3) + 0.01
  np.testing.assert_allclose(
    G.empirical_bayes_denoiser(train, z, sigma=0.1), G.one_hot(train[::-1], 3), atol=1e-6
  )
  far = G.empirical_bayes_denoiser(train, jnp.zeros((1, 4, 3)), sigma=1.0)
  np.testing.assert_allclose(far[0], G.one_hot(train, 3).mean(0), atol=1e-6)
  with monkeypatch.context() as m, pytest.raises(ValueError, match="symbols"):
    m.setattr(jaxtyping.config, "jaxtyping_disable", True)  # 4 symbols against 3 break "... v"
    G.local_denoiser(jnp.zeros(4), z, sigma=1.0)
