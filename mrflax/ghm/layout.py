r"""Leaf layouts and the child-tuple codec of a :class:`~mrflax.ghm.GHM`.

Grids (``ndim >= 2``) are flattened in recursive (Morton) tree order, in which the :math:`2^d`
children of every node are contiguous and ordered by the binary value of their offset (first
spatial axis most significant, the Haar band order of THEORY §2.4), so one 1-D code path serves
every ``ndim``. Ordered child tuples :math:`b = (b_0, \dots, b_{s-1})` are indexed
lexicographically, :math:`b_0` most significant.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Int

from mrflax.ghm.model import GHM


@functools.lru_cache(maxsize=64)
def _morton_index(level: int, ndim: int) -> np.ndarray:
  """For each row-major grid position of side 2**level, its position in tree (Morton) order."""
  coords = np.indices((2**level,) * ndim).reshape(ndim, -1)
  idx = np.zeros(coords.shape[1], np.int64)
  for bit in range(level - 1, -1, -1):  # coarsest bit first
    for axis in range(ndim):  # first spatial axis most significant within a level
      idx = idx * 2 + ((coords[axis] >> bit) & 1)
  return idx.astype(np.int32)


def to_tree_order(
  x: Array | np.ndarray, *, level: int, ndim: int, event_dims: int = 0
) -> Array | np.ndarray:
  """Flattens a grid ``[..., 2**level (ndim times), *event]`` into tree order ``[..., n, *event]``.

  In tree order the :math:`2^d` children of every node are contiguous and ordered by the binary
  value of their offset (first axis most significant). Identity for ``ndim=1`` (a NumPy input is
  then returned as it is; otherwise the result is a JAX array).

  Examples:
    >>> x = jnp.arange(16).reshape(4, 4)
    >>> to_tree_order(x, level=2, ndim=2)[:8].tolist()
    [0, 1, 4, 5, 2, 3, 6, 7]
  """
  if ndim == 1:
    return x
  lead = x.ndim - ndim - event_dims
  flat = x.reshape((*x.shape[:lead], -1, *x.shape[x.ndim - event_dims :]))
  perm = np.argsort(_morton_index(level, ndim)).astype(np.int32)
  return jnp.take(flat, perm, axis=lead)


def from_tree_order(
  x: Array | np.ndarray, *, level: int, ndim: int, event_dims: int = 0
) -> Array | np.ndarray:
  """Inverse of :func:`to_tree_order`: ``[..., n, *event]`` back to the grid layout.

  Examples:
    >>> x = jnp.arange(16).reshape(4, 4)
    >>> bool((from_tree_order(to_tree_order(x, level=2, ndim=2), level=2, ndim=2) == x).all())
    True
  """
  if ndim == 1:
    return x
  lead = x.ndim - 1 - event_dims
  out = jnp.take(x, _morton_index(level, ndim), axis=lead)
  return out.reshape(x.shape[:lead] + (2**level,) * ndim + x.shape[lead + 1 :])


def check_leaves(ghm: GHM, x: Array, *, event_dims: int, name: str = "leaves") -> int:
  """Checks the spatial shape of ``x`` against the model; returns the number of batch axes."""
  spatial = ghm.leaf_shape
  n_sp = len(spatial)
  if x.ndim < n_sp + event_dims:
    raise ValueError(f"{name} has shape {x.shape}; expected (..., {spatial}) + event axes")
  got = x.shape[x.ndim - event_dims - n_sp : x.ndim - event_dims]
  if tuple(got) != spatial:
    raise ValueError(
      f"{name} has spatial shape {tuple(got)} but the model (L={ghm.num_levels}, s={ghm.s}, "
      f"ndim={ghm.ndim}) has {ghm.num_leaves} leaves laid out as {spatial}"
    )
  return x.ndim - event_dims - n_sp


def tuple_digits(index: Int[Array, "..."], *, v: int, s: int) -> Int[Array, "... s"]:
  r"""Child symbols :math:`(b_0, \dots, b_{s-1})` of a lexicographic tuple index.

  :math:`\mathrm{index} = \sum_k b_k v^{s-1-k}` (:math:`b_0` most significant).

  Examples:
    >>> tuple_digits(jnp.array(5), v=2, s=3).tolist()
    [1, 0, 1]
  """
  index = jnp.asarray(index)
  powers = (v ** jnp.arange(s - 1, -1, -1)).reshape((1,) * index.ndim + (s,))
  return (index[..., None] // powers) % v


def tuple_index(digits: Int[Array, "... s"], *, v: int) -> Int[Array, "..."]:
  r"""Lexicographic index :math:`\sum_k b_k v^{s-1-k}` of child tuples (inverse of
  :func:`tuple_digits`).

  Examples:
    >>> int(tuple_index(jnp.array([1, 0, 1]), v=2))
    5
  """
  s = digits.shape[-1]
  powers = (v ** jnp.arange(s - 1, -1, -1)).reshape((1,) * (digits.ndim - 1) + (s,))
  return jnp.sum(digits * powers, axis=-1)
