r"""Multi-level Haar decompositions and their containers (pytrees).

A :class:`HaarPyramid` holds the coarsest approximation and one detail array per level,
**coarsest level first** (the order of PyWavelets' ``wavedecn``). It is a pytree whose leaves are
the arrays and whose static metadata is ``ndim``, so it passes through ``jit``, ``vmap``, ``grad``
and ``lax.scan`` unchanged.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from mrflax._pytree import pytree_dataclass
from mrflax.wavelets import _validate
from mrflax.wavelets.haar import haar_step, haar_step_inverse


@pytree_dataclass
@dataclasses.dataclass(frozen=True)
class HaarPyramid:
  """A multi-level orthonormal Haar decomposition.

  Attributes:
    approx: the coarsest approximation band, shape ``(..., n_1/2^J, ..., n_d/2^J, C)``.
    details: ``J`` arrays, coarsest first; ``details[k]`` has shape
      ``(..., n_1/2^(J-k), ..., n_d/2^(J-k), 2^d - 1, C)`` (band axis before the channels, bands
      in the order of :func:`~mrflax.wavelets.haar_step`).
    ndim: number of spatial axes (static pytree metadata).
  """

  approx: Float[Array | np.ndarray, "... c"]
  details: tuple[Float[Array | np.ndarray, "... bands c"], ...]
  ndim: int = dataclasses.field(default=2, metadata=dict(static=True))

  @property
  def levels(self) -> int:
    """Number of decomposition levels ``J``."""
    return len(self.details)


@pytree_dataclass
@dataclasses.dataclass(frozen=True)
class BandEnergies:
  r"""Energies (sums of squared orthonormal coefficients) of every band of a pyramid.

  Attributes:
    approx: energy of the approximation band, shape ``(...)`` (one value per batch element).
    details: per level, coarsest first, the energy of each detail band, shape ``(..., 2^d - 1)``.
  """

  approx: Float[Array | np.ndarray, "..."]
  details: tuple[Float[Array | np.ndarray, "... bands"], ...]

  def total(self) -> Float[Array, "..."]:
    """The energy of all bands together; by Parseval, the squared Euclidean norm of the input."""
    return self.approx + sum(jnp.sum(e, axis=-1) for e in self.details)

  def per_level(self) -> Float[Array, "... levels_plus_1"]:
    """Energy per level ``[approx, coarsest, ..., finest details]``, shape ``(..., J+1)``."""
    return jnp.stack([self.approx, *(jnp.sum(e, axis=-1) for e in self.details)], axis=-1)

  def spectrum(self) -> Float[Array, "... levels_plus_1"]:
    r"""The Haar spectrum :math:`S_j = E_j / \sum_k E_k` per level (coarsest first; sums to 1)."""
    per_level = self.per_level()
    return per_level / jnp.sum(per_level, axis=-1, keepdims=True)


def haar_analysis(x: Float[ArrayLike, "... c"], *, levels: int = 1, ndim: int = 2) -> HaarPyramid:
  r"""Multi-level orthonormal Haar analysis: ``levels`` repeated :func:`haar_step`\ s.

  With :math:`y^{(J)} = x` and :math:`(y^{(j-1)}, w^{(j-1)}) = \mathrm{step}(y^{(j)})`, the pyramid
  is :math:`(y^{(0)}; w^{(0)}, \dots, w^{(J-1)})`. It is orthonormal (Parseval):

  .. math::
    \sum x^2 = \sum (y^{(0)})^2 + \sum_{j} \sum (w^{(j)})^2 ,

  and the coarsest approximation is :math:`2^{Jd/2}` times the mean over blocks of side
  :math:`2^J` (average pooling).

  Args:
    x: array ``(..., n_1, ..., n_d, C)``; every ``n_a`` divisible by ``2**levels``.
    levels: number of levels ``J >= 0`` (``0`` returns ``x`` as the approximation).
    ndim: number of spatial axes ``d`` (1, 2 or 3).

  Returns:
    A :class:`HaarPyramid` with details coarsest first.

  Raises:
    ValueError: bad ``levels`` or ``ndim``, too small a rank, a non-floating dtype, or a spatial
      size not divisible by ``2**levels`` (the message names the axis and its size).

  Examples:
    >>> import jax.numpy as jnp
    >>> from mrflax import wavelets
    >>> x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    >>> pyr = wavelets.haar_analysis(x, levels=2, ndim=2)
    >>> pyr.approx.shape, [d.shape for d in pyr.details]
    ((1, 1, 1, 1), [(1, 1, 1, 3, 1), (1, 2, 2, 3, 1)])
    >>> float(pyr.approx[0, 0, 0, 0])     # 2**(2*2/2) * mean(x) = 4 * 7.5
    30.0
  """
  d = _validate.check_ndim(ndim)
  n = _validate.check_levels(levels)
  _validate.check_array(x, ndim=d)
  _validate.check_divisible(x, ndim=d, levels=n)
  details = []
  approx = x
  for _ in range(n):
    approx, band = haar_step(approx, ndim=d)
    details.append(band)
  return HaarPyramid(approx=approx, details=tuple(reversed(details)), ndim=d)


def haar_synthesis(pyramid: HaarPyramid) -> Float[Array, "... c"]:
  r"""Inverse (and adjoint) of :func:`haar_analysis`.

  .. math::
    y^{(j+1)} = \mathrm{step}^{-1}(y^{(j)}, w^{(j)}),\quad j = 0, \dots, J-1;\qquad x = y^{(J)}.

  Args:
    pyramid: a :class:`HaarPyramid` (details coarsest first).

  Returns:
    The reconstructed array ``(..., n_1, ..., n_d, C)``.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from mrflax import wavelets
    >>> x = jax.random.normal(jax.random.key(0), (2, 8, 8, 8, 3))      # 3-D volumes
    >>> y = wavelets.haar_synthesis(wavelets.haar_analysis(x, levels=3, ndim=3))
    >>> bool(jnp.allclose(x, y, atol=1e-5))
    True
  """
  if not isinstance(pyramid, HaarPyramid):
    raise ValueError(
      f"pyramid must be a HaarPyramid (from haar_analysis); got {type(pyramid).__name__}"
    )
  x = pyramid.approx
  for level, band in enumerate(pyramid.details):
    if band.shape[:-2] != x.shape[:-1] or band.shape[-1] != x.shape[-1]:
      raise ValueError(
        f"pyramid.details[{level}] has shape {band.shape}, which does not fit the "
        f"approximation of shape {x.shape} at that level (expected "
        f"{(*x.shape[:-1], 2**pyramid.ndim - 1, x.shape[-1])})"
      )
    x = haar_step_inverse(x, band, ndim=pyramid.ndim)
  return x


def band_energies(pyramid: HaarPyramid) -> BandEnergies:
  r"""Energy of every band of a pyramid, per batch element.

  .. math::
    E_0 = \sum_{p, c} y^{(0)}[p, c]^2, \qquad
    E_{j, \eta} = \sum_{p, c} w^{(j)}_\eta[p, c]^2 .

  Sums run over the spatial and channel axes; batch axes are kept. By orthonormality the total
  equals :math:`\sum x^2` over the same axes, and ``band_energies(...).spectrum()`` is the Haar
  spectrum :math:`S_j` of THEORY.md §2.5 (resolution-independent: the same as ratios of the
  mean-convention norms :math:`\|q^{(j)}\|^2 / \|x\|^2`).

  Args:
    pyramid: a :class:`HaarPyramid`.

  Returns:
    :class:`BandEnergies` with ``approx`` of shape ``(...)`` and ``details[k]`` of shape
    ``(..., 2^d - 1)``, coarsest first.

  Examples:
    >>> import jax.numpy as jnp
    >>> from mrflax import wavelets
    >>> x = jnp.array([1.0, 3.0, 5.0, 7.0]).reshape(1, 4, 1)
    >>> e = wavelets.band_energies(wavelets.haar_analysis(x, levels=2, ndim=1))
    >>> float(e.total()[0]), float(jnp.sum(x**2))
    (84.0, 84.0)
    >>> [round(float(s), 4) for s in e.spectrum()[0]]   # mean, coarse, fine: 64, 16, 4 of 84
    [0.7619, 0.1905, 0.0476]
  """
  d = pyramid.ndim
  approx = jnp.sum(jnp.square(pyramid.approx), axis=tuple(range(-d - 1, 0)))
  # details: (..., spatial, bands, C) -> sum over channels and the spatial axes, keep bands.
  details = tuple(
    jnp.sum(jnp.square(band), axis=(*range(-d - 2, -2), -1)) for band in pyramid.details
  )
  return BandEnergies(approx=approx, details=details)
