r"""Discretised mixture of logistics (DMoL) for RGB images, VDVAE-exact.

Channel layout of the NHWC network output ``out`` (last axis, ``10 M`` channels, ``M``
mixtures): ``out[..., :M]`` are the mixture logits; ``out[..., M:]`` reshaped to ``[..., 3, 3M]``
holds for each colour ``[means(M) | raw_log_scales(M) | raw_coeffs(M)]``; the coefficient slots
of R, G, B hold
:math:`\alpha` (G|R), :math:`\beta` (B|R), :math:`\gamma` (B|G). See VDVAE_REFERENCE.md §6.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Key

from mrflax.likelihoods.logistic import LOG_SCALE_MIN, discretized_logistic_log_prob


def num_dmol_channels(*, num_mixtures: int) -> int:
  """Number of output channels of a DMoL head for RGB images: ``10 * num_mixtures``.

  Args:
    num_mixtures: number of mixture components ``M``.

  Returns:
    ``10 M``.

  Examples:
    >>> num_dmol_channels(num_mixtures=10)
    100
  """
  if num_mixtures < 1:
    raise ValueError(f"num_mixtures must be >= 1, got {num_mixtures}")
  return 10 * num_mixtures


def _split(out: Array, num_mixtures: int):
  m = num_mixtures
  if out.shape[-1] != 10 * m:
    raise ValueError(f"DMoL output must have {10 * m} channels for M={m}, got {out.shape[-1]}")
  logits = out[..., :m]
  rest = out[..., m:].reshape(*out.shape[:-1], 3, 3 * m)
  means = rest[..., :m]
  raw_log_scales = rest[..., m : 2 * m]
  coeffs = jnp.tanh(rest[..., 2 * m : 3 * m])
  return logits, means, raw_log_scales, coeffs


def dmol_log_prob(
  out: Float[Array, "b h w k"], x: Float[Array, "b h w 3"], *, num_mixtures: int, bits: int = 8
) -> Float[Array, "b h w"]:
  r"""Per-pixel log-probability :math:`\log p(x_{hw})` of an RGB pixel under the DMoL.

  For mixture :math:`k`: :math:`s_c = \max(s^{raw}_c, -7)`, :math:`\mu_R = m_R`,
  :math:`\mu_G = m_G + \alpha x_R`, :math:`\mu_B = m_B + \beta x_R + \gamma x_G` (true
  :math:`x`), then :math:`\log p_k = \sum_c \log p_c + \log\mathrm{softmax}(\text{logits})_k`
  with the per-channel bin formula of
  :func:`~mrflax.likelihoods.discretized_logistic_log_prob`, and
  :math:`\log p = \operatorname{logsumexp}_k \log p_k`.

  Args:
    out: network output, ``10 M`` channels in VDVAE's layout.
    x: targets in :math:`[-1, 1]`, 3 channels.
    num_mixtures: ``M``.
    bits: 8, or 5 for VDVAE's low-bit mode.

  Returns:
    ``[b, h, w]`` log-probabilities in nats.

  Examples:
    >>> import jax.numpy as jnp
    >>> dmol_log_prob(jnp.zeros((1, 2, 2, 20)), jnp.zeros((1, 2, 2, 3)), num_mixtures=2).shape
    (1, 2, 2)
  """
  if x.shape[-1] != 3:
    raise ValueError(f"DMoL needs RGB targets (3 channels), got {x.shape[-1]}")
  logits, means, raw_log_scales, coeffs = _split(out, num_mixtures)
  log_scales = jnp.maximum(raw_log_scales, LOG_SCALE_MIN)
  xr = x[..., 0:1]
  xg = x[..., 1:2]
  mu_r = means[..., 0, :]
  mu_g = means[..., 1, :] + coeffs[..., 0, :] * xr
  mu_b = means[..., 2, :] + coeffs[..., 1, :] * xr + coeffs[..., 2, :] * xg
  mu = jnp.stack([mu_r, mu_g, mu_b], axis=-2)  # [b, h, w, 3, M]
  lp_c = discretized_logistic_log_prob(x[..., None], mu, log_scales, bits=bits)
  lp_k = jnp.sum(lp_c, axis=-2) + jax.nn.log_softmax(logits, axis=-1)
  return jax.nn.logsumexp(lp_k, axis=-1)


def dmol_nll(
  out: Float[Array, "b h w k"], x: Float[Array, "b h w 3"], *, num_mixtures: int, bits: int = 8
) -> Float[Array, " b"]:
  r"""Per-image distortion in nats per dimension: :math:`-\sum_{hw} \log p(x_{hw}) / (HWC)`.

  Args:
    out: network output, ``10 M`` channels.
    x: targets in :math:`[-1, 1]`.
    num_mixtures: ``M``.
    bits: 8, or 5 for low-bit mode.

  Returns:
    ``[b]`` negative log-likelihoods in nats per dimension.

  Examples:
    >>> import jax.numpy as jnp
    >>> dmol_nll(jnp.zeros((2, 2, 2, 10)), jnp.zeros((2, 2, 2, 3)), num_mixtures=1).shape
    (2,)
  """
  lp = dmol_log_prob(out, x, num_mixtures=num_mixtures, bits=bits)
  return -jnp.sum(lp, axis=(1, 2)) / (x.shape[1] * x.shape[2] * x.shape[3])


def dmol_sample(
  key: Key[Array, ""], out: Float[Array, "b h w k"], *, num_mixtures: int
) -> Float[Array, "b h w 3"]:
  r"""Samples RGB pixels in :math:`[-1, 1]` from the DMoL, VDVAE's procedure.

  Mixture index :math:`k = \arg\max(\text{logits} - \log(-\log U))` (one per pixel, shared by
  the colours), :math:`U \sim \mathrm{Uniform}(10^{-5}, 1-10^{-5})`; logistic noise
  :math:`v = \mu + e^{s}(\log U' - \log(1-U'))` with the selected mixture's mean and clamped log
  scale; then :math:`x_R = \mathrm{clip}(v_R)`, :math:`x_G = \mathrm{clip}(v_G + \alpha x_R)`,
  :math:`x_B = \mathrm{clip}(v_B + \beta x_R + \gamma x_G)` with clip to :math:`[-1, 1]`.
  Quantise with :func:`~mrflax.likelihoods.to_uint8`.

  Args:
    key: PRNG key.
    out: network output, ``10 M`` channels.
    num_mixtures: ``M``.

  Returns:
    ``[b, h, w, 3]`` samples in :math:`[-1, 1]`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> dmol_sample(jax.random.key(0), jnp.zeros((1, 2, 2, 10)), num_mixtures=1).shape
    (1, 2, 2, 3)
  """
  logits, means, raw_log_scales, coeffs = _split(out, num_mixtures)
  k_mix, k_log = jax.random.split(key)
  u = jax.random.uniform(k_mix, logits.shape, dtype=out.dtype, minval=1e-5, maxval=1.0 - 1e-5)
  idx = jnp.argmax(logits - jnp.log(-jnp.log(u)), axis=-1)
  sel = jax.nn.one_hot(idx, num_mixtures, dtype=out.dtype)[..., None, :]  # [b, h, w, 1, M]
  mu = jnp.sum(means * sel, axis=-1)
  log_s = jnp.maximum(jnp.sum(raw_log_scales * sel, axis=-1), LOG_SCALE_MIN)
  c = jnp.sum(coeffs * sel, axis=-1)
  u2 = jax.random.uniform(k_log, mu.shape, dtype=out.dtype, minval=1e-5, maxval=1.0 - 1e-5)
  v = mu + jnp.exp(log_s) * (jnp.log(u2) - jnp.log1p(-u2))
  x_r = jnp.clip(v[..., 0], -1.0, 1.0)
  x_g = jnp.clip(v[..., 1] + c[..., 0] * x_r, -1.0, 1.0)
  x_b = jnp.clip(v[..., 2] + c[..., 1] * x_r + c[..., 2] * x_g, -1.0, 1.0)
  return jnp.stack([x_r, x_g, x_b], axis=-1)
