r"""Exact ancestral sampling of a GHM, bottom-up parsing and the RHM closed forms (THEORY §7.1).

Parsing decides the validity of generated sequences (THEORY §7.5).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Int

from mrflax.ghm._checks import as_int
from mrflax.ghm.layout import (
  check_leaves,
  from_tree_order,
  to_tree_order,
  tuple_digits,
  tuple_index,
)
from mrflax.ghm.model import GHM


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
    >>> from mrflax.ghm import random_hierarchy_model
    >>> ghm = random_hierarchy_model(jax.random.key(0), v=4, num_classes=2, m=2, s=2, num_levels=3)
    >>> [x.shape for x in sample_levels(jax.random.key(1), ghm, 5)]
    [(5,), (5, 2), (5, 4), (5, 8)]
  """
  return _sample_levels(key, ghm, as_int(n, "n", 0))


@functools.partial(jax.jit, static_argnums=2)
def _sample_levels(key: Array, ghm: GHM, n: int) -> tuple[Array, ...]:
  k_root, *ks = jax.random.split(key, ghm.num_levels + 1)
  root = jax.random.categorical(k_root, ghm.log_root, shape=(n,))
  seqs = [root[:, None]]
  for table, k in zip(ghm.log_kernels, ks, strict=True):
    seqs.append(_expand(seqs[-1], table, k, ghm.s, ghm.v))
  out = [root]
  for level in range(1, ghm.num_levels + 1):
    out.append(from_tree_order(seqs[level], level=level, ndim=ghm.ndim))
  return tuple(out)


def sample(key: Array, ghm: GHM, n: int) -> Int[Array, "n ..."]:
  r"""Exact samples of the leaves, shape ``[n, *ghm.leaf_shape]``.

  See :func:`sample_levels` (this returns its last element).

  Examples:
    >>> from mrflax.ghm import random_hierarchy_model
    >>> ghm = random_hierarchy_model(jax.random.key(0), v=4, num_classes=2, m=2,
    ...     s=4, num_levels=2, ndim=2)
    >>> sample(jax.random.key(1), ghm, 3).shape
    (3, 4, 4)
  """
  return sample_levels(key, ghm, n)[-1]


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
    >>> from mrflax.ghm import random_hierarchy_model
    >>> ghm = random_hierarchy_model(jax.random.key(0), v=4, num_classes=2, m=2, s=2, num_levels=3)
    >>> levels = sample_levels(jax.random.key(1), ghm, 4)
    >>> p = parse(ghm, levels[-1])
    >>> bool(p.valid.all()), bool((p.root == levels[0]).all())
    (True, True)
  """
  batch = check_leaves(ghm, leaves, event_dims=0)
  if batch != 1:
    raise ValueError(f"leaves must have one batch axis, got shape {leaves.shape}")
  x = to_tree_order(leaves, level=ghm.num_levels, ndim=ghm.ndim)
  ok = jnp.ones(x.shape[:1], bool)
  valid = []
  for level in range(ghm.num_levels - 1, -1, -1):
    table = ghm.kernels[level]
    fam = x.reshape(x.shape[0], -1, ghm.s)
    idx = tuple_index(fam, v=ghm.v)  # [n, n_level]
    col = jnp.take(table.T, idx, axis=0)  # [n, n_level, v_l]
    ok = ok & jnp.all(jnp.max(col, axis=-1) > 0, axis=-1)
    valid.append(ok)
    x = jnp.argmax(col, axis=-1)
  return Parse(valid=jnp.stack(valid, axis=1), root=x[:, 0])


def num_clean_sequences(*, num_classes: int, m: int, s: int, num_levels: int) -> int:
  r"""Support size of an RHM, :math:`n_c\, m^{(s^L - 1)/(s - 1)}`.

  Examples:
    >>> num_clean_sequences(num_classes=8, m=2, s=2, num_levels=4)
    262144
  """
  return num_classes * m ** ((s**num_levels - 1) // (s - 1))


def rhm_log_likelihood(*, num_classes: int, m: int, s: int, num_levels: int) -> float:
  r"""Log-probability of every clean RHM sequence, :math:`-\log n_c - \frac{s^L-1}{s-1}\log m`.

  Examples:
    >>> round(rhm_log_likelihood(num_classes=8, m=2, s=2, num_levels=4), 4)
    -12.4766
  """
  return -math.log(num_classes) - (s**num_levels - 1) // (s - 1) * math.log(m)
