"""Argument checks shared by the wavelet functions (trace-time, free under ``jit``)."""

from __future__ import annotations

import operator

import jax.numpy as jnp
import numpy as np


def check_ndim(ndim) -> int:
  """Returns ``ndim`` as an int, or raises if it is not 1, 2 or 3."""
  try:
    d = operator.index(ndim)
  except TypeError:
    raise ValueError(f"ndim must be an integer in {{1, 2, 3}}, got {ndim!r}") from None
  if d not in (1, 2, 3):
    raise ValueError(f"ndim must be 1, 2 or 3 (signals, images, volumes), got ndim={d}")
  return d


def check_levels(levels) -> int:
  """Returns ``levels`` as an int, or raises if it is negative or not an integer."""
  try:
    n = operator.index(levels)
  except TypeError:
    raise ValueError(f"levels must be a non-negative integer, got {levels!r}") from None
  if n < 0:
    raise ValueError(f"levels must be >= 0, got levels={n}")
  return n


def check_array(x, *, ndim: int, name: str = "x"):
  """Checks rank and dtype of a channels-last array with ``ndim`` spatial axes."""
  shape = np.shape(x)
  if len(shape) < ndim + 1:
    raise ValueError(
      f"{name} must have at least ndim + 1 = {ndim + 1} axes (batch..., {ndim} spatial, "
      f"channels) for ndim={ndim}; got shape {tuple(shape)} with rank {len(shape)}. "
      "Add a trailing channel axis, e.g. x[..., None]."
    )
  dtype = jnp.result_type(x)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(
      f"{name} must have a floating dtype (float16, bfloat16, float32, float64); got "
      f"dtype {dtype}. Convert first, e.g. x.astype(jnp.float32)."
    )


def spatial_axes(rank: int, ndim: int) -> tuple[int, ...]:
  """Positive indices of the ``ndim`` spatial axes of a channels-last array of ``rank``."""
  return tuple(range(rank - 1 - ndim, rank - 1))


def check_divisible(x, *, ndim: int, levels: int, name: str = "x") -> None:
  """Raises unless every spatial axis of ``x`` can be halved ``levels`` times."""
  shape = np.shape(x)
  factor = 2**levels
  for axis in spatial_axes(len(shape), ndim):
    size = shape[axis]
    if size % factor:
      raise ValueError(
        f"{name} has spatial axis {axis} of size {size}, which cannot be halved "
        f"levels={levels} times (needs a multiple of 2**{levels} = {factor}); full shape "
        f"{tuple(shape)}. mrflax never pads or truncates: pad or crop explicitly, or use "
        "fewer levels."
      )
