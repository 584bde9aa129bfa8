"""run_program: every execution mode computes the same function and leaves the same state.

The reference is a plain Python loop over fresh copies of the modules; each mode must match its
outputs and the non-Param state it leaves behind (batch statistics, RNG counts): a cell that
holds state must never be silently reset by a scan.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mrflax.nn.scan import run_program


class StatefulCell(nnx.Module):
  """Linear -> BatchNorm (running statistics) -> Dropout (an RNG stream with a counter)."""

  def __init__(self, seed: int):
    rngs = nnx.Rngs(params=seed, dropout=seed + 100)
    self.lin = nnx.Linear(3, 3, rngs=rngs)
    self.bn = nnx.BatchNorm(3, momentum=0.5, rngs=rngs)
    self.drop = nnx.Dropout(0.5, rngs=rngs)

  def __call__(self, x):
    return self.drop(self.bn(self.lin(x)))


class Own(nnx.Module):
  """A per-application part with its own running statistics."""

  def __init__(self, seed: int):
    self.bn = nnx.BatchNorm(3, momentum=0.5, rngs=nnx.Rngs(seed))

  def __call__(self, x):
    return self.bn(x)


def _step(mods, c, x):
  if isinstance(mods, tuple):
    cell, own = mods
    h = own(cell(c)) + x
  else:
    h = mods(c) + x
  return h, jnp.sum(h)


def _host(x):
  if isinstance(x, nnx.Variable):
    x = x.get_value()
  if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  return np.asarray(x)


def _state(modules):
  """Every non-Param variable of each module, as a flat ``{path: numpy array}``."""
  return [
    {path: _host(v) for path, v in nnx.to_flat_state(nnx.state(m, nnx.Not(nnx.Param)))}
    for m in modules
  ]


def _assert_same(got, want):
  assert got.keys() == want.keys()
  for path in want:
    np.testing.assert_allclose(got[path], want[path], rtol=1e-5, atol=1e-7, err_msg=str(path))


def _build(n_cells, per_step_n):
  cells = [StatefulCell(s) for s in range(n_cells)]
  own = None if per_step_n is None else [Own(10 + i) for i in range(per_step_n)]
  return cells, own


def _reference(cell_ids, n_cells, with_own, c0, xs):
  """A plain Python loop: the semantics every mode must reproduce."""
  cells, own = _build(n_cells, len(cell_ids) if with_own else None)
  c, ys = c0, []
  for i, k in enumerate(cell_ids):
    mods = cells[k] if own is None else (cells[k], own[i])
    c, y = _step(mods, c, xs[i])
    ys.append(y)
  return c, jnp.stack(ys), _state(cells), None if own is None else _state(own)


PROGRAMS = {
  "one shared cell": ([0, 0, 0], 1, False),
  "distinct cells": ([0, 1, 0, 1], 2, False),
  "shared cell + per-step parts": ([0, 0, 0], 1, True),
  "distinct cells + per-step parts": ([1, 0, 1], 2, True),
}
MODES = [
  ("unroll", "none"),
  ("unroll", "block"),
  ("unroll", "resolution"),
  ("scan", "none"),
  ("scan", "block"),
  ("scan", "resolution"),
  ("scan", "block"),  # the old execution mode "remat"
]


@pytest.mark.parametrize("mode,remat", MODES, ids=[f"{m}-{r}" for m, r in MODES])
@pytest.mark.parametrize("program", list(PROGRAMS))
def test_every_mode_carries_non_param_state(program, mode, remat):
  cell_ids, n_cells, with_own = PROGRAMS[program]
  n = len(cell_ids)
  c0 = jax.random.normal(jax.random.key(0), (4, 3))
  xs = jax.random.normal(jax.random.key(1), (n, 4, 3))
  ref_c, ref_ys, ref_cells, ref_own = _reference(cell_ids, n_cells, with_own, c0, xs)

  cells, own = _build(n_cells, n if with_own else None)
  before = _state(cells)
  c, ys = run_program(cells, cell_ids, _step, c0, xs, mode=mode, remat=remat, per_step=own)

  np.testing.assert_allclose(c, ref_c, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(ys, ref_ys, rtol=1e-5, atol=1e-5)
  for got, want, old in zip(_state(cells), ref_cells, before, strict=True):
    # the reference really changed the state (else this test proves nothing) ...
    assert not np.allclose(want[("bn", "mean")], old[("bn", "mean")])
    # ... and every mode leaves exactly that state
    _assert_same(got, want)
  if with_own:
    for got, want in zip(_state(own), ref_own, strict=True):
      _assert_same(got, want)


def test_dropout_rng_counts_advance_once_per_application():
  cells, _ = _build(1, None)
  c0, xs = jnp.ones((4, 3)), jnp.zeros((5, 4, 3))
  count0 = int(cells[0].drop.rngs.count.get_value())
  run_program(cells, [0] * 5, _step, c0, xs, mode="scan")
  assert int(cells[0].drop.rngs.count.get_value()) == count0 + 5


def test_state_carried_under_jit():
  """Inside a jitted function (the training path), the new state comes back out."""
  cells, _ = _build(2, None)
  graphdef, state = nnx.split(cells)
  c0 = jax.random.normal(jax.random.key(0), (4, 3))
  xs = jax.random.normal(jax.random.key(1), (3, 4, 3))

  @jax.jit
  def f(state, mode_is_scan):
    cs = nnx.merge(graphdef, state)
    out = run_program(cs, [0, 1, 1], _step, c0, xs, mode="scan" if mode_is_scan else "unroll")
    return out, nnx.state(cs)

  f = jax.jit(f.__wrapped__, static_argnums=1)
  (c_s, _), st_s = f(state, True)
  (c_u, _), st_u = f(state, False)
  np.testing.assert_allclose(c_s, c_u, rtol=1e-5, atol=1e-6)
  _assert_same(*[{p: _host(v) for p, v in nnx.to_flat_state(s)} for s in (st_s, st_u)])


def test_structure_mismatch_is_a_clear_error():
  cells = [StatefulCell(0), Own(1)]
  with pytest.raises(ValueError, match="cells 0 and 1 differ in structure"):
    run_program(
      cells, [0, 1], lambda m, c, x: (c, x), jnp.ones((4, 3)), jnp.zeros((2, 1)), mode="scan"
    )
