r"""Average pooling as the L² projection onto Haar spaces, its adjoint, and the L² geometry.

Convention (THEORY.md §2.2): an array ``x`` with spatial sizes ``(n_1, ..., n_d)`` represents the
function :math:`f_x` on :math:`[0, 1)^d` that equals ``x[p]`` on the cell of position ``p``
("pixel value = function value"). Then

* :func:`project` (average pooling by :math:`2^\nu`) is the L²-orthogonal projection
  :math:`P^{\circ\nu}: V_j \to V_{j-\nu}`;
* :func:`embed` (nearest upsampling by :math:`2^\nu`) is the inclusion
  :math:`\iota^{\circ\nu}: V_{j-\nu} \to V_j`, and the adjoint of :func:`project` for the mean
  inner product :func:`l2_inner`;
* :func:`detail` is :math:`Q = I - \iota P`, the orthogonal projector onto the detail space.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from mrflax.wavelets import _validate


def _prepare(x, *, levels, ndim, divisible: bool):
  d = _validate.check_ndim(ndim)
  n = _validate.check_levels(levels)
  _validate.check_array(x, ndim=d)
  if divisible:
    _validate.check_divisible(x, ndim=d, levels=n)
  return jnp.asarray(x), d, n


def project(
  x: Float[ArrayLike, "... c"], *, levels: int = 1, ndim: int = 2
) -> Float[Array, "... c"]:
  r"""Orthogonal L² projection onto the coarser Haar space: average pooling by ``2**levels``.

  .. math::
    (P x)[p] = 2^{-d} \sum_{o \in \{0,1\}^d} x[2p + o], \qquad
    P^{\circ \nu} x = \text{mean over blocks of side } 2^\nu .

  Computed as ``levels`` pairwise averages per axis with strided slices (exact for the dyadic
  pyramid, sharding-preserving).

  Args:
    x: array ``(..., n_1, ..., n_d, C)``; every ``n_a`` divisible by ``2**levels``.
    levels: number of halvings :math:`\nu \ge 0`.
    ndim: number of spatial axes ``d``.

  Returns:
    Array ``(..., n_1 / 2^ν, ..., n_d / 2^ν, C)`` of the same dtype.

  Examples:
    >>> import jax.numpy as jnp
    >>> from mrflax.wavelets import project
    >>> x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    >>> project(x, levels=1, ndim=2)[0, :, :, 0]
    Array([[ 2.5,  4.5],
           [10.5, 12.5]], dtype=float32)
  """
  x, d, n = _prepare(x, levels=levels, ndim=ndim, divisible=True)
  axes = _validate.spatial_axes(x.ndim, d)
  for _ in range(n):
    for axis in axes:
      even = x[(slice(None),) * axis + (slice(0, None, 2),)]
      odd = x[(slice(None),) * axis + (slice(1, None, 2),)]
      x = (even + odd) * 0.5
  return x


def embed(x: Float[ArrayLike, "... c"], *, levels: int = 1, ndim: int = 2) -> Float[Array, "... c"]:
  r"""Inclusion of a coarse Haar space into a finer one: nearest upsampling by ``2**levels``.

  .. math::
    (\iota^{\circ\nu} y)[2^\nu p + o] = y[p], \qquad o \in \{0, \dots, 2^\nu - 1\}^d .

  The function represented is unchanged, so :func:`l2_norm` is unchanged too, and
  ``project(embed(y)) == y``.

  Args:
    x: array ``(..., m_1, ..., m_d, C)``.
    levels: number of doublings :math:`\nu \ge 0`.
    ndim: number of spatial axes ``d``.

  Returns:
    Array ``(..., 2^ν m_1, ..., 2^ν m_d, C)`` of the same dtype.

  Examples:
    >>> import jax.numpy as jnp
    >>> from mrflax.wavelets import embed
    >>> embed(jnp.array([1.0, 2.0]).reshape(1, 2, 1), levels=1, ndim=1)[0, :, 0]
    Array([1., 1., 2., 2.], dtype=float32)
  """
  x, d, n = _prepare(x, levels=levels, ndim=ndim, divisible=False)
  factor = 2**n
  if factor == 1:
    return x
  for axis in _validate.spatial_axes(x.ndim, d):
    x = jnp.repeat(x, factor, axis=axis, total_repeat_length=x.shape[axis] * factor)
  return x


def detail(
  x: Float[ArrayLike, "... c"], *, levels: int = 1, ndim: int = 2
) -> Float[Array, "... c"]:
  r"""Projection onto the detail spaces: :math:`Q x = x - \iota^{\circ\nu} P^{\circ\nu} x`.

  :math:`Q` is the L²-orthogonal projector onto :math:`W_{j-\nu} \oplus \dots \oplus W_{j-1}`:
  the residual is orthogonal to every function of the coarse space, and
  :math:`\|x\|^2 = \|\iota P x\|^2 + \|Q x\|^2`.

  Args:
    x: array ``(..., n_1, ..., n_d, C)``; every ``n_a`` divisible by ``2**levels``.
    levels: number of levels :math:`\nu`.
    ndim: number of spatial axes ``d``.

  Returns:
    Array of the shape and dtype of ``x``; its block means over blocks of side ``2**levels``
    are zero.

  Examples:
    >>> import jax.numpy as jnp
    >>> from mrflax.wavelets import detail
    >>> detail(jnp.array([1.0, 3.0, 5.0, 9.0]).reshape(1, 4, 1), ndim=1)[0, :, 0]
    Array([-1.,  1., -2.,  2.], dtype=float32)
  """
  x, d, n = _prepare(x, levels=levels, ndim=ndim, divisible=True)
  return x - embed(project(x, levels=n, ndim=d), levels=n, ndim=d)


def l2_inner(
  x: Float[ArrayLike, "*s c"], y: Float[ArrayLike, "*s c"], *, ndim: int = 2
) -> Float[Array, "..."]:
  r"""L² inner product of the functions two arrays represent: the spatial mean of Σ_c x·y.

  .. math::
    \langle f_x, f_y \rangle = \frac{1}{\prod_a n_a} \sum_p \sum_c x[p, c]\, y[p, c] .

  Reduces over the spatial and channel axes only; batch axes are kept. Because it is a mean,
  values are comparable across resolutions (``l2_inner(embed(x), embed(y)) == l2_inner(x, y)``).

  Args:
    x: array ``(..., n_1, ..., n_d, C)``.
    y: array of the same shape.
    ndim: number of spatial axes ``d``.

  Returns:
    Array of shape ``(...)``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from mrflax.wavelets import l2_inner
    >>> x = jnp.ones((2, 4, 4, 3))
    >>> l2_inner(x, 2 * x, ndim=2)       # mean over 16 pixels of 3 * 2
    Array([6., 6.], dtype=float32)
  """
  d = _validate.check_ndim(ndim)
  _validate.check_array(x, ndim=d, name="x")
  _validate.check_array(y, ndim=d, name="y")
  if jnp.shape(x) != jnp.shape(y):
    raise ValueError(f"x and y must have the same shape; got {jnp.shape(x)} and {jnp.shape(y)}")
  spatial = tuple(range(-d - 1, -1))
  return jnp.mean(jnp.sum(x * y, axis=-1), axis=tuple(a + 1 for a in spatial))


def l2_norm(x: Float[ArrayLike, "... c"], *, ndim: int = 2) -> Float[Array, "..."]:
  r"""L² norm of the function an array represents, :math:`\sqrt{\langle f_x, f_x \rangle}`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from mrflax.wavelets import l2_norm
    >>> l2_norm(jnp.full((1, 8, 8, 1), 3.0), ndim=2)
    Array([3.], dtype=float32)
  """
  return jnp.sqrt(l2_inner(x, x, ndim=ndim))


def _cell_scale(x, ndim) -> float:
  d = _validate.check_ndim(ndim)
  _validate.check_array(x, ndim=d)
  spatial = jnp.shape(x)[-d - 1 : -1]
  return 1.0 / math.sqrt(math.prod(spatial))


def pixels_to_coefficients(x: Float[ArrayLike, "... c"], *, ndim: int = 2) -> Float[Array, "... c"]:
  r"""Pixel values to orthonormal scaling-function coefficients at the array's own level.

  For an array with :math:`N = \prod_a n_a` spatial cells (level :math:`j` when
  :math:`n_a = 2^j`), :math:`\langle f_x, \varphi_{j,p}\rangle = N^{-1/2}\, x[p]`
  (:math:`= 2^{-jd/2} x[p]`). In coefficient form the plain Euclidean inner product equals
  :func:`l2_inner`, and :func:`haar_analysis` of the coefficients gives the wavelet coefficients
  :math:`\langle f_x, \psi^\eta_{j-1,p}\rangle` of the function.

  Examples:
    >>> import jax.numpy as jnp
    >>> from mrflax.wavelets import pixels_to_coefficients
    >>> pixels_to_coefficients(jnp.ones((1, 4, 4, 1)), ndim=2)[0, 0, 0, 0]   # 2**(-2*2/2)
    Array(0.25, dtype=float32)
  """
  return jnp.asarray(x) * _cell_scale(x, ndim)


def coefficients_to_pixels(c: Float[ArrayLike, "... c"], *, ndim: int = 2) -> Float[Array, "... c"]:
  r"""Inverse of :func:`pixels_to_coefficients`: :math:`x[p] = N^{1/2} c[p]`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from mrflax.wavelets import coefficients_to_pixels
    >>> float(coefficients_to_pixels(jnp.full((1, 4, 4, 1), 0.25), ndim=2)[0, 0, 0, 0])
    1.0
  """
  return jnp.asarray(c) / _cell_scale(c, ndim)
