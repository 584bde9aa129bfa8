r"""Generative hierarchical models (GHMs): parameters, the RHM, sampling, parsing.

A GHM of depth :math:`L` and branching :math:`s` is a tree with :math:`s^\ell` nodes at level
:math:`\ell = 0..L`; the :math:`s^L` leaves are the data and the root is the class (THEORY §7.1):

.. math::
  P(x^{(0)}, \dots, x^{(L)}) = \pi(x^{(0)})
    \prod_{\ell=0}^{L-1} \prod_i T_\ell\big(x^{(\ell+1)}_{C(i)} \,\big|\, x^{(\ell)}_i\big).

Each :math:`T_\ell` is a :math:`v_\ell \times v^s` table whose rows are distributions over the
ordered child tuple :math:`b = (b_0, \dots, b_{s-1})`, indexed lexicographically
(:math:`b_0` most significant: tuple index :math:`\sum_k b_k v^{s-1-k}`). The level-0 table has
:math:`v_0 = n_c` rows (one per class), the others :math:`v`.

Layouts. In 1-D (``ndim=1``) node :math:`i` of level :math:`\ell` has children
:math:`s i, \dots, s i + s - 1` and the leaves are a sequence of length :math:`s^L`. On grids
(``ndim = d >= 2``, :math:`s = 2^d`, the quad-tree for :math:`d = 2`) the leaves are an image of
side :math:`2^L`, node :math:`p` has children :math:`2p + o`, :math:`o \in \{0, 1\}^d`, and the
child index is the binary value of :math:`o` with the first spatial axis most significant (the
Haar band order of THEORY §2.4). Internally every grid is flattened in that recursive (Morton)
order, in which each family is contiguous, so one 1-D code path serves every ``ndim``.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------


def _as_int(value, name: str, minimum: int) -> int:
  try:
    out = operator.index(value)
  except TypeError:
    raise ValueError(f"{name} must be an integer, got {value!r}") from None
  if out < minimum:
    raise ValueError(f"{name} must be >= {minimum}, got {name}={out}")
  return out


def _tuple_vocab(n_tuples: int, s: int) -> int:
  """The vocabulary ``v`` with ``v**s == n_tuples``, or a ValueError."""
  v = round(n_tuples ** (1.0 / s))
  for cand in (v - 1, v, v + 1):
    if cand >= 1 and cand**s == n_tuples:
      return cand
  raise ValueError(
    f"kernels must have v**s columns (one per ordered child tuple); got {n_tuples} columns, "
    f"which is not a power s={s} of an integer"
  )


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
    >>> ghm.L, ghm.v, ghm.n_classes, ghm.leaf_shape
    (2, 2, 2, (4,))
  """

  def __init__(self, root, kernels, s: int, *, ndim: int = 1):
    s = _as_int(s, "s", 2)
    ndim = _as_int(ndim, "ndim", 1)
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
    v = _tuple_vocab(tables[0].shape[1], s)
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
    self._check_normalised()

  def _check_normalised(self) -> None:
    try:
      r = np.asarray(self.root, np.float64)
      tables = [np.asarray(t, np.float64) for t in self.kernels]
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
      return  # built under a transform: values are checked when concrete
    if not np.all(np.isfinite(r)) or np.any(r < 0) or abs(r.sum() - 1.0) > 1e-5:
      raise ValueError(f"root must be a probability vector (>= 0, sums to 1); got sum {r.sum()}")
    for i, t in enumerate(tables):
      if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError(f"kernels[{i}] has negative or non-finite entries")
      sums = t.sum(axis=1)
      bad = np.flatnonzero(np.abs(sums - 1.0) > 1e-5)
      if bad.size:
        raise ValueError(
          f"kernels[{i}] rows must sum to 1 (distributions over child tuples); row {bad[0]} "
          f"sums to {sums[bad[0]]:.6g}"
        )

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
  def L(self) -> int:
    """Depth: number of levels below the root."""
    return len(self.kernels)

  @property
  def n_classes(self) -> int:
    """Number of root symbols :math:`n_c = v_0`."""
    return self.root.shape[0]

  @property
  def v(self) -> int:
    """Vocabulary size of levels 1..L."""
    return _tuple_vocab(self.kernels[0].shape[1], self.s)

  @property
  def n_leaf(self) -> int:
    """Number of leaves :math:`s^L`."""
    return self.s**self.L

  def vocab(self, level: int) -> int:
    """Vocabulary size :math:`v_\\ell` of ``level`` (``n_c`` at the root)."""
    return self.n_classes if level == 0 else self.v

  def level_shape(self, level: int) -> tuple[int, ...]:
    """Spatial shape of ``level``: ``(s**level,)`` in 1-D, ``(2**level,) * ndim`` on grids."""
    if self.ndim == 1:
      return (self.s**level,)
    return (2**level,) * self.ndim

  @property
  def leaf_shape(self) -> tuple[int, ...]:
    """Spatial shape of the leaves."""
    return self.level_shape(self.L)

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
      f"GHM(L={self.L}, s={self.s}, v={self.v}, n_classes={self.n_classes}, ndim={self.ndim}, "
      f"dtype={self.root.dtype})"
    )


