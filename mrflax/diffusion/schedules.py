r"""Noise schedules :math:`(\alpha, \sigma)` of the Gaussian channel :math:`Z = \alpha X +
\sigma G`.

Variance-exploding (VE, :math:`\alpha = 1`), Ornstein–Uhlenbeck / variance-preserving (VP,
:math:`\alpha_t = e^{-t}`, :math:`\sigma_t^2 = 1 - e^{-2t}`) and DDPM (:math:`\alpha =
\sqrt{\bar\alpha}`, :math:`\sigma^2 = 1 - \bar\alpha`), plus the log-uniform training
distribution of noise levels.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


def ve(sigma) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
  r"""Variance-exploding schedule: :math:`(\alpha, \sigma) = (1, \sigma)`.

  Examples:
    >>> [float(a) for a in ve(0.5)]
    [1.0, 0.5]
  """
  sigma = jnp.asarray(sigma, dtype=float)
  return jnp.ones_like(sigma), sigma


def vp(t) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
  r"""Ornstein–Uhlenbeck / variance-preserving schedule at time :math:`t`:
  :math:`\alpha_t = e^{-t}`, :math:`\sigma_t = \sqrt{1 - e^{-2t}}`, so :math:`\alpha^2 +
  \sigma^2 = 1`.

  Examples:
    >>> a, s = vp(1.0)
    >>> round(float(a**2 + s**2), 6)
    1.0
  """
  t = jnp.asarray(t, dtype=float)
  return jnp.exp(-t), jnp.sqrt(-jnp.expm1(-2.0 * t))


def ddpm(alpha_bar) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
  r"""DDPM parameterisation: :math:`\alpha = \sqrt{\bar\alpha}`, :math:`\sigma =
  \sqrt{1 - \bar\alpha}`.

  Examples:
    >>> [round(float(x), 4) for x in ddpm(0.64)]
    [0.8, 0.6]
  """
  alpha_bar = jnp.asarray(alpha_bar, dtype=float)
  return jnp.sqrt(alpha_bar), jnp.sqrt(1.0 - alpha_bar)


def log_uniform_sigmas(key: Array, n: int, lo: float, hi: float) -> Float[Array, " n"]:
  r"""``n`` noise levels with :math:`\log\sigma \sim U[\log \mathrm{lo}, \log \mathrm{hi}]`.

  The density is :math:`p(\sigma) = 1 / (\sigma \log(\mathrm{hi}/\mathrm{lo}))` on
  :math:`[\mathrm{lo}, \mathrm{hi}]`: every octave of noise gets the same share of the samples.

  Args:
    key: PRNG key.
    n: number of draws.
    lo: smallest level, ``> 0``.
    hi: largest level, ``>= lo``.

  Returns:
    ``[n]`` noise levels in ``[lo, hi]``.

  Raises:
    ValueError: unless ``0 < lo <= hi``.

  Examples:
    >>> s = log_uniform_sigmas(jax.random.key(0), 10000, 0.01, 100.0)
    >>> bool((s >= 0.01).all() and (s <= 100.0).all()), round(float((s < 1.0).mean()), 1)
    (True, 0.5)
  """
  if not 0 < lo <= hi or not math.isfinite(hi):
    raise ValueError(f"need 0 < lo <= hi < inf, got lo={lo}, hi={hi}")
  return jnp.exp(jax.random.uniform(key, (n,), minval=jnp.log(lo), maxval=jnp.log(hi)))
