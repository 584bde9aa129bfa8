r"""One level of the orthonormal N-D Haar transform (1-D signals, 2-D images, 3-D volumes).

Arrays are channels-last, ``(..., n_1, ..., n_d, C)``; any number of leading batch axes is left
untouched. The transform is written with strided slices (analysis) and interior padding
(synthesis), never with reshapes that split an axis, so a batch sharded over a device mesh stays
sharded.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float

from mrflax.wavelets import _validate

_SQRT_HALF = math.sqrt(0.5)


def _slice(x: Array, axis: int, start: int) -> Array:
  """``x`` restricted to the indices ``start::2`` of ``axis``."""
  index = [slice(None)] * x.ndim
  index[axis] = slice(start, None, 2)
  return x[tuple(index)]


def _interleave(even: Array, odd: Array, axis: int) -> Array:
  """The array ``out`` with ``out[2i] = even[i]`` and ``out[2i + 1] = odd[i]`` along ``axis``.

  Uses ``lax.pad`` with interior padding (no reshape, no scatter): XLA fuses both pads and the
  add into one loop.
  """
  zero = jnp.zeros((), even.dtype)
  cfg_even = [(0, 0, 0)] * even.ndim
  cfg_odd = [(0, 0, 0)] * even.ndim
  cfg_even[axis] = (0, 1, 1)
  cfg_odd[axis] = (1, 0, 1)
  return lax.pad(even, zero, cfg_even) + lax.pad(odd, zero, cfg_odd)


def _split_1d(x: Array, axis: int) -> tuple[Array, Array]:
  """Unnormalised 1-D Haar step along ``axis``: ``(x0 + x1, x0 − x1)``."""
  x0, x1 = _slice(x, axis, 0), _slice(x, axis, 1)
  return x0 + x1, x0 - x1


def _merge_1d(lo: Array, hi: Array, axis: int) -> Array:
  """Unnormalised inverse of :func:`_split_1d` up to a factor 2: interleaves lo ± hi."""
  return _interleave(lo + hi, lo - hi, axis)


def _scale(d: int) -> float:
  """The normalisation 2^{-d/2}, applied once per level (exact in binary for even d)."""
  return 0.5 ** (d // 2) * (_SQRT_HALF if d % 2 else 1.0)


def haar_step(
  x: Float[Array, "... c"], *, ndim: int = 2
) -> tuple[Float[Array, "... c"], Float[Array, "... bands c"]]:
  r"""One level of the orthonormal ``ndim``-D Haar analysis.

  For a family of :math:`2^d` children :math:`x[2p + o]`, :math:`o \in \{0,1\}^d`, and a band
  :math:`\eta \in \{0,1\}^d`,

  .. math::
    y_\eta[p] = 2^{-d/2} \sum_{o} (-1)^{\langle \eta, o\rangle} x[2p + o].

  The map is orthonormal (its matrix is the d-fold Kronecker power of
  :math:`2^{-1/2}[[1, 1], [1, -1]]`), and :math:`y_0 = 2^{d/2} \cdot \mathrm{avgpool}(x)`.
  It is computed separably, one axis at a time, with one normalisation at the end.

  Args:
    x: array of shape ``(..., n_1, ..., n_d, C)`` with every ``n_a`` even.
    ndim: number of spatial axes ``d`` (1, 2 or 3).

  Returns:
    ``(approx, details)``: ``approx`` is :math:`y_0` with shape ``(..., n_1/2, ..., n_d/2, C)``;
    ``details`` stacks the :math:`2^d - 1` bands :math:`\eta \ne 0` in increasing binary value
    (first spatial axis = most significant bit; 2-D: ``01, 10, 11``) with shape
    ``(..., n_1/2, ..., n_d/2, 2^d - 1, C)``.

  Raises:
    ValueError: bad ``ndim``, too small a rank, a non-floating dtype or an odd spatial size.

  Examples:
    >>> import jax.numpy as jnp
    >>> from mrflax.wavelets import haar_step
    >>> x = jnp.array([[1.0, 2.0], [3.0, 4.0]])[None, :, :, None]   # (1, 2, 2, 1)
    >>> approx, details = haar_step(x, ndim=2)
    >>> approx[0, 0, 0, 0]          # (1 + 2 + 3 + 4) / 2
    Array(5., dtype=float32)
    >>> details[0, 0, 0, :, 0]      # bands 01 (across W), 10 (across H), 11
    Array([-1., -2.,  0.], dtype=float32)
  """
  d = _validate.check_ndim(ndim)
  _validate.check_array(x, ndim=d)
  _validate.check_divisible(x, ndim=d, levels=1)
  bands = [x]
  # Axis by axis, every band splits into (low, high); after axis a the list is ordered by the
  # binary value of (eta_1, ..., eta_a), first axis most significant.
  for axis in _validate.spatial_axes(x.ndim, d):
    bands = [part for band in bands for part in _split_1d(band, axis)]
  scale = _scale(d)
  return bands[0] * scale, jnp.stack(bands[1:], axis=-2) * scale


def haar_step_inverse(
  approx: Float[Array, "... c"],
  details: Float[Array, "... bands c"],
  *,
  ndim: int = 2,
) -> Float[Array, "... c"]:
  r"""Inverse of :func:`haar_step` (one level of Haar synthesis).

  .. math::
    x[2p + o] = 2^{-d/2} \sum_{\eta} (-1)^{\langle \eta, o\rangle} y_\eta[p].

  Since the analysis matrix is symmetric and orthogonal, synthesis is also its adjoint.

  Args:
    approx: approximation band, shape ``(..., m_1, ..., m_d, C)``.
    details: detail bands, shape ``(..., m_1, ..., m_d, 2^d - 1, C)``.
    ndim: number of spatial axes ``d``.

  Returns:
    The array of shape ``(..., 2 m_1, ..., 2 m_d, C)``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from mrflax.wavelets import haar_step, haar_step_inverse
    >>> x = jnp.arange(8.0).reshape(1, 8, 1)
    >>> jnp.allclose(haar_step_inverse(*haar_step(x, ndim=1), ndim=1), x)
    Array(True, dtype=bool)
  """
  d = _validate.check_ndim(ndim)
  _validate.check_array(approx, ndim=d, name="approx")
  _validate.check_array(details, ndim=d + 1, name="details")
  n_bands = 2**d - 1
  expected = (*approx.shape[:-1], n_bands, approx.shape[-1])
  if details.shape != expected:
    raise ValueError(
      f"details must have shape {expected} (approx shape {approx.shape} with a band axis of "
      f"2**{d} - 1 = {n_bands} before the channels) for ndim={d}; got {details.shape}"
    )
  bands = [approx] + [details[..., k, :] for k in range(n_bands)]
  for axis in reversed(_validate.spatial_axes(approx.ndim, d)):
    bands = [_merge_1d(bands[2 * i], bands[2 * i + 1], axis) for i in range(len(bands) // 2)]
  (x,) = bands
  return (x * _scale(d)).astype(jnp.result_type(approx, details))