# ---------------------------------------------------------------------------------------------
# Constructors
# ---------------------------------------------------------------------------------------------


def random_hierarchy_model(
  key: Array, *, v: int, n_classes: int, m: int, s: int, L: int, ndim: int = 1, dtype=None
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
    n_classes: number of classes :math:`n_c` (root symbols).
    m: rules (synonymous child tuples) per symbol.
    s: branching factor.
    L: depth.
    ndim: leaf layout (1: sequence; ``s = 2**ndim`` on grids).
    dtype: float dtype of the tables (default: JAX's default float).

  Returns:
    A :class:`GHM` with ``n_c * m**((s**L - 1) / (s - 1))`` equiprobable clean sequences.

  Raises:
    ValueError: if a level needs more rules than there are tuples (:math:`v_\ell m > v^s`).

  Examples:
    >>> ghm = random_hierarchy_model(jax.random.key(0), v=4, n_classes=2, m=2, s=2, L=3)
    >>> [int((t > 0).sum()) for t in ghm.kernels]    # v_l * m rules per level
    [4, 8, 8]
  """
  v = _as_int(v, "v", 1)
  n_classes = _as_int(n_classes, "n_classes", 1)
  m = _as_int(m, "m", 1)
  s = _as_int(s, "s", 2)
  L = _as_int(L, "L", 1)
  n_tuples = v**s
  for level, rows in enumerate([n_classes] + [v] * (L - 1)):
    if rows * m > n_tuples:
      raise ValueError(
        f"RHM level {level} needs v_{level} * m = {rows} * {m} = {rows * m} distinct rules but "
        f"only v**s = {v}**{s} = {n_tuples} child tuples exist; lower m or n_classes, or raise v"
      )
  dtype = jnp.zeros(()).dtype if dtype is None else dtype
  tables = []
  for level, k in enumerate(jax.random.split(key, L)):
    rows = n_classes if level == 0 else v
    chosen = jax.random.permutation(k, n_tuples)[: rows * m].reshape(rows, m)
    table = jnp.zeros((rows, n_tuples), dtype)
    table = table.at[jnp.arange(rows)[:, None], chosen].set(1.0 / m)
    tables.append(table)
  root = jnp.full((n_classes,), 1.0 / n_classes, dtype)
  return GHM(root, tables, s, ndim=ndim)


def dirichlet_ghm(
  key: Array,
  *,
  v: int,
  n_classes: int,
  s: int,
  L: int,
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
    n_classes: root vocabulary.
    s: branching factor.
    L: depth.
    concentration: Dirichlet concentration :math:`c > 0`.
    ndim: leaf layout.
    dtype: float dtype.

  Returns:
    A :class:`GHM`.

  Examples:
    >>> ghm = dirichlet_ghm(jax.random.key(0), v=3, n_classes=2, s=2, L=2)
    >>> [t.shape for t in ghm.kernels]
    [(2, 9), (3, 9)]
  """
  if not concentration > 0:
    raise ValueError(f"concentration must be > 0, got {concentration}")
  dtype = jnp.zeros(()).dtype if dtype is None else dtype
  k_root, *ks = jax.random.split(key, L + 1)

  def draw(k, shape):
    if concentration == 1.0:  # normalised exponentials: cheap, no gamma sampler to compile
      e = jax.random.exponential(k, shape, dtype)
      return e / e.sum(-1, keepdims=True)
    return jax.random.dirichlet(k, jnp.full(shape[-1:], concentration, dtype), shape[:-1])

  root = draw(k_root, (n_classes,))
  tables = [draw(k, (n_classes if i == 0 else v, v**s)) for i, k in enumerate(ks)]
  return GHM(root, tables, s, ndim=ndim)


# ---------------------------------------------------------------------------------------------
# Layout: grids <-> tree (Morton) order
# ---------------------------------------------------------------------------------------------


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
      f"{name} has spatial shape {tuple(got)} but the model (L={ghm.L}, s={ghm.s}, "
      f"ndim={ghm.ndim}) has {ghm.n_leaf} leaves laid out as {spatial}"
    )
  return x.ndim - event_dims - n_sp


# ---------------------------------------------------------------------------------------------
# Tuples
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Ancestral sampling
# ---------------------------------------------------------------------------------------------


def _expand(parents_seq: Array, log_table: Array, key: Array, s: int, v: int) -> Array:
  """Draws every node's child tuple from ``log_table[parent]``; returns children in tree order."""
  logits = jnp.take(log_table, parents_seq, axis=0)  # [..., n, v**s]
  idx = jax.random.categorical(key, logits, axis=-1)
  children = tuple_digits(idx, v=v, s=s)  # [..., n, s]
  return children.reshape((*children.shape[:-2], -1))


def sample_levels(key: Array, ghm: GHM, n: int) -> tuple[Int[Array, "n ..."], ...]:
  r"""Exact ancestral samples of every level.

  The root from :math:`\pi`, then every node's ordered child tuple from
  :math:`T_\ell(\cdot \mid \text{parent})`.

  Args:
    key: PRNG key.
    ghm: the model.
    n: number of independent trees.

  Returns:
    ``L + 1`` integer arrays, root first: ``levels[0]`` has shape ``[n]``, ``levels[l]`` shape
    ``[n, *ghm.level_shape(l)]``.

  Examples:
    >>> ghm = random_hierarchy_model(jax.random.key(0), v=4, n_classes=2, m=2, s=2, L=3)
    >>> [x.shape for x in sample_levels(jax.random.key(1), ghm, 5)]
    [(5,), (5, 2), (5, 4), (5, 8)]
  """
  return _sample_levels(key, ghm, _as_int(n, "n", 0))


@functools.partial(jax.jit, static_argnums=2)
def _sample_levels(key: Array, ghm: GHM, n: int) -> tuple[Array, ...]:
  k_root, *ks = jax.random.split(key, ghm.L + 1)
  root = jax.random.categorical(k_root, ghm.log_root, shape=(n,))
  seqs = [root[:, None]]
  for table, k in zip(ghm.log_kernels, ks, strict=True):
    seqs.append(_expand(seqs[-1], table, k, ghm.s, ghm.v))
  out = [root]
  for level in range(1, ghm.L + 1):
    out.append(from_tree_order(seqs[level], level=level, ndim=ghm.ndim))
  return tuple(out)


def sample(key: Array, ghm: GHM, n: int) -> Int[Array, "n ..."]:
  r"""Exact samples of the leaves, shape ``[n, *ghm.leaf_shape]``.

  See :func:`sample_levels` (this returns its last element).

  Examples:
    >>> ghm = random_hierarchy_model(jax.random.key(0), v=4, n_classes=2, m=2, s=4, L=2, ndim=2)
    >>> sample(jax.random.key(1), ghm, 3).shape
    (3, 4, 4)
  """
  return sample_levels(key, ghm, n)[-1]


# ---------------------------------------------------------------------------------------------
# Parsing (validity of generated sequences)
# ---------------------------------------------------------------------------------------------


class Parse(NamedTuple):
  """Result of :func:`parse`.

  Attributes:
    valid: ``[n, L]`` booleans; column ``k - 1`` says whether the first ``k`` parse steps (levels
      ``L, L-1, ..., L-k+1``) succeeded: every child tuple is the right-hand side of some rule.
    root: ``[n]`` the parsed root symbol (meaningful where ``valid[:, -1]``).
  """

  valid: Bool[Array, "n L"]
  root: Int[Array, " n"]


def parse(ghm: GHM, leaves: Int[Array, "n ..."]) -> Parse:
  r"""Bottom-up parse: maps each child tuple to its most likely parent and records validity.

  Level :math:`\ell` is parsed by :math:`a = \arg\max_a T_\ell(b \mid a)`; the step succeeds when
  :math:`\max_a T_\ell(b \mid a) > 0`. For unambiguous grammars (the RHM) the parent is unique,
  so this recovers the tree of a clean sequence. Validity is cumulative (THEORY §7.5).

  Examples:
    >>> ghm = random_hierarchy_model(jax.random.key(0), v=4, n_classes=2, m=2, s=2, L=3)
    >>> levels = sample_levels(jax.random.key(1), ghm, 4)
    >>> p = parse(ghm, levels[-1])
    >>> bool(p.valid.all()), bool((p.root == levels[0]).all())
    (True, True)
  """
  batch = check_leaves(ghm, leaves, event_dims=0)
  if batch != 1:
    raise ValueError(f"leaves must have one batch axis, got shape {leaves.shape}")
  x = to_tree_order(leaves, level=ghm.L, ndim=ghm.ndim)
  ok = jnp.ones(x.shape[:1], bool)
  valid = []
  for level in range(ghm.L - 1, -1, -1):
    table = ghm.kernels[level]
    fam = x.reshape(x.shape[0], -1, ghm.s)
    idx = tuple_index(fam, v=ghm.v)  # [n, n_level]
    col = jnp.take(table.T, idx, axis=0)  # [n, n_level, v_l]
    ok = ok & jnp.all(jnp.max(col, axis=-1) > 0, axis=-1)
    valid.append(ok)
    x = jnp.argmax(col, axis=-1)
  return Parse(valid=jnp.stack(valid, axis=1), root=x[:, 0])


def n_clean_sequences(*, n_classes: int, m: int, s: int, L: int) -> int:
  r"""Support size of an RHM, :math:`n_c\, m^{(s^L - 1)/(s - 1)}`.

  Examples:
    >>> n_clean_sequences(n_classes=8, m=2, s=2, L=4)
    262144
  """
  return n_classes * m ** ((s**L - 1) // (s - 1))


def rhm_log_likelihood(*, n_classes: int, m: int, s: int, L: int) -> float:
  r"""Log-probability of every clean RHM sequence, :math:`-\log n_c - \frac{s^L-1}{s-1}\log m`.

  Examples:
    >>> round(rhm_log_likelihood(n_classes=8, m=2, s=2, L=4), 4)
    -12.4766
  """
  return -math.log(n_classes) - (s**L - 1) // (s - 1) * math.log(m)
