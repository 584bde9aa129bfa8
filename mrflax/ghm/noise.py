r"""Noise channels on one-hot leaves and the leaf log-messages they induce (THEORY §7.2).

Leaves are one-hot, :math:`X_j = \delta_{x_j} \in \mathbb R^v`, and the Gaussian channel is
:math:`Z = \alpha X + \sigma G`, :math:`G \sim \mathcal N(0, I)`. Because
:math:`\lVert \delta_a \rVert = 1` for every symbol, :math:`p(Z_j \mid x_j = a) \propto
\exp(\lambda Z_{j,a})` with :math:`\lambda = \alpha / \sigma^2`: the leaf message is linear in the
input. The schedules :math:`(\alpha, \sigma)` (VE, VP, DDPM) are in :mod:`mrflax.diffusion`.

``sigma`` and ``alpha`` are scalars or arrays of the batch shape (one value per example); they are
broadcast over the trailing leaf and channel axes explicitly.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int


def per_example(value, x: Array) -> Array:
  """``value`` (scalar or batch-shaped) reshaped to broadcast against ``x`` (no rank promotion)."""
  value = jnp.asarray(value, dtype=jnp.result_type(x.dtype, float))
  if value.ndim > x.ndim:
    raise ValueError(f"per-example value of shape {value.shape} has more axes than {x.shape}")
  return value.reshape(value.shape + (1,) * (x.ndim - value.ndim))


def one_hot(leaves: Int[Array, "..."], v: int, *, dtype=None) -> Float[Array, "... v"]:
  r"""One-hot leaves :math:`X_j = \delta_{x_j}`, channels last.

  Examples:
    >>> one_hot(jnp.array([0, 2]), 3).tolist()
    [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
  """
  return jax.nn.one_hot(leaves, v, dtype=jnp.zeros(()).dtype if dtype is None else dtype)


def decode_leaves(
  denoiser: Callable[[Array, Array], Array], z: Float[Array, "n *leaves v"], sigma: float
) -> Int[Array, "n ..."]:
  r"""Symbols read out of a noisy one-hot input: :math:`\hat x_j = \arg\max_a D(z, \sigma)_{j,a}`.

  The last step of diffusion sampling on GHM leaves (after :func:`mrflax.diffusion.reverse_ve`);
  ``denoiser(z, sigma)`` takes ``sigma`` of shape ``[n]``.

  Examples:
    >>> z = jnp.array([[[0.1, 0.9]]])
    >>> decode_leaves(lambda z, s: z, z, 0.02).tolist()
    [[1]]
  """
  return jnp.argmax(denoiser(z, jnp.full((z.shape[0],), sigma, z.dtype)), axis=-1)


def add_noise(key: Array, x: Float[Array, "... v"], *, sigma, alpha=1.0) -> Float[Array, "... v"]:
  r"""The Gaussian channel :math:`Z = \alpha X + \sigma G`, :math:`G \sim \mathcal N(0, I)`.

  ``x`` may have any trailing layout (``[..., n_leaf, v]`` or ``[..., H, W, v]``); ``sigma`` and
  ``alpha`` are scalars or batch-shaped (leading axes of ``x``).

  Examples:
    >>> z = add_noise(jax.random.key(0), jnp.zeros((2, 4, 3)), sigma=0.0)
    >>> float(jnp.abs(z).max())
    0.0
  """
  g = jax.random.normal(key, x.shape, dtype=jnp.result_type(x.dtype, float))
  return per_example(alpha, x) * x + per_example(sigma, x) * g


def gaussian_leaf_log_messages(
  z: Float[Array, "... v"], *, sigma, alpha=1.0
) -> Float[Array, "... v"]:
  r"""Leaf log-messages of the Gaussian channel, :math:`\lambda Z_j`, :math:`\lambda =
  \alpha/\sigma^2`.

  Up to a per-leaf constant, :math:`\log p(Z_j \mid x_j = a) = \lambda Z_{j,a}`; belief
  propagation normalises each leaf, so the constant is irrelevant for posteriors.

  Examples:
    >>> gaussian_leaf_log_messages(jnp.ones((1, 2, 2)), sigma=0.5).tolist()
    [[[4.0, 4.0], [4.0, 4.0]]]
  """
  return per_example(alpha, z) / jnp.square(per_example(sigma, z)) * z


def gaussian_log_normaliser(
  z: Float[Array, "... v"], *, sigma, alpha=1.0, event_ndim: int = 2
) -> Float[Array, "..."]:
  r"""The part of :math:`\log p(Z \mid X)` that does not depend on :math:`X`.

  .. math::
    \sum_j \Big[ -\frac{\lVert Z_j \rVert^2 + \alpha^2}{2\sigma^2} - \frac v2 \log(2\pi\sigma^2)
    \Big],

  so that :math:`\log p(Z \mid X) = \sum_j \lambda Z_{j, x_j} + ` this. ``event_ndim`` is the
  number of trailing axes (leaf layout plus channels) summed over.

  Examples:
    >>> round(float(gaussian_log_normaliser(jnp.zeros((1, 1)), sigma=1.0, event_ndim=2)), 6)
    -1.418939
  """
  sig = per_example(sigma, z)
  a = per_example(alpha, z)
  v = z.shape[-1]
  per_leaf = -(jnp.sum(z * z, axis=-1, keepdims=True) + a * a) / (2 * sig * sig)
  per_leaf = per_leaf - 0.5 * v * jnp.log(2 * jnp.pi * sig * sig)
  return jnp.sum(per_leaf[..., 0], axis=tuple(range(-(event_ndim - 1), 0)))


def uniform_replacement_log_messages(
  tokens: Int[Array, "..."], *, alpha_bar, v: int
) -> Float[Array, "... v"]:
  r"""Leaf log-messages of uniform-replacement discrete noise.

  The observed token keeps its value with probability :math:`\bar\alpha` and is otherwise
  redrawn uniformly: :math:`p(z_j \mid x_j = a) = \bar\alpha\, 1[z_j = a] + (1 - \bar\alpha)/v`.

  Examples:
    >>> m = uniform_replacement_log_messages(jnp.array([1]), alpha_bar=0.5, v=2)
    >>> [round(float(x), 4) for x in jnp.exp(m[0])]
    [0.25, 0.75]
  """
  hit = one_hot(tokens, v)
  ab = per_example(alpha_bar, hit)
  return jnp.log(ab * hit + (1.0 - ab) / v)


def masking_log_messages(
  tokens: Int[Array, "..."], mask: Array, *, v: int
) -> Float[Array, "... v"]:
  r"""Leaf log-messages of masking noise: one-hot where observed, uniform (zero) where masked.

  .. math::
    \log p(z_j \mid x_j = a) = \begin{cases} 0 & \text{masked} \\ \log 1[z_j = a] &
    \text{observed.} \end{cases}

  Examples:
    >>> m = masking_log_messages(jnp.array([1, 0]), jnp.array([False, True]), v=2)
    >>> m.tolist()
    [[-inf, 0.0], [0.0, 0.0]]
  """
  logs = jnp.log(one_hot(tokens, v))
  return jnp.where(mask[..., None], jnp.zeros_like(logs), logs)
