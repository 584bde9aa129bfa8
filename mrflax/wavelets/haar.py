r"""One level of the orthonormal N-D Haar transform (1-D signals, 2-D images, 3-D volumes).

Arrays are channels-last, ``(..., n_1, ..., n_d, C)``; any number of leading batch axes is left
untouched. The transform is written with strided slices (analysis) and stack-then-merge interleaving
(synthesis), never with reshapes that split an axis, so a batch sharded over a device mesh stays
sharded.
"""

from __future__ import annotations

import itertools
import math

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from mrflax.wavelets import _validate

_SQRT_HALF = math.sqrt(0.5)


def _offsets(d: int) -> list[tuple[int, ...]]:
  """All o in {0,1}^d in increasing binary value, first axis most significant."""
  return list(itertools.product((0, 1), repeat=d))


def _sign(eta: tuple[int, ...], o: tuple[int, ...]) -> int:
  """(-1)^<eta, o>."""
  return -1 if sum(e * b for e, b in zip(eta, o, strict=True)) % 2 else 1


def _signed_sum(terms: list[Array], signs: list[int]) -> Array:
  out = terms[0] if signs[0] > 0 else -terms[0]
  for term, sign in zip(terms[1:], signs[1:], strict=True):
    out = out + term if sign > 0 else out - term
  return out


def _scale(d: int) -> float:
  """The normalisation 2^{-d/2} (exact in binary for even d)."""
  return 0.5 ** (d // 2) * (_SQRT_HALF if d % 2 else 1.0)


def _interleave(even: Array, odd: Array, axis: int) -> Array:
  """The array ``out`` with ``out[2i] = even[i]`` and ``out[2i + 1] = odd[i]`` along ``axis``.

  A stack on a new axis right after ``axis`` followed by a reshape that *merges* the two: no
  existing axis is split, so batch sharding is untouched, and XLA fuses the whole synthesis into
  one loop that writes each output element once.
  """
  shape = even.shape
  stacked = jnp.stack([even, odd], axis=axis + 1)
  return stacked.reshape(*shape[:axis], 2 * shape[axis], *shape[axis + 1 :])


def haar_step(
  x: Float[ArrayLike, "... c"], *, ndim: int = 2
) -> tuple[Float[Array, "... c"], Float[Array, "... bands c"]]:
  r"""One level of the orthonormal ``ndim``-D Haar analysis.

  For a family of :math:`2^d` children :math:`x[2p + o]`, :math:`o \in \{0,1\}^d`, and a band
  :math:`\eta \in \{0,1\}^d`,

  .. math::
    y_\eta[p] = 2^{-d/2} \sum_{o} (-1)^{\langle \eta, o\rangle} x[2p + o].

  The map is orthonormal (its matrix is the d-fold Kronecker power of
  :math:`2^{-1/2}[[1, 1], [1, -1]]`), and :math:`y_0 = 2^{d/2} \cdot \mathrm{avgpool}(x)`.
  It is computed from this formula directly (one fused loop per band).

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
  x = jnp.asarray(x)
  spatial = _validate.spatial_axes(x.ndim, d)
  # The 2^d children of every family, x[..., o_1::2, ..., o_d::2, :] (strided slices).
  children = []
  for o in _offsets(d):
    index = [slice(None)] * x.ndim
    for axis, start in zip(spatial, o, strict=True):
      index[axis] = slice(start, None, 2)
    children.append(x[tuple(index)])
  # The defining formula, band by band: one fused loop per output, each reading x once.
  scale = _scale(d)
  bands = [
    _signed_sum(children, [_sign(eta, o) for o in _offsets(d)]) * scale for eta in _offsets(d)
  ]
  # Scale before stacking: XLA:CPU fuses "elementwise, then concatenate" well but runs
  # "concatenate, then elementwise" about 2x slower (benchmarks/wavelets.py).
  return bands[0], jnp.stack(bands[1:], axis=-2)


def haar_step_inverse(
  approx: Float[ArrayLike, "... c"],
  details: Float[ArrayLike, "... bands c"],
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
  approx, details = jnp.asarray(approx), jnp.asarray(details)
  n_bands = 2**d - 1
  expected = (*approx.shape[:-1], n_bands, approx.shape[-1])
  if details.shape != expected:
    raise ValueError(
      f"details must have shape {expected} (approx shape {approx.shape} with a band axis of "
      f"2**{d} - 1 = {n_bands} before the channels) for ndim={d}; got {details.shape}"
    )
  bands = [approx] + [details[..., k, :] for k in range(n_bands)]
  scale = _scale(d)
  # The 2^d phases x[2p + o] by the synthesis formula, then interleaved axis by axis (last axis
  # first): after handling axis a, phases are keyed by the offsets of the axes before it.
  phases = {
    o: _signed_sum(bands, [_sign(eta, o) for eta in _offsets(d)]) * scale for o in _offsets(d)
  }
  for axis_pos, axis in reversed(list(enumerate(_validate.spatial_axes(approx.ndim, d)))):
    prefixes = _offsets(axis_pos)
    phases = {p: _interleave(phases[(*p, 0)], phases[(*p, 1)], axis) for p in prefixes}
  return phases[()].astype(jnp.result_type(approx, details))
