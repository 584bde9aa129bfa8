"""Checkpoints: the only module that imports Orbax.

One directory per run holds, for each saved step, the whole train state (parameters, optimizer,
EMA, counters, RNG key), the data-iterator position and the config, so a run resumes exactly.
Saves are asynchronous; the last ``max_to_keep`` steps are kept, and the best one (by an
evaluation metric) is kept apart in ``<dir>/best``. A latest checkpoint that cannot be read is
reported and the previous good one is used.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging


@dataclasses.dataclass
class Restored:
  """What :meth:`Checkpointer.restore` returns."""

  step: int
  state: Any
  data_state: dict | None
  config: dict | None
  skipped_corrupt: list[int]


def abstract_like(tree: Any, sharding: Any = None) -> Any:
  """``ShapeDtypeStruct``\\ s of ``tree`` (with ``sharding`` if given, e.g. on a new mesh)."""

  def one(x):
    s = sharding if sharding is not None else getattr(x, "sharding", None)
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s)

  return jax.tree.map(one, tree)


class Checkpointer:
  """A thin wrapper around ``ocp.CheckpointManager`` for mrflax train states.

  Args:
    directory: the run's checkpoint directory (created if missing).
    max_to_keep: number of most recent checkpoints kept.
    async_save: write in a background thread (the step loop continues).
  """

  def __init__(
    self, directory: str | os.PathLike, *, max_to_keep: int = 3, async_save: bool = True
  ):
    self.directory = pathlib.Path(directory).absolute()
    self._options = dict(enable_async_checkpointing=async_save)
    self._mngr = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, **self._options),
      item_names=("state", "data", "config"),
    )
    self._best_dir = self.directory / "best"
    self._best: ocp.CheckpointManager | None = None

  # ------------------------------------------------------------------------------------------ save
  def _args(self, state, data_state, config):
    return ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      data=ocp.args.JsonSave(data_state or {}),
      config=ocp.args.JsonSave(config or {}),
    )

  def save(
    self, step: int, state: Any, *, data_state: dict | None = None, config: dict | None = None
  ) -> bool:
    """Saves ``state`` at ``step`` (asynchronously); returns whether a save started.

    A state with non-finite parameters is refused (logged), so a diverged run never overwrites
    a good checkpoint.
    """
    if not _all_finite(state):
      logging.error("not saving step %d: the state holds non-finite values", step)
      return False
    return bool(self._mngr.save(int(step), args=self._args(state, data_state, config), force=True))

  def save_best(
    self,
    step: int,
    state: Any,
    *,
    metric: float,
    data_state: dict | None = None,
    config: dict | None = None,
  ) -> bool:
    """Keeps ``state`` in ``<dir>/best`` if ``metric`` (lower is better) beats the best so far."""
    best = self.best_metric()
    if best is not None and not metric < best:
      return False
    if self._best is None:
      self._best = ocp.CheckpointManager(
        self._best_dir,
        options=ocp.CheckpointManagerOptions(max_to_keep=1, **self._options),
        item_names=("state", "data", "config"),
      )
    cfg = dict(config or {}, _best_metric=float(metric))
    return bool(self._best.save(int(step), args=self._args(state, data_state, cfg), force=True))

  def best_metric(self) -> float | None:
    """The metric of the kept best checkpoint, if any."""
    self.wait()
    if not self._best_dir.exists():
      return None
    steps = sorted(int(p.name) for p in self._best_dir.iterdir() if p.name.isdigit())
    if not steps:
      return None
    path = self._best_dir / str(steps[-1]) / "config" / "metadata"
    try:
      return float(json.loads(path.read_text())["_best_metric"])
    except (OSError, KeyError, ValueError):
      return None

  # --------------------------------------------------------------------------------------- restore
  def all_steps(self) -> list[int]:
    return sorted(self._mngr.all_steps())

  def latest_step(self) -> int | None:
    return self._mngr.latest_step()

  def restore(self, abstract_state: Any, *, step: int | None = None) -> Restored | None:
    """Restores the newest readable checkpoint (or ``step``) onto ``abstract_state``'s shardings.

    Args:
      abstract_state: a pytree like the saved state, of arrays or ``ShapeDtypeStruct``\\ s (see
        :func:`abstract_like`); restored arrays take its shardings, so a run can resume on a
        different mesh.
      step: a specific step (no fallback); default: the latest readable one.

    Returns:
      :class:`Restored`, or ``None`` if the directory has no checkpoint. Unreadable checkpoints
      newer than the one restored are listed in ``skipped_corrupt`` (and logged).
    """
    self.wait()
    target = abstract_like(abstract_state)
    steps = [step] if step is not None else sorted(self._mngr.all_steps(), reverse=True)
    skipped = []
    for s in steps:
      try:
        out = self._mngr.restore(
          s,
          args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target),
            data=ocp.args.JsonRestore(),
            config=ocp.args.JsonRestore(),
          ),
        )
      except Exception as err:  # any read failure means "corrupt": fall back
        if step is not None:
          raise
        logging.error(
          "checkpoint at step %d in %s is unreadable (%s: %s); trying the previous one",
          s,
          self.directory,
          type(err).__name__,
          err,
        )
        skipped.append(s)
        continue
      if not _all_finite(out.state):
        logging.error("checkpoint at step %d holds non-finite values; trying the previous one", s)
        skipped.append(s)
        continue
      return Restored(
        step=s,
        state=out.state,
        data_state=dict(out.data) or None,
        config=dict(out.config) or None,
        skipped_corrupt=skipped,
      )
    if skipped:
      raise RuntimeError(
        f"no readable checkpoint in {self.directory}: steps {skipped} are all corrupt. Move the "
        "directory away to start afresh."
      )
    return None

  # ----------------------------------------------------------------------------------------- close
  def wait(self) -> None:
    """Blocks until pending asynchronous saves are on disk."""
    self._mngr.wait_until_finished()
    if self._best is not None:
      self._best.wait_until_finished()

  def close(self) -> None:
    self.wait()
    self._mngr.close()
    if self._best is not None:
      self._best.close()


def _all_finite(tree: Any) -> bool:
  import jax.numpy as jnp

  ok = True
  for x in jax.tree.leaves(tree):
    if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating):
      ok = ok and bool(jnp.all(jnp.isfinite(x)))
  return ok
