"""Repeated application of (possibly shared) cells: unrolled or ``lax.scan``, with remat policies.

The single place where HVAE / U-Net stacks choose their execution mode (ENGINEERING.md §5):

* ``"unroll"``: a Python loop calling the cells directly (the reference path);
* ``"scan"``: ``jax.lax.scan`` over applications (``unroll=k`` passed through); the Params of the
  distinct cells are closed over (one cell) or stacked on a leading axis and indexed per step.

Independently, ``remat`` chooses a rematerialisation policy (issue 7, memory): ``"none"``,
``"block"`` (every application under ``jax.checkpoint``: only the states between applications
are kept for the backward pass) or ``"resolution"`` (the whole program under ``jax.checkpoint``:
only its input is kept, the applications are recomputed in the backward pass).

All modes compute the same function with the same parameters (tested to float32 round-off), and
gradients flow back to each distinct cell's own Params (weight sharing = gradient accumulation).
Non-Param state (batch statistics, RNG counts, any other ``nnx.Variable``) is carried through
every mode exactly as the unrolled loop updates it: a shared cell's state passes from one of its
applications to the next, a per-step module's state is its own, and the final values are written
back into the modules, so ``cells`` and ``per_step`` hold the same state afterwards whichever mode
ran (tested for each mode with ``nnx.BatchNorm`` and ``nnx.Dropout`` cells).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

EXEC_MODES = ("unroll", "scan")
REMAT_POLICIES = ("none", "block", "resolution")


def check_mode(mode: str) -> str:
  """Validates an execution mode name.

  Args:
    mode: one of ``"unroll"``, ``"scan"``.

  Returns:
    ``mode``.

  Examples:
    >>> check_mode("scan")
    'scan'
  """
  if mode not in EXEC_MODES:
    hint = " (the old 'remat' mode is 'scan' with remat='block')" if mode == "remat" else ""
    raise ValueError(f"execution mode must be one of {EXEC_MODES}, got {mode!r}{hint}")
  return mode


def _stack(trees):
  return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *trees)


def _index(tree, i):
  return jax.tree_util.tree_map(lambda a: a[i], tree)


def _split_like(modules, what: str):
  """``(graphdef, [params], [rest])`` of modules that must share one structure to be scanned."""
  graphdef, params, rest = nnx.split(modules[0], nnx.Param, ...)
  ps, rs = [params], [rest]
  for i, m in enumerate(modules[1:], start=1):
    g, p, r = nnx.split(m, nnx.Param, ...)
    if g != graphdef:
      raise ValueError(f"{what} 0 and {i} differ in structure; cannot scan them")
    ps.append(p)
    rs.append(r)
  return graphdef, ps, rs


def run_program(
  cells: Sequence[nnx.Module],
  cell_ids: Sequence[int],
  step: Callable[[nnx.Module, Any, Any], tuple[Any, Any]],
  carry: Any,
  xs: Any,
  *,
  mode: str = "unroll",
  unroll: int = 1,
  per_step: Sequence[nnx.Module] | None = None,
  remat: str = "none",
) -> tuple[Any, Any]:
  r"""Applies ``cells[cell_ids[i]]`` for ``i = 0..n-1`` as ``carry, y_i = step(cell, carry, x_i)``.

  Equivalent to ``lax.scan`` semantics: ``xs`` is a pytree whose leaves have a leading axis of
  length ``n = len(cell_ids)``; the per-step outputs ``y_i`` are stacked on a leading axis.

  .. math::
    c_{i+1}, y_i = \text{step}(\text{cell}_{\text{id}(i)}, c_i, x_i)

  Non-Param state that ``step`` changes in a cell (batch statistics, RNG counts) is carried from
  each application to the next one of the same cell and written back into ``cells`` (and
  ``per_step``) at the end, in every mode: all modes leave the modules in the same state.

  Args:
    cells: the distinct cells (same structure and shapes if ``mode`` is not ``"unroll"``).
    cell_ids: which cell each application uses (repeats = weight sharing).
    step: ``step(cell, carry, x_i) -> (carry, y_i)``; must be traceable.
    carry: initial carry.
    xs: per-step inputs (pytree, leading axis ``n``), or ``None``.
    mode: ``"unroll"`` or ``"scan"``.
    unroll: ``lax.scan``'s ``unroll`` (scan modes only).
    per_step: optional modules, one per application (unshared parts of a partly shared cell;
      same structure for scan modes). ``step`` then receives the pair
      ``(cells[cell_ids[i]], per_step[i])`` as its first argument.
    remat: rematerialisation policy, one of :data:`REMAT_POLICIES`.

  Returns:
    ``(carry, ys)``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> cells = [nnx.Linear(2, 2, rngs=nnx.Rngs(i)) for i in range(2)]
    >>> step = lambda cell, c, x: (cell(c) + x, jnp.sum(c))
    >>> c0, xs = jnp.ones((1, 2)), jnp.zeros((3, 1, 2))
    >>> a, ya = run_program(cells, [0, 0, 1], step, c0, xs, mode="unroll")
    >>> b, yb = run_program(cells, [0, 0, 1], step, c0, xs, mode="scan")
    >>> bool(jnp.allclose(a, b, atol=1e-6)), ya.shape
    (True, (3,))
  """
  check_mode(mode)
  if remat not in REMAT_POLICIES:
    raise ValueError(f"remat must be one of {REMAT_POLICIES}, got {remat!r}")
  n = len(cell_ids)
  if n == 0:
    raise ValueError("run_program needs at least one application")
  if any(not 0 <= c < len(cells) for c in cell_ids):
    raise ValueError(f"cell_ids {tuple(cell_ids)} out of range for {len(cells)} cells")
  if per_step is not None and len(per_step) != n:
    raise ValueError(f"per_step needs one module per application ({n}), got {len(per_step)}")
  if remat == "resolution":
    return _remat_whole(cells, cell_ids, step, carry, xs, mode, unroll, per_step)
  if mode == "unroll" or n == 1:
    ys = []
    for i, c in enumerate(cell_ids):
      x_i = _index(xs, i)
      cell = cells[c] if per_step is None else (cells[c], per_step[i])
      if remat == "block":
        carry, y = _checkpointed(step, cell, carry, x_i)
      else:
        carry, y = step(cell, carry, x_i)
      ys.append(y)
    return carry, _stack(ys)
  return _scan(cells, cell_ids, step, carry, xs, unroll, per_step, remat == "block")


def _scan(cells, cell_ids, step, carry, xs, unroll, per_step, checkpoint):
  """The ``lax.scan`` path of :func:`run_program`."""
  n = len(cell_ids)
  distinct = sorted(set(cell_ids))
  graphdef, plist, rlist = _split_like([cells[c] for c in distinct], "cells")
  one = len(distinct) == 1
  # Params are read-only in the loop: closed over (one cell) or stacked and indexed per step.
  # The cells' other state is carried: it changes from one application to the next.
  stacked = None if one else _stack(plist)
  rest0 = rlist[0] if one else _stack(rlist)
  local = jnp.asarray([distinct.index(c) for c in cell_ids], jnp.int32)
  if per_step is None:
    own_graphdef, own, own_rest = None, None, None
  else:
    own_graphdef, olist, orlist = _split_like(per_step, "per_step modules")
    own, own_rest = _stack(olist), _stack(orlist)

  def body(c, inp):
    user_carry, rest = c
    idx, own_i, own_rest_i, x_i = inp
    params = plist[0] if one else _index(stacked, idx)
    cell_rest = rest if one else _index(rest, idx)
    cell = nnx.merge(graphdef, params, cell_rest, copy=True)
    mods = cell
    if own_graphdef is not None:
      mods = (cell, nnx.merge(own_graphdef, own_i, own_rest_i, copy=True))
    user_carry, y = step(mods, user_carry, x_i)
    new_rest = nnx.state(cell, nnx.Not(nnx.Param))
    if not one:
      new_rest = jax.tree_util.tree_map(lambda s, r: s.at[idx].set(r), rest, new_rest)
    new_own_rest = None if own_graphdef is None else nnx.state(mods[1], nnx.Not(nnx.Param))
    return (user_carry, new_rest), (y, new_own_rest)

  if checkpoint:
    body = jax.checkpoint(body)
  (carry, rest), (ys, own_rests) = jax.lax.scan(
    body, (carry, rest0), (local, own, own_rest, xs), length=n, unroll=unroll
  )
  for j, c in enumerate(distinct):
    nnx.update(cells[c], rest if one else _index(rest, j))
  if per_step is not None:
    for i, m in enumerate(per_step):
      nnx.update(m, _index(own_rests, i))
  return carry, ys


def _checkpointed(step, cell, carry, x):
  """``step(cell, carry, x)`` under ``jax.checkpoint``; the cell's new non-Param state is written
  back (writing the Params back would mutate them from inside a ``jit`` that closes over the
  model: flax's TraceContextError)."""
  graphdef, state = nnx.split(cell)

  @jax.checkpoint
  def f(state, carry, x):
    m = nnx.merge(graphdef, state, copy=True)
    carry, y = step(m, carry, x)
    return carry, y, nnx.state(m, nnx.Not(nnx.Param))  # Params are read-only: not written back

  carry, y, new_state = f(state, carry, x)
  nnx.update(cell, new_state)
  return carry, y


def _remat_whole(cells, cell_ids, step, carry, xs, mode, unroll, per_step):
  """The whole program under one ``jax.checkpoint`` (remat policy ``"resolution"``)."""
  modules = (list(cells), None if per_step is None else list(per_step))
  graphdef, state = nnx.split(modules)

  @jax.checkpoint
  def f(state, carry, xs):
    cs, ps = nnx.merge(graphdef, state, copy=True)
    out = run_program(cs, cell_ids, step, carry, xs, mode=mode, unroll=unroll, per_step=ps)
    return out, nnx.state((cs, ps), nnx.Not(nnx.Param))

  out, new_state = f(state, carry, xs)
  nnx.update(modules, new_state)
  return out
