"""Input validation shared by the GHM modules (private)."""

from __future__ import annotations

import operator

import jax
import numpy as np


def as_int(value, name: str, minimum: int) -> int:
  """``operator.index(value)``, or a ValueError naming ``name`` if not an integer ``>= minimum``."""
  try:
    out = operator.index(value)
  except TypeError:
    raise ValueError(f"{name} must be an integer, got {value!r}") from None
  if out < minimum:
    raise ValueError(f"{name} must be >= {minimum}, got {name}={out}")
  return out


def tuple_vocab(n_tuples: int, s: int) -> int:
  """The vocabulary ``v`` with ``v**s == n_tuples``, or a ValueError."""
  v = round(n_tuples ** (1.0 / s))
  for cand in (v - 1, v, v + 1):
    if cand >= 1 and cand**s == n_tuples:
      return cand
  raise ValueError(
    f"kernels must have v**s columns (one per ordered child tuple); got {n_tuples} columns, "
    f"which is not a power s={s} of an integer"
  )


def check_distributions(root, tables) -> None:
  """Raises ValueError unless ``root`` and every row of every table is a distribution (concrete
  values only: under a transform the check is skipped)."""
  try:
    r = np.asarray(root, np.float64)
    tables = [np.asarray(t, np.float64) for t in tables]
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
