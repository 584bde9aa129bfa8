r"""Exact belief propagation on a GHM, in the log domain, batched and jitted (THEORY §7.3).

Upward (inside) and downward (outside) messages, for every internal node :math:`i` of level
:math:`\ell` with children :math:`C(i)`:

.. math::
  \log\beta^{(L)}_j &= \lambda Z_j - \mathrm{LSE}_a(\lambda Z_{j,a}) \\
  \log\beta^{(\ell)}_i(a) &= \mathrm{LSE}_{b \in [v]^s}\Big[\log T_\ell(b \mid a)
     + \textstyle\sum_k \log\beta^{(\ell+1)}_{C(i)_k}(b_k)\Big] - \text{norm.} \\
  \log\gamma^{(0)} &= \log\pi, \qquad
  \log\gamma^{(\ell+1)}_{C(i)_k}(c) = \mathrm{LSE}_{a,\, b:\, b_k = c}\Big[\log\gamma^{(\ell)}_i(a)
     + \log T_\ell(b \mid a) + \textstyle\sum_{k' \ne k}\log\beta^{(\ell+1)}_{C(i)_{k'}}(b_{k'})
     \Big] - \text{norm.} \\
  \log P(x^{(\ell)}_i = a \mid Z) &= \log\gamma^{(\ell)}_i(a) + \log\beta^{(\ell)}_i(a)
     - \text{norm.}

The sum over :math:`a` in the downward update is done once per family
(:math:`W(b) = \mathrm{LSE}_a[\log\gamma(a) + \log T(b \mid a)]`), so a family costs
:math:`O(v_\ell v^s + s\, v^s)` and the whole pass is linear in the number of leaves:
:math:`(s^L - 1)/(s - 1)` internal nodes, ``2L`` sequential sweeps, each parallel over a level.
Zeros of :math:`T` are :math:`-\infty` in the log domain; a message that is :math:`-\infty`
everywhere (impossible evidence) falls back to uniform and the log-evidence is :math:`-\infty`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from mrflax.ghm import noise
from mrflax.ghm.layout import check_leaves, from_tree_order, to_tree_order, tuple_digits
from mrflax.ghm.model import GHM

# ---------------------------------------------------------------------------------------------
# Message-passing core (tree order: the leaves are a sequence [..., s**L, v])
# ---------------------------------------------------------------------------------------------


def _lead(x: Array, ndim: int) -> Array:
  """``x`` with leading singleton axes up to rank ``ndim`` (explicit broadcasting)."""
  return x.reshape((1,) * (ndim - x.ndim) + x.shape)


def _normalise(x: Array) -> tuple[Array, Array]:
  """Log-normalises over the last axis; returns ``(x - LSE, LSE)``; uniform where LSE = -inf."""
  lse = jax.nn.logsumexp(x, axis=-1, keepdims=True)
  ok = jnp.isfinite(lse)
  uniform = jnp.full_like(x, -jnp.log(x.shape[-1]))
  out = jnp.where(ok, x - jnp.where(ok, lse, 0.0), uniform)
  return out, lse[..., 0]


def _tuple_sum(fam: Array) -> Array:
  """``[..., n, s, v]`` -> ``[..., n, v**s]`` with entry ``b`` = sum_k fam[..., k, b_k]."""
  out = fam[..., 0, :]
  for k in range(1, fam.shape[-2]):
    mk = fam[..., k, :]
    out = (out[..., :, None] + mk[..., None, :]).reshape((*out.shape[:-1], -1))
  return out


def _families(msgs: Array, s: int) -> Array:
  """``[..., n, v]`` -> ``[..., n / s, s, v]`` (contiguous families in tree order)."""
  return msgs.reshape((*msgs.shape[:-2], -1, s, msgs.shape[-1]))


def _upward(ghm: GHM, leaf_msgs: Array) -> tuple[list[Array], Array]:
  """Normalised upward messages per level (root first) and the summed log normalisers."""
  beta, c = _normalise(leaf_msgs)
  log_norm = jnp.sum(c, axis=-1)
  betas = [beta]
  for level in range(ghm.num_levels - 1, -1, -1):
    tuples = _tuple_sum(_families(beta, ghm.s))  # [..., n, v**s]
    log_t = ghm.log_kernels[level]
    up = jax.nn.logsumexp(tuples[..., None, :] + _lead(log_t, tuples.ndim + 1), axis=-1)
    beta, c = _normalise(up)
    log_norm = log_norm + jnp.sum(c, axis=-1)
    betas.append(beta)
  betas.reverse()
  return betas, log_norm


def _downward(ghm: GHM, betas: list[Array]) -> list[Array]:
  """Normalised downward messages per level, root first."""
  s, v = ghm.s, ghm.v
  gamma, _ = _normalise(jnp.broadcast_to(_lead(ghm.log_root, betas[0].ndim), betas[0].shape))
  gammas = [gamma]
  for level in range(ghm.num_levels):
    log_t = ghm.log_kernels[level]
    w = jax.nn.logsumexp(gamma[..., :, None] + _lead(log_t, gamma.ndim + 1), axis=-2)
    w = w.reshape(w.shape[:-1] + (v,) * s)  # [..., n, v, ..., v]
    fam = _families(betas[level + 1], s)
    outs = []
    for k in range(s):
      acc = w
      for k2 in range(s):
        if k2 != k:
          m = fam[..., k2, :]
          acc = acc + m.reshape(m.shape[:-1] + tuple(v if j == k2 else 1 for j in range(s)))
      axes = tuple(acc.ndim - s + j for j in range(s) if j != k)
      outs.append(jax.nn.logsumexp(acc, axis=axes))
    child = jnp.stack(outs, axis=-2)  # [..., n, s, v]
    gamma, _ = _normalise(child.reshape((*child.shape[:-3], -1, v)))
    gammas.append(gamma)
  return gammas


class BPResult(NamedTuple):
  """Output of :func:`belief_propagation`.

  Attributes:
    log_marginals: ``L + 1`` arrays, root first: ``log_marginals[0]`` is the log root posterior
      ``[..., n_c]``; ``log_marginals[l]`` is ``[..., *ghm.level_shape(l), v]``.
    log_evidence: ``[...]`` :math:`\\log \\sum_x P(x) \\prod_j e^{\\mathrm{msg}_j(x_j)}` for the
      (unnormalised) leaf log-messages given.
  """

  log_marginals: tuple[Float[Array, "..."], ...]
  log_evidence: Float[Array, "..."]


def _to_seq(ghm: GHM, msgs: Array) -> Array:
  return to_tree_order(msgs, level=ghm.num_levels, ndim=ghm.ndim, event_dims=1)


@functools.partial(jax.jit, static_argnames=("downward",))
def _bp(ghm: GHM, leaf_msgs: Array, downward: bool = True) -> BPResult:
  msgs = _to_seq(ghm, leaf_msgs)
  betas, log_norm = _upward(ghm, msgs)
  root_joint = _lead(ghm.log_root, betas[0].ndim - 1) + betas[0][..., 0, :]
  log_root_post, root_norm = _normalise(root_joint)
  log_evidence = log_norm + root_norm
  if not downward:
    return BPResult((log_root_post,), log_evidence)
  gammas = _downward(ghm, betas)
  out = [log_root_post]
  for level in range(1, ghm.num_levels + 1):
    post, _ = _normalise(gammas[level] + betas[level])
    out.append(from_tree_order(post, level=level, ndim=ghm.ndim, event_dims=1))
  return BPResult(tuple(out), log_evidence)


def _check_messages(ghm: GHM, msgs: Array, name: str) -> None:
  check_leaves(ghm, msgs, event_dims=1, name=name)
  if msgs.shape[-1] != ghm.v:
    raise ValueError(f"{name} must have v={ghm.v} channels (one per symbol), got {msgs.shape}")


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def belief_propagation(ghm: GHM, leaf_log_messages: Float[Array, "... v"]) -> BPResult:
  r"""Exact upward and downward passes for arbitrary leaf log-likelihood messages.

  ``leaf_log_messages[..., j, a]`` is :math:`\log p(\text{evidence}_j \mid x_j = a)` up to a
  per-leaf constant (e.g. :math:`\lambda Z_j` for Gaussian noise, see :mod:`mrflax.ghm.noise`).
  Returns all posterior marginals and the log-evidence
  :math:`\log \sum_x P(x) \prod_j \exp(\mathrm{msg}_j(x_j))`.

  Args:
    ghm: the model.
    leaf_log_messages: ``[..., *ghm.leaf_shape, v]``, any leading batch axes.

  Returns:
    A :class:`BPResult`.

  Examples:
    >>> from mrflax import ghm as G
    >>> model = G.random_hierarchy_model(jax.random.key(0), v=4, num_classes=2, m=2,
    ...     s=2, num_levels=2)
    >>> res = G.belief_propagation(model, jnp.zeros((3, 4, 4)))   # no evidence: the prior
    >>> [m.shape for m in res.log_marginals]
    [(3, 2), (3, 2, 4), (3, 4, 4)]
    >>> [round(float(x), 3) for x in jnp.exp(res.log_marginals[0][0])]
    [0.5, 0.5]
  """
  msgs = jnp.asarray(leaf_log_messages)
  _check_messages(ghm, msgs, "leaf_log_messages")
  return _bp(ghm, msgs)


@jax.jit
def _posteriors(ghm: GHM, z: Array, sigma, alpha) -> Array:
  msgs = noise.gaussian_leaf_log_messages(z, sigma=sigma, alpha=alpha)
  return jnp.exp(_bp(ghm, msgs).log_marginals[-1])


def leaf_posteriors(
  ghm: GHM, z: Float[Array, "... v"], *, sigma, alpha=1.0
) -> Float[Array, "... v"]:
  r"""The Bayes denoiser :math:`D^*(Z) = E[X \mid Z]` for :math:`Z = \alpha X + \sigma G`.

  Row :math:`j` is :math:`P(x_j = \cdot \mid Z) = \mathrm{softmax}(\log\gamma^{(L)}_j +
  \lambda Z_j)`, :math:`\lambda = \alpha/\sigma^2`: a residual from the input.

  Args:
    ghm: the model.
    z: noisy one-hot leaves ``[..., *ghm.leaf_shape, v]``.
    sigma: noise level, scalar or batch-shaped.
    alpha: signal scale, scalar or batch-shaped (1 for variance-exploding noise).

  Returns:
    Posterior marginals of the leaves, same shape as ``z``; rows sum to 1.

  Examples:
    >>> from mrflax import ghm as G
    >>> model = G.random_hierarchy_model(jax.random.key(0), v=4, num_classes=2, m=2,
    ...     s=2, num_levels=3)
    >>> x = G.one_hot(G.sample(jax.random.key(1), model, 2), 4)
    >>> d = G.leaf_posteriors(model, x, sigma=0.05)          # almost no noise: the input
    >>> float(jnp.abs(d - x).max()) < 1e-6
    True
  """
  z = jnp.asarray(z)
  _check_messages(ghm, z, "z")
  return _posteriors(ghm, z, sigma, alpha)


@jax.jit
def _root(ghm: GHM, z: Array, sigma, alpha) -> Array:
  msgs = noise.gaussian_leaf_log_messages(z, sigma=sigma, alpha=alpha)
  return jnp.exp(_bp(ghm, msgs, downward=False).log_marginals[0])


def root_posterior(
  ghm: GHM, z: Float[Array, "... v"], *, sigma, alpha=1.0
) -> Float[Array, "... n_c"]:
  r"""The Bayes classifier :math:`P(y = a \mid Z) \propto \pi(a)\, \beta^{(0)}(a)` (upward pass
  only).

  Args:
    ghm: the model.
    z: noisy one-hot leaves ``[..., *ghm.leaf_shape, v]``.
    sigma: noise level, scalar or batch-shaped.
    alpha: signal scale.

  Returns:
    ``[..., n_c]`` class posteriors.

  Examples:
    >>> from mrflax import ghm as G
    >>> model = G.random_hierarchy_model(jax.random.key(0), v=4, num_classes=2, m=2,
    ...     s=2, num_levels=3)
    >>> levels = G.sample_levels(jax.random.key(1), model, 4)
    >>> p = G.root_posterior(model, G.one_hot(levels[-1], 4), sigma=0.1)
    >>> bool((p.argmax(-1) == levels[0]).all())
    True
  """
  z = jnp.asarray(z)
  _check_messages(ghm, z, "z")
  return _root(ghm, z, sigma, alpha)


@jax.jit
def _loglik(ghm: GHM, leaves: Array) -> Array:
  msgs = jnp.log(noise.one_hot(leaves, ghm.v, dtype=ghm.root.dtype))
  return _bp(ghm, msgs, downward=False).log_evidence


def log_likelihood(ghm: GHM, leaves: Int[Array, "..."]) -> Float[Array, "..."]:
  r"""Exact :math:`\log P(x^{(L)})` of clean leaves (one upward pass with one-hot messages).

  .. math::
    \log P(x) = \sum_{\text{nodes}} \log(\text{normaliser}) + \mathrm{LSE}_a\big(\log\pi(a) +
    \log\beta^{(0)}(a)\big).

  For the RHM every clean sequence has :math:`-\log n_c - \frac{s^L - 1}{s - 1}\log m`;
  sequences outside the support give :math:`-\infty`.

  Examples:
    >>> from mrflax import ghm as G
    >>> model = G.random_hierarchy_model(jax.random.key(0), v=4, num_classes=2, m=2,
    ...     s=2, num_levels=3)
    >>> ll = G.log_likelihood(model, G.sample(jax.random.key(1), model, 3))
    >>> [round(float(x), 4) for x in ll]                   # -log 2 - 7 log 2
    [-5.5452, -5.5452, -5.5452]
  """
  leaves = jnp.asarray(leaves)
  check_leaves(ghm, leaves, event_dims=0)
  if not jnp.issubdtype(leaves.dtype, jnp.integer):
    raise ValueError(f"leaves must be integer symbols, got dtype {leaves.dtype}")
  return _loglik(ghm, leaves)


@jax.jit
def _gauss_evidence(ghm: GHM, z: Array, sigma, alpha) -> Array:
  msgs = noise.gaussian_leaf_log_messages(z, sigma=sigma, alpha=alpha)
  ev = _bp(ghm, msgs, downward=False).log_evidence
  return ev + noise.gaussian_log_normaliser(z, sigma=sigma, alpha=alpha, event_ndim=ghm.ndim + 1)


def log_evidence(ghm: GHM, z: Float[Array, "... v"], *, sigma, alpha=1.0) -> Float[Array, "..."]:
  r"""Exact Gaussian log-density :math:`\log p(Z)` of a noisy observation.

  .. math::
    \log p(Z) = \log \sum_x P(x) \prod_j e^{\lambda Z_{j, x_j}} + \sum_j \Big[
    -\frac{\lVert Z_j\rVert^2 + \alpha^2}{2\sigma^2} - \frac v2 \log(2\pi\sigma^2)\Big].

  Its gradient in :math:`Z` is the score, :func:`score`.

  Examples:
    >>> from mrflax import ghm as G
    >>> model = G.random_hierarchy_model(jax.random.key(0), v=4, num_classes=2, m=2,
    ...     s=2, num_levels=2)
    >>> G.log_evidence(model, jnp.zeros((5, 4, 4)), sigma=1.0).shape
    (5,)
  """
  z = jnp.asarray(z)
  _check_messages(ghm, z, "z")
  return _gauss_evidence(ghm, z, sigma, alpha)


@jax.jit
def _score(ghm: GHM, z: Array, sigma, alpha) -> Array:
  d = _posteriors(ghm, z, sigma, alpha)
  a = noise.per_example(alpha, z)
  sig = noise.per_example(sigma, z)
  return (a * d - z) / (sig * sig)


def score(ghm: GHM, z: Float[Array, "... v"], *, sigma, alpha=1.0) -> Float[Array, "... v"]:
  r"""Exact score :math:`\nabla_z \log p_\sigma(z) = (\alpha\, E[X \mid Z = z] - z)/\sigma^2`
  (Tweedie), with :math:`E[X \mid Z]` from exact BP.

  Examples:
    >>> from mrflax import ghm as G
    >>> model = G.random_hierarchy_model(jax.random.key(0), v=4, num_classes=2, m=2,
    ...     s=2, num_levels=2)
    >>> z = jax.random.normal(jax.random.key(1), (2, 4, 4))
    >>> g = jax.grad(lambda z: G.log_evidence(model, z, sigma=0.7).sum())(z)
    >>> float(jnp.abs(G.score(model, z, sigma=0.7) - g).max()) < 1e-4
    True
  """
  z = jnp.asarray(z)
  _check_messages(ghm, z, "z")
  return _score(ghm, z, sigma, alpha)


def prior_marginals(ghm: GHM) -> tuple[Float[Array, "..."], ...]:
  r"""Prior marginals :math:`P(x^{(\ell)}_i = a)` of every level (the downward pass with
  uniform leaf messages; the :math:`\sigma \to \infty` limit of the posteriors).

  Returns:
    ``L + 1`` arrays, root first: ``[n_c]`` then ``[*ghm.level_shape(l), v]``.

  Examples:
    >>> from mrflax import ghm as G
    >>> model = G.random_hierarchy_model(jax.random.key(0), v=4, num_classes=2, m=2,
    ...     s=2, num_levels=2)
    >>> p = G.prior_marginals(model)
    >>> [x.shape for x in p], round(float(p[2].sum()), 4)
    ([(2,), (2, 4), (4, 4)], 4.0)
  """
  zeros = jnp.zeros((*ghm.leaf_shape, ghm.v), ghm.root.dtype)
  return tuple(jnp.exp(m) for m in _bp(ghm, zeros).log_marginals)


# ---------------------------------------------------------------------------------------------
# Exact posterior sampling
# ---------------------------------------------------------------------------------------------


@jax.jit
def _posterior_sample(key: Array, ghm: GHM, msgs: Array) -> tuple[Array, ...]:
  seq = _to_seq(ghm, msgs)
  betas, _ = _upward(ghm, seq)
  keys = jax.random.split(key, ghm.num_levels + 1)
  root_logits = _lead(ghm.log_root, betas[0].ndim - 1) + betas[0][..., 0, :]
  root = jax.random.categorical(keys[0], root_logits, axis=-1)
  x = root[..., None]
  out = [root]
  for level in range(ghm.num_levels):
    tuples = _tuple_sum(_families(betas[level + 1], ghm.s))  # [..., n, v**s]
    logits = jnp.take(ghm.log_kernels[level], x, axis=0) + tuples
    idx = jax.random.categorical(keys[level + 1], logits, axis=-1)
    children = tuple_digits(idx, v=ghm.v, s=ghm.s)
    x = children.reshape((*children.shape[:-2], -1))
    out.append(from_tree_order(x, level=level + 1, ndim=ghm.ndim))
  return tuple(out)


def posterior_sample_levels(
  key: Array, ghm: GHM, z: Float[Array, "... v"], *, sigma, alpha=1.0
) -> tuple[Int[Array, "..."], ...]:
  r"""Exact samples of the whole tree from :math:`P(x^{(0..L)} \mid Z)`.

  Upward pass; the root from :math:`\pi \cdot \beta^{(0)}`; then top-down, for a node with
  sampled value :math:`a`, its child tuple :math:`b \propto T_\ell(b \mid a) \prod_k
  \beta^{(\ell+1)}_{C(i)_k}(b_k)`.

  Returns:
    ``L + 1`` integer arrays, root first: ``[...]``, then ``[..., *ghm.level_shape(l)]``.

  Examples:
    >>> from mrflax import ghm as G
    >>> model = G.random_hierarchy_model(jax.random.key(0), v=4, num_classes=2, m=2,
    ...     s=2, num_levels=2)
    >>> z = jnp.zeros((3, 4, 4))
    >>> [x.shape for x in G.posterior_sample_levels(jax.random.key(1), model, z, sigma=1.0)]
    [(3,), (3, 2), (3, 4)]
  """
  z = jnp.asarray(z)
  _check_messages(ghm, z, "z")
  msgs = noise.gaussian_leaf_log_messages(z, sigma=sigma, alpha=alpha)
  return _posterior_sample(key, ghm, msgs)


def posterior_sample(
  key: Array, ghm: GHM, z: Float[Array, "... v"], *, sigma, alpha=1.0
) -> Int[Array, "..."]:
  r"""Exact samples of the clean leaves from :math:`P(x^{(L)} \mid Z)`.

  The leaves of :func:`posterior_sample_levels`.

  Examples:
    >>> from mrflax import ghm as G
    >>> model = G.random_hierarchy_model(jax.random.key(0), v=4, num_classes=2, m=2,
    ...     s=2, num_levels=3)
    >>> x = G.sample(jax.random.key(1), model, 4)
    >>> xs = G.posterior_sample(jax.random.key(2), model, G.one_hot(x, 4), sigma=0.1)
    >>> bool((xs == x).all())
    True
  """
  return posterior_sample_levels(key, ghm, z, sigma=sigma, alpha=alpha)[-1]
