r"""Discretised logistic likelihood (VDVAE's per-channel bin formula; grey-level images).

Targets live in :math:`[-1, 1]` on a grid of :math:`2^{\text{bits}}` levels with half bin width
:math:`\Delta = 1 / (2^{\text{bits}} - 1)`. The per-element log-probability is VDVAE's
``discretized_mix_logistic_loss`` inner formula, with its edge cases (see
:func:`discretized_logistic_log_prob`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Key

#: The floor on predicted log-scales (VDVAE's ``max(log_scale, -7)``) in the logistic and DMoL
#: likelihoods.
LOG_SCALE_MIN = -7.0


def _check_bits(bits: int) -> int:
  if not isinstance(bits, int) or not 1 <= bits <= 16:
    raise ValueError(f"bits must be an integer in [1, 16], got {bits!r}")
  return bits


def discretized_logistic_log_prob(
  x: Float[ArrayLike, "..."],
  mean: Float[ArrayLike, "..."],
  log_scale: Float[ArrayLike, "..."],
  *,
  bits: int = 8,
) -> Float[Array, "..."]:
  r"""Log-probability of the bin of ``x`` under a logistic, VDVAE's exact branches.

  With :math:`s` the (already clamped) log scale, :math:`\Delta = 1/(2^{\text{bits}}-1)`,
  :math:`u_\pm = e^{-s}(x - \mu \pm \Delta)`, :math:`u_0 = e^{-s}(x - \mu)`,
  :math:`\delta = \sigma(u_+) - \sigma(u_-)`:

  .. math::
    \log p = \begin{cases}
      u_+ - \operatorname{softplus}(u_+) & x < -0.999 \\
      -\operatorname{softplus}(u_-) & x > 0.999 \\
      \log\max(\delta, 10^{-12}) & \delta > 10^{-5} \\
      u_0 - s - 2\operatorname{softplus}(u_0) - \log\tfrac{2^{\text{bits}}-1}{2} & \text{otherwise}
    \end{cases}

  Every branch is finite for finite inputs, so gradients through the nested ``where`` are finite.
  The log scale is *not* clamped here (callers clamp at -7 as VDVAE does).

  Args:
    x: targets in :math:`[-1, 1]`.
    mean: logistic location :math:`\mu`.
    log_scale: logistic log scale :math:`s`.
    bits: bit depth (8; VDVAE's low-bit FFHQ-256 mode is 5).

  Returns:
    Log-probability per element, in nats.

  Examples:
    >>> import jax.numpy as jnp
    >>> lp = discretized_logistic_log_prob(jnp.array(0.0), jnp.array(0.0), jnp.array(-7.0))
    >>> round(float(lp), 4)
    -0.0272
  """
  _check_bits(bits)
  half_bin = 1.0 / (2**bits - 1)
  centered = x - mean
  inv_s = jnp.exp(-log_scale)
  plus_in = inv_s * (centered + half_bin)
  min_in = inv_s * (centered - half_bin)
  mid_in = inv_s * centered
  cdf_delta = jax.nn.sigmoid(plus_in) - jax.nn.sigmoid(min_in)
  log_cdf_plus = plus_in - jax.nn.softplus(plus_in)
  log_one_minus_cdf_min = -jax.nn.softplus(min_in)
  log_pdf_mid = mid_in - log_scale - 2.0 * jax.nn.softplus(mid_in)
  log_mid = log_pdf_mid - math.log((2**bits - 1) / 2.0)
  inner = jnp.where(cdf_delta > 1e-5, jnp.log(jnp.maximum(cdf_delta, 1e-12)), log_mid)
  return jnp.where(x < -0.999, log_cdf_plus, jnp.where(x > 0.999, log_one_minus_cdf_min, inner))


def logistic_params(
  out: Float[Array, "b h w c2"], *, channels: int
) -> tuple[Float[Array, "b h w c"], Float[Array, "b h w c"]]:
  """Splits a network output ``[means(C) | raw_log_scales(C)]`` and clamps the log scales at -7.

  Args:
    out: network output with ``2 * channels`` channels.
    channels: image channels ``C``.

  Returns:
    ``(mean, log_scale)``, each ``[b, h, w, C]``.

  Examples:
    >>> import jax.numpy as jnp
    >>> m, s = logistic_params(jnp.full((1, 1, 1, 2), -9.0), channels=1)
    >>> float(m[0, 0, 0, 0]), float(s[0, 0, 0, 0])
    (-9.0, -7.0)
  """
  if out.shape[-1] != 2 * channels:
    raise ValueError(f"expected {2 * channels} output channels, got {out.shape[-1]}")
  return out[..., :channels], jnp.maximum(out[..., channels:], LOG_SCALE_MIN)


def discretized_logistic_nll(
  out: Float[Array, "b h w c2"], target: Float[Array, "b h w c"], *, bits: int = 8
) -> Float[Array, " b"]:
  r"""Per-image negative log-likelihood in nats per dimension for grey-level (or any) images.

  .. math::
    \text{nll} = -\frac{1}{HWC}\sum_{h,w,c} \log p(x_{hwc} \mid \mu_{hwc}, s_{hwc})

  Args:
    out: network output ``[means | raw log scales]`` (``2C`` channels).
    target: images in :math:`[-1, 1]`.
    bits: bit depth.

  Returns:
    ``[b]`` losses in nats per dimension.

  Examples:
    >>> import jax.numpy as jnp
    >>> nll = discretized_logistic_nll(jnp.zeros((2, 4, 4, 2)), jnp.zeros((2, 4, 4, 1)))
    >>> nll.shape
    (2,)
  """
  c = target.shape[-1]
  mean, log_scale = logistic_params(out, channels=c)
  lp = discretized_logistic_log_prob(target, mean, log_scale, bits=bits)
  return -jnp.mean(lp, axis=(1, 2, 3))


def discretized_logistic_sample(
  key: Key[Array, ""], out: Float[Array, "b h w c2"], *, channels: int
) -> Float[Array, "b h w c"]:
  r"""Samples :math:`x = \mathrm{clip}(\mu + e^{s}(\log U - \log(1 - U)), -1, 1)`.

  :math:`U \sim \mathrm{Uniform}(10^{-5}, 1 - 10^{-5})` as in VDVAE; the result is continuous in
  :math:`[-1, 1]` (quantise with :func:`mrflax.likelihoods.to_uint8`).

  Args:
    key: PRNG key.
    out: network output ``[means | raw log scales]``.
    channels: image channels ``C``.

  Returns:
    Samples ``[b, h, w, C]`` in :math:`[-1, 1]`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> out = jnp.concatenate([jnp.full((1, 2, 2, 1), 0.5), jnp.full((1, 2, 2, 1), -20.0)], -1)
    >>> x = discretized_logistic_sample(jax.random.key(0), out, channels=1)
    >>> bool(jnp.allclose(x, 0.5, atol=0.02))  # log scale clamped at -7
    True
  """
  mean, log_scale = logistic_params(out, channels=channels)
  u = jax.random.uniform(key, mean.shape, dtype=mean.dtype, minval=1e-5, maxval=1.0 - 1e-5)
  return jnp.clip(mean + jnp.exp(log_scale) * (jnp.log(u) - jnp.log1p(-u)), -1.0, 1.0)


def to_uint8(x: Float[Array, "..."]) -> Array:
  r"""VDVAE's quantisation of samples to ``uint8`` pixels.

  :math:`\lfloor\mathrm{clip}((x + 1)\cdot 127.5, 0, 255)\rfloor`.

  Truncation, not rounding (the reference casts with ``astype(uint8)``).

  Args:
    x: values in :math:`[-1, 1]`.

  Returns:
    ``uint8`` array of the same shape.

  Examples:
    >>> import jax.numpy as jnp
    >>> to_uint8(jnp.array([-1.0, 0.0, 1.0])).tolist()
    [0, 127, 255]
  """
  return jnp.clip((x + 1.0) * 127.5, 0.0, 255.0).astype(jnp.uint8)
