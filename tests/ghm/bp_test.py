"""Exact BP against brute-force enumeration, limits, normalisation, posterior sampling (§7.3)."""

import itertools
import math

import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest
import scipy.stats

from mrflax import ghm as G
from mrflax.diffusion import reverse_ve, ve_sigma_grid

# ---------------------------------------------------------------------------------------------
# Brute force: enumerate every tree with non-zero probability (numpy, float64)
# ---------------------------------------------------------------------------------------------


def _enumerate(model):
  """All full trees: list of per-level tree-order arrays ``[n_trees, s**l]`` and probabilities."""
  root = np.asarray(model.root, np.float64)
  tables = [np.asarray(t, np.float64) for t in model.kernels]
  s, v = model.s, model.v
  digits = np.array(list(itertools.product(range(v), repeat=s)))  # lexicographic, b_0 first
  levels = [np.flatnonzero(root > 0)[:, None]]
  probs = root[root > 0]
  for table in tables:
    opts = [np.flatnonzero(row > 0) for row in table]
    children = np.zeros((len(probs), 0), np.int64)
    for i in range(levels[-1].shape[1]):  # expand one parent at a time
      a = levels[-1][:, i]
      rep = np.repeat(np.arange(len(probs)), [len(opts[x]) for x in a])
      chosen = np.concatenate([opts[x] for x in a])
      probs = probs[rep] * table[a[rep], chosen]
      levels = [lv[rep] for lv in levels]
      children = np.concatenate([children[rep], digits[chosen]], axis=1)
    levels.append(children)
  return levels, probs


def _brute_posteriors(model, trees, probs, z, lam):
  """Posterior marginals of every level (tree order), and log sum_x P(x) exp(lam sum_j z)."""
  levels = trees
  z_seq = np.asarray(
    G.to_tree_order(jnp.asarray(z), level=model.num_levels, ndim=model.ndim, event_dims=1)
  )
  num_leaves = levels[-1].shape[1]
  # loglik[b, t] = lam_b * sum_j z[b, j, x_tj]
  gathered = z_seq[:, np.arange(num_leaves)[None, :], levels[-1]]  # [b, trees, leaves]
  loglik = lam[:, None] * gathered.sum(-1)
  logw = np.log(probs)[None, :] + loglik
  log_ev = scipy.special.logsumexp(logw, axis=1)
  w = np.exp(logw - log_ev[:, None])
  marg = []
  for lv, x in enumerate(levels):
    k = model.num_classes if lv == 0 else model.v
    onehot = np.eye(k)[x]  # [trees, n_l, k]
    marg.append(np.einsum("bt,tnk->bnk", w, onehot))
  return marg, log_ev


MODELS = {
  "dense_v2_s2_L3": dict(kind="dense", v=2, num_classes=2, s=2, num_levels=3),
  "dense_nc3_v2_s3_L2": dict(kind="dense", v=2, num_classes=3, s=3, num_levels=2),
  "rhm_v3_m2_s2_L3": dict(kind="rhm", v=3, num_classes=2, m=2, s=2, num_levels=3),
  "quad_rhm_v3_L2": dict(kind="rhm", v=3, num_classes=2, m=2, s=4, num_levels=2, ndim=2),
}


def _dense(seed, *, v, num_classes, s, num_levels, ndim=1):
  """A dense random GHM built in numpy (Dirichlet(1) rows): siblings are correlated."""
  rng = np.random.default_rng(seed)
  root = rng.dirichlet(np.ones(num_classes))
  tables = [
    rng.dirichlet(np.ones(v**s), size=num_classes if i == 0 else v) for i in range(num_levels)
  ]
  return G.GHM(jnp.asarray(root), [jnp.asarray(t) for t in tables], s, ndim=ndim)


def _build(spec, seed=0):
  spec = dict(spec)
  kind = spec.pop("kind")
  if kind == "dense":
    return _dense(seed, **spec)
  return G.random_hierarchy_model(jax.random.key(seed), dtype=jnp.float64, **spec)


