r"""Reference denoisers to compare with BP and networks (THEORY §7.6-7.7).

* **local** (per-leaf) denoisers :math:`\mathrm{softmax}(\log p_j + \lambda Z_j)`: with the exact
  per-position leaf marginal :math:`p_j` ("local-pos", the Bayes denoiser that sees only
  :math:`Z_j`) or the position-averaged marginal :math:`\bar p` ("local-pool", the best
  translation-invariant 1x1-convolution denoiser);
* the **memorising** (empirical-Bayes) denoiser, the exact optimum of the denoising risk over a
  finite training set :math:`\{x^{(1)}, \dots, x^{(N)}\}` taken as the data distribution.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from mrflax.ghm import noise


def local_denoiser(
  log_prior: Float[Array, "... v"], z: Float[Array, "... v"], *, sigma, alpha=1.0
) -> Float[Array, "... v"]:
  r"""Per-leaf Bayes denoiser :math:`\mathrm{softmax}(\log p_j + \lambda Z_j)`, :math:`\lambda =
  \alpha/\sigma^2`.

  Args:
    log_prior: per-leaf log prior, ``[*leaf_shape, v]`` (local-pos) or ``[v]`` (local-pool).
    z: noisy one-hot leaves ``[..., *leaf_shape, v]``.
    sigma: noise level (scalar or batch-shaped).
    alpha: signal scale.

  Returns:
    Per-leaf posteriors, same shape as ``z``.

  Examples:
    >>> d = local_denoiser(jnp.log(jnp.array([0.5, 0.5])), jnp.zeros((1, 3, 2)), sigma=1.0)
    >>> d[0, 0].tolist()
    [0.5, 0.5]
  """
  log_prior = jnp.asarray(log_prior)
  if log_prior.shape[-1] != z.shape[-1]:
    raise ValueError(f"log_prior has {log_prior.shape[-1]} symbols but z has {z.shape[-1]}")
  logits = noise.gaussian_leaf_log_messages(z, sigma=sigma, alpha=alpha)
  lp = log_prior.reshape((1,) * (z.ndim - log_prior.ndim) + log_prior.shape)
  return jax.nn.softmax(logits + lp, axis=-1)


def empirical_bayes_denoiser(
  train_leaves: Int[Array, "N ..."],
  z: Float[Array, "n *leaves v"],
  *,
  sigma,
  alpha=1.0,
  chunk: int = 1024,
) -> Float[Array, "n *leaves v"]:
  r"""The memorising denoiser: :math:`E[X \mid Z]` under the empirical distribution of the
  training set.

  .. math::
    D_N(Z) = \sum_{i=1}^N w_i(Z)\, X^{(i)}, \qquad w_i(Z) \propto
    \exp\Big(\lambda \sum_j Z_{j, x^{(i)}_j}\Big),

  the exact minimiser of the empirical denoising risk over those ``N`` points (what an
  over-parameterised denoiser trained to zero loss converges to).

  Args:
    train_leaves: ``[N, *leaf_shape]`` integer training sequences.
    z: ``[n, *leaf_shape, v]`` noisy observations (one batch axis).
    sigma: noise level (scalar or ``[n]``).
    alpha: signal scale.
    chunk: test examples processed per step (bounds memory at ``chunk * N``).

  Returns:
    ``[n, *leaf_shape, v]``.

  Examples:
    >>> train = jnp.array([[0, 1], [1, 0]])
    >>> z = noise.one_hot(jnp.array([[0, 1]]), 2)
    >>> [round(float(x), 3) for x in empirical_bayes_denoiser(train, z, sigma=0.3)[0, 0]]
    [1.0, 0.0]
  """
  v = z.shape[-1]
  xs = noise.one_hot(train_leaves, v, dtype=z.dtype).reshape(train_leaves.shape[0], -1)
  n = z.shape[0]
  lam = jnp.broadcast_to(jnp.asarray(alpha) / jnp.square(jnp.asarray(sigma)), (n,))
  flat = z.reshape(n, -1)

  @jax.jit
  def block(zb, lb):
    w = jax.nn.softmax(lb[:, None] * (zb @ xs.T), axis=-1)
    return w @ xs

  outs = [block(flat[i : i + chunk], lam[i : i + chunk]) for i in range(0, n, chunk)]
  return jnp.concatenate(outs, axis=0).reshape(z.shape)
