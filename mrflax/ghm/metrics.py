r"""Evaluation of GHM denoisers, classifiers and samplers against the exact model (THEORY §7.5-7.7).

Denoising (:func:`per_leaf_mse`, :func:`bp_reference`): the per-leaf squared error
:math:`\frac{1}{n_{\mathrm{leaf}}} E \sum_j \lVert f_j - X_j \rVert^2` of the Bayes denoiser
(BP, the MMSE) and of the per-leaf baselines, and the Bayes classifier's accuracy. Samples
(:func:`validity_per_level`, :func:`root_tv`, :func:`distinct_fraction`, :func:`copy_fraction`):
how many generated sequences parse, whether their classes have the model's distribution, and how
many are repeats or copies of a training set.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from mrflax.ghm.baselines import local_denoiser
from mrflax.ghm.bp import leaf_posteriors, prior_marginals, root_posterior
from mrflax.ghm.model import GHM
from mrflax.ghm.sampling import parse


def per_leaf_mse(a: Float[Array, "n *leaves v"], b: Float[Array, "n *leaves v"]) -> float:
  r""":math:`\frac{1}{n\,n_{\mathrm{leaf}}} \sum_{i,j} \lVert a_{ij} - b_{ij} \rVert^2`: squared
  error summed over the symbol axis, averaged over examples and leaves.

  Examples:
    >>> per_leaf_mse(jnp.array([[[1.0, 0.0], [0.0, 1.0]]]), jnp.array([[[0.0, 1.0], [0.0, 1.0]]]))
    1.0
  """
  return float(jnp.mean(jnp.sum(jnp.square(a - b), axis=-1)))


def bp_reference(
  ghm: GHM,
  roots: Int[Array, " n"],
  x: Float[Array, "n *leaves v"],
  z: Float[Array, "n *leaves v"],
  *,
  sigma: float,
) -> tuple[dict[str, float], Float[Array, "n *leaves v"]]:
  r"""The exact (BP) and per-leaf reference numbers of one noisy test set :math:`Z = X + \sigma G`.

  * ``mmse_bp``: per-leaf MSE of :math:`D^* = E[X \mid Z]` (BP), the minimum over all denoisers;
  * ``mse_local_pos`` / ``mse_local_pool``: the per-leaf Bayes denoiser with the true
    per-position prior marginals / their average over positions (THEORY §7.6);
  * ``bp_root_acc``, ``bp_root_ce``: accuracy and cross-entropy of the Bayes classifier
    :math:`P(x^{(0)} \mid Z)` against the true classes ``roots``;
  * ``p_root_kept_exact``: :math:`E\, P(x^{(0)} = y \mid Z)`, the probability that a posterior
    sample keeps the class.

  Args:
    ghm: the model that generated the test set.
    roots: the true classes ``[n]``.
    x: the clean one-hot leaves.
    z: their noisy version at level ``sigma``.
    sigma: the noise level.

  Returns:
    ``(stats, D*)`` with ``D*`` the BP leaf posteriors of ``z``.

  Examples:
    >>> import jax
    >>> from mrflax import ghm as G
    >>> g = G.random_hierarchy_model(jax.random.key(0), v=4, num_classes=2, m=2, s=2, num_levels=2)
    >>> levels = G.sample_levels(jax.random.key(1), g, 500)
    >>> x = G.one_hot(levels[-1], 4)
    >>> stats, _ = bp_reference(g, levels[0], x, x + 1e-3 * x, sigma=1e-3)   # almost clean
    >>> stats["mmse_bp"] < 1e-6, stats["bp_root_acc"]
    (True, 1.0)
  """
  d_star = leaf_posteriors(ghm, z, sigma=sigma)
  prior = prior_marginals(ghm)[-1]
  local_pos = local_denoiser(jnp.log(prior), z, sigma=sigma)
  local_pool = local_denoiser(jnp.log(prior.mean(0)), z, sigma=sigma)
  post = root_posterior(ghm, z, sigma=sigma)
  p_true = jnp.take_along_axis(post, roots[:, None], axis=-1)[:, 0]
  stats = dict(
    mmse_bp=per_leaf_mse(x, d_star),
    mse_local_pos=per_leaf_mse(x, local_pos),
    mse_local_pool=per_leaf_mse(x, local_pool),
    bp_root_acc=float(jnp.mean(jnp.argmax(post, -1) == roots)),
    bp_root_ce=float(-jnp.mean(jnp.log(jnp.maximum(p_true, 1e-30)))),
    p_root_kept_exact=float(jnp.mean(p_true)),
  )
  return stats, d_star


def validity_per_level(ghm: GHM, leaves: Int[ArrayLike, "n ..."]) -> Float[np.ndarray, " L"]:
  r"""Fraction of sequences whose first :math:`k` bottom-up parse steps succeed, :math:`k = 1..L`.

  Entry :math:`k - 1` is :math:`\frac1n \sum_i 1[\text{levels } L, \dots, L-k+1 \text{ of } x_i
  \text{ parse}]` (:func:`mrflax.ghm.parse`); the last entry is the fraction of fully valid
  sequences, 1 for exact samples of the model.

  Examples:
    >>> import jax
    >>> from mrflax import ghm as G
    >>> g = G.random_hierarchy_model(jax.random.key(0), v=4, num_classes=2, m=2, s=2, num_levels=3)
    >>> validity_per_level(g, G.sample(jax.random.key(1), g, 100)).tolist()
    [1.0, 1.0, 1.0]
  """
  return np.asarray(parse(ghm, jnp.asarray(leaves)).valid).mean(0)


def total_variation(p: Float[np.ndarray, " k"], q: Float[np.ndarray, " k"]) -> float:
  r""":math:`\mathrm{TV}(p, q) = \frac12 \sum_a |p_a - q_a|`, in :math:`[0, 1]`.

  Examples:
    >>> total_variation(np.array([0.5, 0.5]), np.array([1.0, 0.0]))
    0.5
  """
  return float(0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum())


def root_tv(ghm: GHM, leaves: Int[ArrayLike, "n ..."]) -> float:
  r"""TV distance between the classes of the fully valid samples and the root prior :math:`\pi`.

  The class of a valid sequence is its parsed root; :math:`\hat\pi_a` is the fraction of valid
  sequences with class :math:`a` (all zero if none is valid) and the result is
  :math:`\mathrm{TV}(\hat\pi, \pi)`. It is 0 for a sampler with the right class proportions and
  :math:`1 - 1/n_c` for one that only ever produces one class of a uniform prior.

  Examples:
    >>> import jax
    >>> from mrflax import ghm as G
    >>> g = G.random_hierarchy_model(jax.random.key(0), v=4, num_classes=2, m=2, s=2, num_levels=2)
    >>> levels = G.sample_levels(jax.random.key(1), g, 2000)
    >>> root_tv(g, levels[-1]) < 0.05
    True
    >>> root_tv(g, levels[-1][levels[0] == 0])      # class 0 only
    0.5
  """
  p = parse(ghm, jnp.asarray(leaves))
  roots = np.asarray(p.root)[np.asarray(p.valid)[:, -1]]
  hist = np.bincount(roots, minlength=ghm.num_classes) / max(len(roots), 1)
  return total_variation(hist, np.asarray(ghm.root, np.float64))


def _row_keys(x) -> list[bytes]:
  x = np.asarray(x)
  flat = np.ascontiguousarray(x.reshape(x.shape[0], -1).astype(np.int64))
  return [r.tobytes() for r in flat]


def distinct_fraction(leaves: Int[ArrayLike, "n ..."]) -> float:
  """Number of distinct sequences divided by the number of sequences (1: no repeats).

  Examples:
    >>> distinct_fraction(np.array([[0, 1], [0, 1], [1, 1], [1, 0]]))
    0.75
  """
  return len(set(_row_keys(leaves))) / np.asarray(leaves).shape[0]


def copy_fraction(leaves: Int[ArrayLike, "n ..."], train: Int[ArrayLike, "p ..."]) -> float:
  """Fraction of the sequences ``leaves`` that equal some sequence of the training set ``train``.

  Examples:
    >>> copy_fraction(np.array([[0, 1], [1, 1], [1, 0]]), np.array([[1, 1], [0, 1]]))
    0.6666666666666666
  """
  seen = set(_row_keys(train))
  return float(np.mean([k in seen for k in _row_keys(leaves)]))