WRAPPER_CHECKS = ("quad_rhm_v3_L2",)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_bp_equals_brute_force(name):
  with jax.enable_x64(True):
    model = _build(MODELS[name])
    trees, probs = _enumerate(model)
    assert abs(probs.sum() - 1) < 1e-12
    v = model.v
    rng = np.random.default_rng(1)
    x = G.sample(jax.random.key(2), model, 3)
    sigma = np.array([0.6, 1.0, 2.5])
    z = np.asarray(G.one_hot(x, v)) + sigma.reshape(3, *[1] * (x.ndim)) * rng.standard_normal(
      (*x.shape, v)
    )
    z = jnp.asarray(z)
    marg, log_ev = _brute_posteriors(model, trees, probs, np.asarray(z), 1 / sigma**2)

    res = G.belief_propagation(model, G.gaussian_leaf_log_messages(z, sigma=jnp.asarray(sigma)))
    for lv in range(model.num_levels + 1):
      got = np.exp(np.asarray(res.log_marginals[lv]))
      if lv == 0:
        got = got[:, None, :]
      else:
        got = np.asarray(G.to_tree_order(got, level=lv, ndim=model.ndim, event_dims=1))
      np.testing.assert_allclose(got, marg[lv], atol=1e-10, rtol=0)
    np.testing.assert_allclose(np.asarray(res.log_evidence), log_ev, atol=1e-10, rtol=1e-12)

    # Prior marginals (sigma -> infinity) against the enumerated prior.
    prior, _ = _brute_posteriors(model, trees, probs, np.zeros((1, *z.shape[1:])), np.zeros(1))
    for lv, p in enumerate(G.prior_marginals(model)):
      p = np.asarray(p)
      if lv == 0:
        p = p[None, None, :]
      else:
        p = np.asarray(G.to_tree_order(jnp.asarray(p), level=lv, ndim=model.ndim, event_dims=1))
        p = p[None]
      np.testing.assert_allclose(p, prior[lv], atol=1e-12)
    if name not in WRAPPER_CHECKS:
      return
    # The public wrappers agree with the full pass.
    np.testing.assert_allclose(
      G.root_posterior(model, z, sigma=jnp.asarray(sigma)), marg[0][:, 0], atol=1e-10
    )
    leaf = G.leaf_posteriors(model, z, sigma=jnp.asarray(sigma))
    np.testing.assert_allclose(
      G.to_tree_order(leaf, level=model.num_levels, ndim=model.ndim, event_dims=1),
      marg[-1],
      atol=1e-10,
    )
    # Exact Gaussian log p(Z) = brute-force evidence + the X-independent normaliser.
    norm = G.gaussian_log_normaliser(z, sigma=jnp.asarray(sigma), event_ndim=model.ndim + 1)
    np.testing.assert_allclose(
      G.log_evidence(model, z, sigma=jnp.asarray(sigma)), log_ev + np.asarray(norm), atol=1e-9
    )


@pytest.mark.parametrize("name", ["dense_v2_s2_L3", "quad_rhm_v3_L2"])
def test_log_likelihood_equals_brute_force(name):
  with jax.enable_x64(True):
    model = _build(MODELS[name], seed=3)
    trees, probs = _enumerate(model)
    leaves = trees[-1]
    table = {}
    for x, p in zip(map(tuple, leaves), probs, strict=True):
      table[x] = table.get(x, 0.0) + p
    seqs = np.array(list(table))
    want = np.log(np.array(list(table.values())))
    grid = G.from_tree_order(jnp.asarray(seqs), level=model.num_levels, ndim=model.ndim)
    np.testing.assert_allclose(G.log_likelihood(model, grid), want, atol=1e-12, rtol=0)


@pytest.mark.parametrize(("s", "L", "ndim"), [(2, 5, 1), (3, 3, 1), (4, 2, 2)])
def test_clean_rhm_log_likelihood_closed_form(s, L, ndim):
  with jax.enable_x64(True):
    model = G.random_hierarchy_model(
      jax.random.key(L), v=8, num_classes=8, m=2, s=s, num_levels=L, ndim=ndim, dtype=jnp.float64
    )
    ll = G.log_likelihood(model, G.sample(jax.random.key(0), model, 16))
    want = -math.log(8) - (s**L - 1) // (s - 1) * math.log(2)
    np.testing.assert_allclose(ll, want, atol=1e-12, rtol=0)
    assert want == pytest.approx(G.rhm_log_likelihood(num_classes=8, m=2, s=s, num_levels=L))


def test_out_of_grammar_sequence_has_zero_probability():
  with jax.enable_x64(True):
    model = G.random_hierarchy_model(
      jax.random.key(0), v=4, num_classes=2, m=2, s=2, num_levels=2, dtype=jnp.float64
    )
    unused = np.flatnonzero(np.asarray(model.kernels[1]).sum(0) == 0)[0]  # no rule produces it
    x = np.array(G.sample(jax.random.key(1), model, 1))
    x[0, :2] = np.asarray(G.tuple_digits(jnp.array(unused), v=4, s=2))
    assert np.isneginf(np.asarray(G.log_likelihood(model, jnp.asarray(x)))).all()


