r"""Generative hierarchical models (GHMs): the model class and its constructors (RHM, Dirichlet).

A GHM of depth :math:`L` and branching :math:`s` is a tree with :math:`s^\ell` nodes at level
:math:`\ell = 0..L`; the :math:`s^L` leaves are the data and the root is the class (THEORY §7.1):

.. math::
  P(x^{(0)}, \dots, x^{(L)}) = \pi(x^{(0)})
    \prod_{\ell=0}^{L-1} \prod_i T_\ell\big(x^{(\ell+1)}_{C(i)} \,\big|\, x^{(\ell)}_i\big).

Each :math:`T_\ell` is a :math:`v_\ell \times v^s` table whose rows are distributions over the
ordered child tuple :math:`b = (b_0, \dots, b_{s-1})`, indexed lexicographically
(:math:`b_0` most significant: tuple index :math:`\sum_k b_k v^{s-1-k}`). The level-0 table has
:math:`v_0 = n_c` rows (one per class), the others :math:`v`.

Layouts: in 1-D (``ndim=1``) node :math:`i` of level :math:`\ell` has children
:math:`s i, \dots, s i + s - 1`; on grids (``ndim = d >= 2``, :math:`s = 2^d`) the leaves are an
image of side :math:`2^L` and node :math:`p` has children :math:`2p + o`, :math:`o \in \{0, 1\}^d`
(see :mod:`mrflax.ghm.layout`).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from mrflax.ghm._checks import as_int, check_distributions, tuple_vocab


@jax.tree_util.register_pytree_node_class
class GHM:
  r"""A generative hierarchical model: root prior, per-level kernels, branching, layout.

  ``GHM(root, kernels, s)`` with ``root`` of shape ``[n_c]`` and ``kernels`` either

  * an array of shape ``[L, v, v**s]`` (``kernels[l, a]`` is :math:`T_\ell(\cdot \mid a)`); the
    level-0 table is ``kernels[0, :n_c]`` and its remaining rows, if ``n_c < v``, are padding that
    is ignored (they must still be valid distributions or all zero); or
  * a sequence of ``L`` tables, ``kernels[0]`` of shape ``[n_c, v**s]`` and the others of shape
    ``[v, v**s]`` (the exact, unpadded representation, stored internally).

  The model is a pytree (arrays are leaves; ``s`` and ``ndim`` are static), so it passes through
  ``jit`` and ``vmap``. Concrete inputs are validated: non-negative entries, every row sums to 1
  (absolute tolerance ``1e-5``), consistent shapes.

  Args:
    root: root (class) distribution :math:`\pi`, shape ``[n_c]``.
    kernels: the transition tables, see above.
    s: branching factor (``2**ndim`` on grids).
    ndim: number of spatial axes of the leaves (1: sequences; 2: quad-tree images; 3: oct-trees).

  Examples:
    >>> import jax.numpy as jnp
    >>> root = jnp.array([0.5, 0.5])
    >>> T = jnp.full((2, 2, 4), 0.25)          # L=2, v=2, s=2: uniform over child pairs
    >>> ghm = GHM(root, T, 2)
    >>> ghm.num_levels, ghm.v, ghm.num_classes, ghm.leaf_shape
    (2, 2, 2, (4,))
  """

  def __init__(self, root, kernels, s: int, *, ndim: int = 1):
    s = as_int(s, "s", 2)
    ndim = as_int(ndim, "ndim", 1)
    if ndim > 1 and s != 2**ndim:
      raise ValueError(f"on a {ndim}-D grid the branching factor must be s = 2**ndim; got s={s}")
    root = jnp.asarray(root)
    if root.ndim != 1:
      raise ValueError(f"root must have shape [n_c], got {root.shape}")
    n_c = root.shape[0]
    if isinstance(kernels, Sequence) and not hasattr(kernels, "shape"):
      tables = tuple(jnp.asarray(t) for t in kernels)
      if not tables:
        raise ValueError("kernels must hold at least one level (L >= 1)")
    else:
      stacked = jnp.asarray(kernels)
      if stacked.ndim != 3:
        raise ValueError(f"stacked kernels must have shape [L, v, v**s], got {stacked.shape}")
      if stacked.shape[0] < 1:
        raise ValueError("kernels must hold at least one level (L >= 1)")
      if n_c > stacked.shape[1]:
        raise ValueError(
          f"stacked kernels of shape {stacked.shape} have v={stacked.shape[1]} rows at level 0 "
          f"but the root has n_c={n_c} classes; pass a sequence of per-level tables instead"
        )
      tables = (stacked[0, :n_c], *tuple(stacked[i] for i in range(1, stacked.shape[0])))
    for i, t in enumerate(tables):
      if t.ndim != 2:
        raise ValueError(f"kernels[{i}] must be a 2-D table [v_l, v**s], got shape {t.shape}")
    v = tuple_vocab(tables[0].shape[1], s)
    for i, t in enumerate(tables):
      rows = n_c if i == 0 else v
      if t.shape != (rows, v**s):
        raise ValueError(
          f"kernels[{i}] must have shape ({rows}, {v**s}) (v_{i} = {'n_c' if i == 0 else 'v'}"
          f" rows, v**s = {v}**{s} columns); got {t.shape}"
        )
    self.root = root
    self.kernels = tables
    self.s = s
    self.ndim = ndim
    check_distributions(root, tables)

  # pytree protocol: arrays are children, (s, ndim) static; unflatten skips validation.
  def tree_flatten(self):
    return (self.root, self.kernels), (self.s, self.ndim)

  @classmethod
  def tree_unflatten(cls, aux, children):
    obj = object.__new__(cls)
    obj.root, obj.kernels = children[0], tuple(children[1])
    obj.s, obj.ndim = aux
    return obj

  @property
  def num_levels(self) -> int:
    """Depth: number of levels below the root."""
    return len(self.kernels)

  @property
  def num_classes(self) -> int:
    """Number of root symbols :math:`n_c = v_0`."""
    return self.root.shape[0]

  @property
  def v(self) -> int:
    """Vocabulary size of levels 1..L."""
    return tuple_vocab(self.kernels[0].shape[1], self.s)

  @property
  def num_leaves(self) -> int:
    """Number of leaves :math:`s^L`."""
    return self.s**self.num_levels

  def vocab(self, level: int) -> int:
    """Vocabulary size :math:`v_\\ell` of ``level`` (``n_c`` at the root)."""
    return self.num_classes if level == 0 else self.v

  def level_shape(self, level: int) -> tuple[int, ...]:
    """Spatial shape of ``level``: ``(s**level,)`` in 1-D, ``(2**level,) * ndim`` on grids."""
    if self.ndim == 1:
      return (self.s**level,)
    return (2**level,) * self.ndim

  @property
  def leaf_shape(self) -> tuple[int, ...]:
    """Spatial shape of the leaves."""
    return self.level_shape(self.num_levels)

  @property
  def log_root(self) -> Float[Array, " n_c"]:
    """:math:`\\log \\pi` (``-inf`` on zeros)."""
    return jnp.log(self.root)

  @property
  def log_kernels(self) -> tuple[Float[Array, "v_l v_s"], ...]:
    """:math:`\\log T_\\ell` per level (``-inf`` on zeros)."""
    return tuple(jnp.log(t) for t in self.kernels)

  def __repr__(self) -> str:
    return (
      f"GHM(num_levels={self.num_levels}, s={self.s}, v={self.v}, num_classes={self.num_classes}, "
      f"ndim={self.ndim}, "
      f"dtype={self.root.dtype})"
    )


def random_hierarchy_model(
  key: Array,
  *,
  v: int,
  num_classes: int,
  m: int,
  s: int,
  num_levels: int,
  ndim: int = 1,
  dtype=None,
) -> GHM:
  r"""The random hierarchy model (RHM) of THEORY §7.1.

  For every level :math:`\ell` and symbol :math:`a \in [v_\ell]` a set :math:`S_\ell(a)` of
  :math:`m` distinct :math:`s`-tuples, the sets of one level disjoint and drawn together without
  replacement from :math:`[v]^s`;

  .. math::
    T_\ell(b \mid a) = \frac{1[b \in S_\ell(a)]}{m}, \qquad \pi = \mathrm{Uniform}[n_c].

  Args:
    key: PRNG key (one independent rule draw per level).
    v: vocabulary of levels 1..L.
    num_classes: number of classes :math:`n_c` (root symbols).
    m: rules (synonymous child tuples) per symbol.
    s: branching factor.
    num_levels: depth :math:`L` (levels below the root).
    ndim: leaf layout (1: sequence; ``s = 2**ndim`` on grids).
    dtype: float dtype of the tables (default: JAX's default float).

  Returns:
    A :class:`GHM` with ``n_c * m**((s**L - 1) / (s - 1))`` equiprobable clean sequences.

  Raises:
    ValueError: if a level needs more rules than there are tuples (:math:`v_\ell m > v^s`).

  Examples:
    >>> ghm = random_hierarchy_model(jax.random.key(0), v=4, num_classes=2, m=2, s=2, num_levels=3)
    >>> [int((t > 0).sum()) for t in ghm.kernels]    # v_l * m rules per level
    [4, 8, 8]
  """
  v = as_int(v, "v", 1)
  num_classes = as_int(num_classes, "num_classes", 1)
  m = as_int(m, "m", 1)
  s = as_int(s, "s", 2)
  num_levels = as_int(num_levels, "num_levels", 1)
  n_tuples = v**s
  for level, rows in enumerate([num_classes] + [v] * (num_levels - 1)):
    if rows * m > n_tuples:
      raise ValueError(
        f"RHM level {level} needs v_{level} * m = {rows} * {m} = {rows * m} distinct rules but "
        f"only v**s = {v}**{s} = {n_tuples} child tuples exist; lower m or num_classes, or raise v"
      )
  dtype = jnp.zeros(()).dtype if dtype is None else dtype
  tables = []
  for level, k in enumerate(jax.random.split(key, num_levels)):
    rows = num_classes if level == 0 else v
    chosen = jax.random.permutation(k, n_tuples)[: rows * m].reshape(rows, m)
    table = jnp.zeros((rows, n_tuples), dtype)
    table = table.at[jnp.arange(rows)[:, None], chosen].set(1.0 / m)
    tables.append(table)
  root = jnp.full((num_classes,), 1.0 / num_classes, dtype)
  return GHM(root, tables, s, ndim=ndim)


def dirichlet_ghm(
  key: Array,
  *,
  v: int,
  num_classes: int,
  s: int,
  num_levels: int,
  concentration: float = 1.0,
  ndim: int = 1,
  dtype=None,
) -> GHM:
  r"""A dense GHM with every row of :math:`T_\ell` and :math:`\pi` drawn from a Dirichlet.

  .. math::
    \pi \sim \mathrm{Dir}(c \mathbf 1_{n_c}), \qquad T_\ell(\cdot \mid a) \sim
    \mathrm{Dir}(c \mathbf 1_{v^s}).

  Dense GHMs mix fast, so they are weak benchmarks (THEORY §7.1) but good BP test cases: siblings
  are not conditionally independent and no entry is zero.

  Args:
    key: PRNG key.
    v: vocabulary of levels 1..L.
    num_classes: root vocabulary.
    s: branching factor.
    num_levels: depth :math:`L` (levels below the root).
    concentration: Dirichlet concentration :math:`c > 0`.
    ndim: leaf layout.
    dtype: float dtype.

  Returns:
    A :class:`GHM`.

  Examples:
    >>> ghm = dirichlet_ghm(jax.random.key(0), v=3, num_classes=2, s=2, num_levels=2)
    >>> [t.shape for t in ghm.kernels]
    [(2, 9), (3, 9)]
  """
  if not concentration > 0:
    raise ValueError(f"concentration must be > 0, got {concentration}")
  dtype = jnp.zeros(()).dtype if dtype is None else dtype
  k_root, *ks = jax.random.split(key, num_levels + 1)

  def draw(k, shape):
    if concentration == 1.0:  # normalised exponentials: cheap, no gamma sampler to compile
      e = jax.random.exponential(k, shape, dtype)
      return e / e.sum(-1, keepdims=True)
    return jax.random.dirichlet(k, jnp.full(shape[-1:], concentration, dtype), shape[:-1])

  root = draw(k_root, (num_classes,))
  tables = [draw(k, (num_classes if i == 0 else v, v**s)) for i, k in enumerate(ks)]
  return GHM(root, tables, s, ndim=ndim)
