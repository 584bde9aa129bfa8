r"""Diagonal Gaussians parameterised by mean and log standard deviation (VDVAE convention).

All functions are elementwise and pure; reductions are left to the caller.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Key


def gaussian_kl(
  q_mean: Float[ArrayLike, "..."],
  q_logstd: Float[ArrayLike, "..."],
  p_mean: Float[ArrayLike, "..."],
  p_logstd: Float[ArrayLike, "..."],
) -> Float[Array, "..."]:
  r"""Elementwise KL divergence between diagonal Gaussians, KL(q || p).

  :math:`q = \mathcal N(\mu_q, \sigma_q^2)`, :math:`p = \mathcal N(\mu_p, \sigma_p^2)`.

  VDVAE's exact formula (``vae_helpers.gaussian_analytical_kl``):

  .. math::
    \mathrm{KL} = -\tfrac12 + \log\sigma_p - \log\sigma_q
      + \frac{\sigma_q^2 + (\mu_q - \mu_p)^2}{2 \sigma_p^2} .

  Args:
    q_mean: posterior mean :math:`\mu_q`.
    q_logstd: posterior log standard deviation :math:`\log\sigma_q`.
    p_mean: prior mean :math:`\mu_p`.
    p_logstd: prior log standard deviation :math:`\log\sigma_p`.

  Returns:
    The KL per element (broadcast shape of the inputs, which may be Python floats), in nats.

  Examples:
    >>> import jax.numpy as jnp
    >>> round(float(gaussian_kl(jnp.array(1.0), jnp.array(-1.0), jnp.array(0.0),
    ...                         jnp.array(0.5))), 6)
    1.208833
  """
  return (
    -0.5
    + p_logstd
    - q_logstd
    + 0.5 * (jnp.exp(q_logstd) ** 2 + (q_mean - p_mean) ** 2) / jnp.exp(p_logstd) ** 2
  )


def gaussian_sample(
  key: Key[Array, ""],
  mean: Float[Array, "*s"],
  logstd: Float[Array, "*s"],
  *,
  temperature: float | Float[Array, ""] = 1.0,
) -> Float[Array, "*s"]:
  r"""Reparameterised sample :math:`z = \mu + \tau\, e^{\log\sigma} \varepsilon`.

  :math:`\varepsilon \sim \mathcal N(0, I)`; VDVAE's temperature is ``logstd + log(tau)``.

  Args:
    key: PRNG key.
    mean: mean :math:`\mu`.
    logstd: log standard deviation, same shape as ``mean``.
    temperature: scale :math:`\tau > 0` of the standard deviation.

  Returns:
    A sample with the shape and dtype of ``mean``.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> z = gaussian_sample(jax.random.key(0), jnp.zeros(3), jnp.full(3, -50.0))
    >>> bool(jnp.all(jnp.abs(z) < 1e-10))
    True
  """
  eps = jax.random.normal(key, mean.shape, dtype=mean.dtype)
  return mean + temperature * jnp.exp(logstd) * eps


def gaussian_log_prob(
  x: Float[ArrayLike, "..."], mean: Float[ArrayLike, "..."], logstd: Float[ArrayLike, "..."]
) -> Float[Array, "..."]:
  r"""Elementwise log-density of :math:`\mathcal N(\mu, \sigma^2)`.

  .. math::
    \log p(x) = -\tfrac12 \log(2\pi) - \log\sigma - \frac{(x - \mu)^2}{2\sigma^2} .

  Args:
    x: points.
    mean: mean :math:`\mu`.
    logstd: log standard deviation :math:`\log\sigma`.

  Returns:
    Log-density per element (broadcast shape of the inputs, which may be Python floats).

  Examples:
    >>> import jax.numpy as jnp
    >>> round(float(gaussian_log_prob(jnp.array(0.0), jnp.array(0.0), jnp.array(0.0))), 6)
    -0.918939
  """
  return -0.5 * math.log(2 * math.pi) - logstd - 0.5 * ((x - mean) * jnp.exp(-logstd)) ** 2