def test_sigma_to_zero_returns_the_clean_input():
  with jax.enable_x64(True):
    for ndim, s in [(1, 2)]:  # grids: see the brute-force test
      model = G.random_hierarchy_model(
        jax.random.key(0), v=4, num_classes=4, m=2, s=s, num_levels=2, ndim=ndim, dtype=jnp.float64
      )
      levels = G.sample_levels(jax.random.key(1), model, 8)
      x = G.one_hot(levels[-1], 4, dtype=jnp.float64)
      np.testing.assert_allclose(G.leaf_posteriors(model, x, sigma=0.05), x, atol=1e-12)
      root = G.root_posterior(model, x, sigma=0.05)
      np.testing.assert_allclose(root, G.one_hot(levels[0], 4, dtype=jnp.float64), atol=1e-12)


def test_sigma_to_infinity_returns_the_prior():
  with jax.enable_x64(True):
    model = _build(MODELS["rhm_v3_m2_s2_L3"], seed=5)
    z = jax.random.normal(jax.random.key(0), (4, 8, 3), jnp.float64)
    prior = G.prior_marginals(model)
    np.testing.assert_allclose(
      G.leaf_posteriors(model, z, sigma=1e5), jnp.broadcast_to(prior[-1], z.shape), atol=1e-8
    )
    np.testing.assert_allclose(
      G.root_posterior(model, z, sigma=1e5), jnp.broadcast_to(prior[0], (4, 2)), atol=1e-8
    )
    # ... and the prior leaf marginals of an RHM are not uniform (THEORY §7.1).
    assert float(jnp.abs(prior[-1] - 1 / 3).max()) > 0.05


def test_rows_sum_to_one_even_for_impossible_evidence():
  model = G.random_hierarchy_model(jax.random.key(0), v=4, num_classes=2, m=2, s=2, num_levels=3)
  z = 30.0 * jax.random.normal(jax.random.key(1), (16, 8, 4))
  msgs = G.gaussian_leaf_log_messages(z, sigma=0.1)  # extreme, mostly invalid evidence
  res = G.belief_propagation(model, msgs)
  for m in res.log_marginals:
    p = np.exp(np.asarray(m))
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
  # A leaf whose message is -inf everywhere: impossible evidence, uniform fallback, log p = -inf.
  bad = msgs.at[0, 3].set(-jnp.inf)
  res = G.belief_propagation(model, bad)
  assert np.isneginf(float(res.log_evidence[0])) and np.isfinite(res.log_evidence[1:]).all()
  for m in res.log_marginals:
    np.testing.assert_allclose(np.exp(np.asarray(m)).sum(-1), 1.0, atol=1e-5)


def test_score_is_the_gradient_of_the_log_evidence():
  with jax.enable_x64(True):
    model = _build(MODELS["dense_nc3_v2_s3_L2"], seed=2)
    z = jax.random.normal(jax.random.key(0), (3, 9, 2), jnp.float64)
    for sigma, alpha in [(0.7, 1.0), (0.6, 0.8)]:  # VE and VP-like (alpha^2 + sigma^2 = 1)
      g = jax.grad(lambda z: G.log_evidence(model, z, sigma=sigma, alpha=alpha).sum())(z)  # noqa: B023
      np.testing.assert_allclose(G.score(model, z, sigma=sigma, alpha=alpha), g, atol=1e-9)


@pytest.mark.slow
def test_pythagoras_by_monte_carlo():
  """E|X - f|^2 = E|X - D*|^2 + E|f - D*|^2 for the local denoiser f (THEORY §7.2)."""
  model = G.random_hierarchy_model(jax.random.key(0), v=6, num_classes=6, m=2, s=2, num_levels=3)
  x = G.one_hot(G.sample(jax.random.key(1), model, 4000), 6)
  z = G.add_noise(jax.random.key(2), x, sigma=0.75)
  d_star = G.leaf_posteriors(model, z, sigma=0.75)
  f = G.local_denoiser(jnp.log(G.prior_marginals(model)[-1]), z, sigma=0.75)
  per_leaf = lambda a, b: float(jnp.mean(jnp.sum((a - b) ** 2, -1)))
  lhs = per_leaf(x, f)
  rhs = per_leaf(x, d_star) + per_leaf(f, d_star)
  assert per_leaf(f, d_star) > 0.1  # the structure gap is real
  assert abs(lhs - rhs) < 5e-3


