"""Unit conversions for likelihood reporting: nats/dim, bits/dim, nats/image."""

from __future__ import annotations

import math

from jaxtyping import Array, Float


def bits_per_dim(nats_per_dim: Float[Array, "..."] | float) -> Float[Array, "..."] | float:
  r"""Converts nats per dimension to bits per dimension: :math:`b = n / \ln 2`.

  Args:
    nats_per_dim: a loss in nats per data dimension.

  Returns:
    The same quantity in bits per dimension.

  Examples:
    >>> round(bits_per_dim(math.log(2.0)), 12)
    1.0
  """
  return nats_per_dim / math.log(2.0)


def nats_per_image(
  nats_per_dim: Float[Array, "..."] | float, *, dims: int
) -> Float[Array, "..."] | float:
  r"""Converts nats per dimension to nats per image: :math:`n \cdot D` with ``D = H·W·C``.

  Args:
    nats_per_dim: a loss in nats per data dimension.
    dims: number of data dimensions per image (e.g. 3072 for 32x32x3, 784 for a 28x28 crop).

  Returns:
    The same quantity in nats per image.

  Examples:
    >>> nats_per_image(0.1, dims=784)
    78.4
  """
  if dims <= 0:
    raise ValueError(f"dims must be positive, got {dims}")
  return nats_per_dim * dims
