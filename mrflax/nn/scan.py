"""Repeated application of (possibly shared) cells: unrolled, ``lax.scan``, scan+remat.

The single place where HVAE / U-Net stacks choose their execution mode (ENGINEERING.md §5):

* ``"unroll"``: a Python loop calling the cells directly (the reference path);
* ``"scan"``: ``jax.lax.scan`` over applications (``unroll=k`` passed through); the Params of the
  distinct cells are closed over (one cell) or stacked on a leading axis and indexed per step;
* ``"remat"``: as ``"scan"`` with the step body under ``jax.checkpoint``.

Independently, ``remat`` chooses a rematerialisation policy (issue 7, memory): ``"none"``,
``"block"`` (every application under ``jax.checkpoint``: only the states between applications
are kept for the backward pass) or ``"resolution"`` (the whole program under ``jax.checkpoint``:
only its input is kept, the applications are recomputed in the backward pass).

All modes compute the same function with the same parameters (tested to float32 round-off), and
gradients flow back to each distinct cell's own Params (weight sharing = gradient accumulation).
Non-Param state of the cells is read from the first distinct cell and not written back (the HVAE
cells hold none: randomness comes in through explicit per-step keys).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

EXEC_MODES = ("unroll", "scan", "remat")
REMAT_POLICIES = ("none", "block", "resolution")


def check_mode(mode: str) -> str:
  """Validates an execution mode name.

  Args:
    mode: one of ``"unroll"``, ``"scan"``, ``"remat"``.

  Returns:
    ``mode``.

  Examples:
    >>> check_mode("scan")
    'scan'
  """
  if mode not in EXEC_MODES:
    raise ValueError(f"execution mode must be one of {EXEC_MODES}, got {mode!r}")
  return mode


def _stack(trees):
  return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *trees)


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

  Args:
    cells: the distinct cells (same structure and shapes if ``mode`` is not ``"unroll"``).
    cell_ids: which cell each application uses (repeats = weight sharing).
    step: ``step(cell, carry, x_i) -> (carry, y_i)``; must be traceable.
    carry: initial carry.
    xs: per-step inputs (pytree, leading axis ``n``), or ``None``.
    mode: ``"unroll"``, ``"scan"`` or ``"remat"``.
    unroll: ``lax.scan``'s ``unroll`` (scan modes only).
    per_step: optional modules, one per application (unshared parts of a partly shared cell;
      same structure for scan modes). ``step`` then receives the pair
      ``(cells[cell_ids[i]], per_step[i])`` as its first argument.
    remat: rematerialisation policy, one of :data:`REMAT_POLICIES` (``mode="remat"`` implies
      ``"block"``).

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
  if mode == "remat":
    mode, remat = "scan", "resolution" if remat == "resolution" else "block"
  if remat == "resolution":
    return _remat_whole(cells, cell_ids, step, carry, xs, mode, unroll, per_step)
  n = len(cell_ids)
  if n == 0:
    raise ValueError("run_program needs at least one application")
  if any(not 0 <= c < len(cells) for c in cell_ids):
    raise ValueError(f"cell_ids {tuple(cell_ids)} out of range for {len(cells)} cells")
  if per_step is not None and len(per_step) != n:
    raise ValueError(f"per_step needs one module per application ({n}), got {len(per_step)}")
  if mode == "unroll" or n == 1:
    ys = []
    for i, c in enumerate(cell_ids):
      x_i = jax.tree_util.tree_map(lambda a, i=i: a[i], xs)
      cell = cells[c] if per_step is None else (cells[c], per_step[i])
      if remat == "block":
        carry, y = _checkpointed(step, cell, carry, x_i)
      else:
        carry, y = step(cell, carry, x_i)
      ys.append(y)
    return carry, _stack(ys)
  distinct = sorted(set(cell_ids))
  graphdef, params0, rest = nnx.split(cells[distinct[0]], nnx.Param, ...)
  if per_step is None:
    own = None
  else:
    own_graphdef, own0, own_rest = nnx.split(per_step[0], nnx.Param, ...)
    own_list = [own0]
    for m in per_step[1:]:
      g, p, _ = nnx.split(m, nnx.Param, ...)
      if g != own_graphdef:
        raise ValueError("per_step modules differ in structure; cannot scan them")
      own_list.append(p)
    own = _stack(own_list)
  if len(distinct) == 1:

    def get_params(idx):
      del idx
      return params0

    local = jnp.zeros((n,), jnp.int32)
  else:
    plist = [params0]
    for c in distinct[1:]:
      g, p, _ = nnx.split(cells[c], nnx.Param, ...)
      if g != graphdef:
        raise ValueError(f"cells {distinct[0]} and {c} differ in structure; cannot scan them")
      plist.append(p)
    stacked = _stack(plist)

    def get_params(idx):
      return jax.tree_util.tree_map(lambda a: a[idx], stacked)

    local = jnp.asarray([distinct.index(c) for c in cell_ids], jnp.int32)

  def body(carry, inp):
    idx, own_i, x_i = inp
    cell = nnx.merge(graphdef, get_params(idx), rest, copy=True)
    if own_i is not None:
      cell = (cell, nnx.merge(own_graphdef, own_i, own_rest, copy=True))
    return step(cell, carry, x_i)

  if remat == "block":
    body = jax.checkpoint(body)
  return jax.lax.scan(body, carry, (local, own, xs), length=n, unroll=unroll)


def _checkpointed(step, cell, carry, x):
  """``step(cell, carry, x)`` under ``jax.checkpoint``, the cell's state passed explicitly."""
  graphdef, state = nnx.split(cell)

  @jax.checkpoint
  def f(state, carry, x):
    return step(nnx.merge(graphdef, state, copy=True), carry, x)

  return f(state, carry, x)


def _remat_whole(cells, cell_ids, step, carry, xs, mode, unroll, per_step):
  """The whole program under one ``jax.checkpoint`` (remat policy ``"resolution"``)."""
  graphdef, state = nnx.split((list(cells), None if per_step is None else list(per_step)))

  @jax.checkpoint
  def f(state, carry, xs):
    cs, ps = nnx.merge(graphdef, state, copy=True)
    return run_program(cs, cell_ids, step, carry, xs, mode=mode, unroll=unroll, per_step=ps)

  return f(state, carry, xs)
