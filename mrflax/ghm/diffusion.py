r"""Reverse variance-exploding diffusion with a denoiser (THEORY §7.5).

Euler–Maruyama in :math:`\sigma^2`-time on the geometric grid
:math:`\sigma_k = \sigma_{\max}(\sigma_{\min}/\sigma_{\max})^{k/K}`:

.. math::
  z_{k+1} = z_k + (\sigma_k^2 - \sigma_{k+1}^2)\,\frac{D(z_k, \sigma_k) - z_k}{\sigma_k^2}
    + \sqrt{\sigma_k^2 - \sigma_{k+1}^2}\;\xi_k, \qquad \xi_k \sim \mathcal N(0, I),

and the output :math:`\hat x_j = \arg\max_a D(z_K, \sigma_{\min})_{j,a}`. With :math:`D` = exact
BP the score is exact (an oracle sampler); with a trained network it is the learned one.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

Denoiser = Callable[[Array, Array], Array]
"""``denoiser(z, sigma)`` with ``z`` of shape ``[n, ..., v]`` and ``sigma`` of shape ``[n]``."""


def ve_sigma_grid(
  *, K: int, sigma_max: float = 10.0, sigma_min: float = 0.02
) -> Float[Array, " K1"]:
  r"""Geometric grid :math:`\sigma_k = \sigma_{\max} (\sigma_{\min}/\sigma_{\max})^{k/K}`,
  :math:`k = 0..K`.

  Examples:
    >>> [round(float(s), 4) for s in ve_sigma_grid(K=2, sigma_max=1.0, sigma_min=0.01)]
    [1.0, 0.1, 0.01]
  """
  if K < 1:
    raise ValueError(f"K must be >= 1, got {K}")
  if not 0 < sigma_min < sigma_max:
    raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
  k = jnp.arange(K + 1) / K
  return sigma_max * (sigma_min / sigma_max) ** k


def reverse_ve(
  key: Array, denoiser: Denoiser, z: Float[Array, "n *leaves v"], sigmas: Float[Array, " K1"]
) -> Float[Array, "n *leaves v"]:
  r"""Runs the reverse VE sampler from ``z`` at ``sigmas[0]`` down to ``sigmas[-1]``.

  Start from :math:`z_0 \sim \mathcal N(0, \sigma_{\max}^2 I)` to generate, or from a noised
  data point :math:`x + \sigma_t G` to run the forward–backward experiment. The loop is a
  ``lax.scan`` (one compiled step for every ``K``).

  Args:
    key: PRNG key.
    denoiser: ``denoiser(z, sigma) -> E[X | z]``, ``sigma`` of shape ``[n]``.
    z: starting point, noise level ``sigmas[0]``.
    sigmas: decreasing noise levels, ``[K + 1]``.

  Returns:
    :math:`z_K` at noise level ``sigmas[-1]``.

  Examples:
    >>> d = lambda z, s: jnp.full_like(z, 0.5)       # the denoiser of two equiprobable symbols
    >>> z0 = 10.0 * jax.random.normal(jax.random.key(0), (4000, 1, 2))
    >>> zk = reverse_ve(jax.random.key(1), d, z0, ve_sigma_grid(K=50))
    >>> float(jnp.abs(zk.mean() - 0.5)) < 0.05
    True
  """
  n = z.shape[0]

  def step(z, inp):
    s_now, s_next, k = inp
    d = denoiser(z, jnp.full((n,), s_now, z.dtype))
    var = s_now**2 - s_next**2
    xi = jax.random.normal(k, z.shape, z.dtype)
    return z + var * (d - z) / s_now**2 + jnp.sqrt(var) * xi, None

  keys = jax.random.split(key, sigmas.shape[0] - 1)
  z, _ = jax.lax.scan(step, z, (sigmas[:-1], sigmas[1:], keys))
  return z


def decode(denoiser: Denoiser, z: Float[Array, "n *leaves v"], sigma: float) -> Int[Array, "n ..."]:
  r"""Final read-out :math:`\hat x_j = \arg\max_a D(z, \sigma)_{j,a}`.

  Examples:
    >>> z = jnp.array([[[0.1, 0.9]]])
    >>> decode(lambda z, s: z, z, 0.02).tolist()
    [[1]]
  """
  return jnp.argmax(denoiser(z, jnp.full((z.shape[0],), sigma, z.dtype)), axis=-1)