@pytest.mark.slow
def test_posterior_samples_are_exact_chi_square():
  with jax.enable_x64(True):
    model = _build(MODELS["rhm_v3_m2_s2_L3"], seed=7)
    trees, probs = _enumerate(model)
    x = G.sample(jax.random.key(3), model, 1)
    z = G.add_noise(jax.random.key(4), G.one_hot(x, 3, dtype=jnp.float64), sigma=0.9)
    n = 20000
    zs = jnp.broadcast_to(z, (n, *z.shape[1:]))
    levels = G.posterior_sample_levels(jax.random.key(5), model, zs, sigma=0.9)
    # exact posterior over full trees (the RHM is unambiguous: leaves determine the tree)
    marg, log_ev = _brute_posteriors(model, trees, probs, np.asarray(z), np.array([1 / 0.81]))
    z_seq = np.asarray(z[0])
    loglik = (z_seq[np.arange(8)[None, :], trees[-1]].sum(-1)) / 0.81
    post = np.exp(np.log(probs) + loglik - log_ev[0])
    codes = {tuple(t): i for i, t in enumerate(trees[-1])}
    assert len(codes) == len(trees[-1])
    got = np.asarray(levels[-1])
    idx = np.array([codes[tuple(row)] for row in got])
    keep = post * n > 5  # pool the rare cells into one
    obs = np.bincount(idx, minlength=len(post))
    f_obs = np.append(obs[keep], obs[~keep].sum())
    f_exp = np.append(post[keep], post[~keep].sum()) * n
    if f_exp[-1] == 0:
      f_obs, f_exp = f_obs[:-1], f_exp[:-1]
    assert keep.sum() >= 3
    assert scipy.stats.chisquare(f_obs, f_exp).pvalue > 1e-3
    # every sampled tree is consistent (the root and middle levels of the parse)
    parsed = G.parse(model, levels[-1])
    assert bool(parsed.valid.all())
    np.testing.assert_array_equal(parsed.root, levels[0])
    # sampled roots reproduce the root posterior
    freq = np.bincount(np.asarray(levels[0]), minlength=2) / n
    np.testing.assert_allclose(freq, marg[0][0, 0], atol=4 * np.sqrt(0.25 / n))


@pytest.mark.slow
def test_oracle_reverse_diffusion_generates_valid_sequences():
  model = G.random_hierarchy_model(jax.random.key(0), v=4, num_classes=4, m=2, s=2, num_levels=3)
  denoise = lambda z, s: G.leaf_posteriors(model, z, sigma=s)
  sigmas = ve_sigma_grid(num_steps=20)
  z0 = sigmas[0] * jax.random.normal(jax.random.key(1), (500, 8, 4))
  zk = jax.jit(lambda k, z: reverse_ve(k, denoise, z, sigmas))(jax.random.key(2), z0)
  x = G.decode_leaves(denoise, zk, float(sigmas[-1]))
  parsed = G.parse(model, x)
  assert float(parsed.valid[:, -1].mean()) > 0.99
  counts = np.bincount(np.asarray(parsed.root), minlength=4) / 500
  assert np.abs(counts - 0.25).max() < 0.07


def test_bad_inputs_raise(monkeypatch):
  model = G.random_hierarchy_model(jax.random.key(0), v=4, num_classes=2, m=2, s=2, num_levels=3)
  with pytest.raises(ValueError, match="8 leaves"):
    G.leaf_posteriors(model, jnp.zeros((2, 7, 4)), sigma=1.0)
  with pytest.raises(ValueError, match="channels"):
    G.root_posterior(model, jnp.zeros((2, 8, 3)), sigma=1.0)
  with pytest.raises(ValueError, match="8 leaves"):
    G.log_likelihood(model, jnp.zeros((2, 16), jnp.int32))
  with monkeypatch.context() as m, pytest.raises(ValueError, match="integer"):
    m.setattr(jaxtyping.config, "jaxtyping_disable", True)  # float leaves break Int[Array]
    G.log_likelihood(model, jnp.zeros((2, 8)))
  quad = G.random_hierarchy_model(
    jax.random.key(0), v=3, num_classes=2, m=2, s=4, num_levels=2, ndim=2
  )
  with pytest.raises(ValueError, match="spatial shape"):
    G.leaf_posteriors(quad, jnp.zeros((1, 16, 3)), sigma=1.0)
