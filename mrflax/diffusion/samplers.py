r"""The reverse variance-exploding (VE) diffusion sampler with a denoiser (THEORY §7.5).

Euler–Maruyama in :math:`\sigma^2`-time on the geometric grid
:math:`\sigma_k = \sigma_{\max}(\sigma_{\min}/\sigma_{\max})^{k/K}`:

.. math::
  z_{k+1} = z_k + (\sigma_k^2 - \sigma_{k+1}^2)\,\frac{D(z_k, \sigma_k) - z_k}{\sigma_k^2}
    + \sqrt{\sigma_k^2 - \sigma_{k+1}^2}\;\xi_k, \qquad \xi_k \sim \mathcal N(0, I),

where :math:`D(z, \sigma) = E[X \mid Z = z]` is the denoiser, so :math:`(D - z)/\sigma^2` is the
score (Tweedie). With an exact posterior mean (e.g. belief propagation on a GHM) the sampler is an
oracle; with a trained network the score is the learned one. Nothing here depends on the data.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

Denoiser = Callable[[Array, Array], Array]
"""``denoiser(z, sigma)`` with ``z`` of shape ``[n, ...]`` and ``sigma`` of shape ``[n]``."""


def ve_sigma_grid(
  *, num_steps: int, sigma_max: float = 10.0, sigma_min: float = 0.02
) -> Float[Array, " K1"]:
  r"""Geometric grid :math:`\sigma_k = \sigma_{\max} (\sigma_{\min}/\sigma_{\max})^{k/K}`,
  :math:`k = 0..K`, with :math:`K` = ``num_steps``.

  Examples:
    >>> [round(float(s), 4) for s in ve_sigma_grid(num_steps=2, sigma_max=1.0, sigma_min=0.01)]
    [1.0, 0.1, 0.01]
  """
  if num_steps < 1:
    raise ValueError(f"num_steps must be >= 1, got {num_steps}")
  if not 0 < sigma_min < sigma_max:
    raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
  k = jnp.arange(num_steps + 1) / num_steps
  return sigma_max * (sigma_min / sigma_max) ** k


def reverse_ve(
  key: Array, denoiser: Denoiser, z: Float[Array, "n ..."], sigmas: Float[Array, " K1"]
) -> Float[Array, "n ..."]:
  r"""Runs the reverse VE sampler from ``z`` at ``sigmas[0]`` down to ``sigmas[-1]``.

  Start from :math:`z_0 \sim \mathcal N(0, \sigma_{\max}^2 I)` to generate, or from a noised
  data point :math:`x + \sigma_t G` to run the forward–backward experiment. The loop is a
  ``lax.scan`` (one compiled step for every number of steps).

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
    >>> zk = reverse_ve(jax.random.key(1), d, z0, ve_sigma_grid(num_steps=50))
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
