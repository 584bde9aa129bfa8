r"""Bernoulli likelihood for binary images, with an optional central crop for the loss.

Binarised MNIST is commonly padded from 28x28 to 32x32 so that it fits a power-of-two hierarchy;
the loss is then taken on the central 28x28 crop only (``crop=2``), so nats/dim and nats/image
refer to the original 784 pixels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Key


def central_crop(x: Float[Array, "b h w c"], *, crop: int) -> Float[Array, "b hc wc c"]:
  """Removes ``crop`` pixels from each side of both spatial axes.

  Args:
    x: NHWC images.
    crop: pixels removed per side (``0`` = no crop).

  Returns:
    ``x[:, crop:h-crop, crop:w-crop, :]``.

  Examples:
    >>> import jax.numpy as jnp
    >>> central_crop(jnp.zeros((1, 32, 32, 1)), crop=2).shape
    (1, 28, 28, 1)
  """
  if crop < 0 or 2 * crop >= min(x.shape[1], x.shape[2]):
    raise ValueError(f"crop={crop} does not fit images of size {x.shape[1:3]}")
  if crop == 0:
    return x
  return x[:, crop:-crop, crop:-crop, :]


def bernoulli_log_prob(
  logits: Float[ArrayLike, "..."], x: Float[ArrayLike, "..."]
) -> Float[Array, "..."]:
  r"""Elementwise Bernoulli log-probability of binary targets.

  :math:`\log p(x) = x\,\ell - \operatorname{softplus}(\ell)` for :math:`x \in \{0,1\}`.

  Args:
    logits: Bernoulli logits :math:`\ell`.
    x: binary targets (0 or 1).

  Returns:
    Log-probabilities in nats.

  Examples:
    >>> import jax.numpy as jnp
    >>> round(float(bernoulli_log_prob(jnp.array(0.0), jnp.array(1.0))), 6)
    -0.693147
  """
  return x * logits - jax.nn.softplus(logits)


def bernoulli_nll(
  logits: Float[Array, "b h w c"], x: Float[Array, "b h w c"], *, crop: int = 0
) -> Float[Array, " b"]:
  r"""Per-image negative log-likelihood in nats per dimension on the central crop.

  .. math::
    \text{nll} = -\frac{1}{H'W'C}\sum_{\text{crop}} x\,\ell - \operatorname{softplus}(\ell)

  Args:
    logits: logits ``[b, h, w, c]``.
    x: binary targets of the same shape.
    crop: pixels removed per side before the loss (2 for MNIST padded 28 -> 32).

  Returns:
    ``[b]`` losses in nats per (cropped) dimension.

  Examples:
    >>> import jax.numpy as jnp
    >>> nll = bernoulli_nll(jnp.zeros((1, 32, 32, 1)), jnp.ones((1, 32, 32, 1)), crop=2)
    >>> round(float(nll[0]), 4)
    0.6931
  """
  if logits.shape != x.shape:
    raise ValueError(f"logits {logits.shape} and targets {x.shape} differ in shape")
  lp = bernoulli_log_prob(central_crop(logits, crop=crop), central_crop(x, crop=crop))
  return -jnp.mean(lp, axis=(1, 2, 3))


def bernoulli_sample(key: Key[Array, ""], logits: Float[Array, "..."]) -> Float[Array, "..."]:
  r"""Samples :math:`x \sim \mathrm{Bernoulli}(\sigma(\ell))` as floats in {0, 1}.

  Args:
    key: PRNG key.
    logits: logits :math:`\ell`.

  Returns:
    Binary samples with the dtype of ``logits``.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> bernoulli_sample(jax.random.key(0), jnp.array([-50.0, 50.0])).tolist()
    [0.0, 1.0]
  """
  return jax.random.bernoulli(key, jax.nn.sigmoid(logits)).astype(logits.dtype)
