"""Checkpoints: the only module that imports Orbax.

One directory per run holds, for each saved step, the whole train state (parameters, optimizer,
EMA, counters, RNG key), the data-iterator position and the config, so a run resumes exactly.
Saves are asynchronous; the last ``max_to_keep`` steps are kept, and the best one (by an
evaluation metric) is kept apart in ``<dir>/best``.

Restoring tells two failures apart and never deletes anything:

* a **readable checkpoint that does not fit** the current model (a changed architecture): the
  saved array structure is compared with the current one before any array is read, and
  :class:`CheckpointMismatchError` says which config fields differ (saved and current values),
  the first array that differs (path and shapes) and how to proceed;
* an **unreadable checkpoint** (truncated data or metadata, non-finite values): it is renamed
  ``<step>.unreadable-<UTC time>`` (kept for inspection) and the previous good step is used, so
  the run continues past it and saves that step afresh.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils


class CheckpointMismatchError(ValueError):
  """A readable checkpoint whose arrays do not fit the current train state (changed model)."""


@dataclasses.dataclass
class Restored:
  """What :meth:`Checkpointer.restore` returns."""

  step: int
  state: Any
  data_state: dict | None
  config: dict | None
  skipped_corrupt: list[int]
  set_aside: list[pathlib.Path] = dataclasses.field(default_factory=list)
  config_changes: list[tuple[str, Any, Any]] = dataclasses.field(default_factory=list)


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
      handler_registry=_registry(),
    )
    self.set_aside: list[pathlib.Path] = []
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
      # Its own barrier prefix: the regular manager may save the same step at once, and in a
      # multi-process run two managers with unprefixed barriers wait at identically named
      # barriers (``async_write_complete.<step>``) and hang.
      self._best = ocp.CheckpointManager(
        self._best_dir,
        options=ocp.CheckpointManagerOptions(
          max_to_keep=1,
          multiprocessing_options=ocp.options.MultiprocessingOptions(
            barrier_sync_key_prefix="best"
          ),
          **self._options,
        ),
        handler_registry=_registry(),
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

  def restore(
    self, abstract_state: Any, *, step: int | None = None, config: dict | None = None
  ) -> Restored | None:
    """Restores the newest readable checkpoint (or ``step``) onto ``abstract_state``'s shardings.

    Args:
      abstract_state: a pytree like the saved state, of arrays or ``ShapeDtypeStruct``\\ s (see
        :func:`abstract_like`); restored arrays take its shardings, so a run can resume on a
        different mesh.
      step: a specific step (no fallback, nothing set aside); default: the latest readable one.
      config: the current run's config; compared with the saved one (``config_changes``), and
        named in the error when the arrays do not fit.

    Returns:
      :class:`Restored`, or ``None`` if the directory has no readable checkpoint. Unreadable
      checkpoints newer than the one restored are listed in ``skipped_corrupt`` and renamed
      ``<step>.unreadable-<time>`` (``set_aside``); if every checkpoint is unreadable they are all
      set aside and ``None`` is returned (the run starts afresh; :attr:`set_aside` lists them).

    Raises:
      CheckpointMismatchError: the checkpoint is readable but its arrays (paths, shapes, dtypes)
        differ from ``abstract_state``'s: the model changed. Nothing is renamed or deleted.
    """
    self.wait()
    self._mngr.reload()
    target = abstract_like(abstract_state)
    want = _flat_specs(target)
    steps = [step] if step is not None else sorted(self._mngr.all_steps(), reverse=True)
    skipped: list[int] = []
    for s in steps:
      try:
        saved = _flat_specs(self._mngr.item_metadata(s)["state"])
      except Exception as err:  # the metadata cannot be read: corrupt
        if step is not None:
          raise
        self._set_aside(s, f"unreadable metadata ({type(err).__name__}: {err})")
        skipped.append(s)
        continue
      if saved != want:
        raise CheckpointMismatchError(self._mismatch_message(s, saved, want, config))
      try:
        out = self._mngr.restore(
          s,
          args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target),
            data=ocp.args.JsonRestore(),
            config=ocp.args.JsonRestore(),
          ),
        )
      except Exception as err:  # the structure fits, the data cannot be read: corrupt
        if step is not None:
          raise
        self._set_aside(s, f"unreadable data ({type(err).__name__}: {err})")
        skipped.append(s)
        continue
      if not _all_finite(out.state):
        if step is not None:
          raise ValueError(f"checkpoint at step {s} in {self.directory} holds non-finite values")
        self._set_aside(s, "non-finite values (saves refuse those: the files were damaged)")
        skipped.append(s)
        continue
      saved_config = dict(out.config) or None
      return Restored(
        step=s,
        state=out.state,
        data_state=dict(out.data) or None,
        config=saved_config,
        skipped_corrupt=skipped,
        set_aside=list(self.set_aside),
        config_changes=config_diff(saved_config, config) if config is not None else [],
      )
    if skipped:
      logging.error(
        "no readable checkpoint in %s: steps %s were set aside; starting afresh",
        self.directory,
        skipped,
      )
    return None

  def _set_aside(self, step: int, reason: str) -> None:
    """Renames an unreadable step ``<step>.unreadable-<UTC time>``: kept, out of Orbax's way."""
    src = self.directory / str(step)
    dst = self.directory / f"{step}.unreadable-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    if jax.process_index() == 0 and src.exists():
      while dst.exists():
        dst = dst.with_name(dst.name + "x")
      src.rename(dst)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"mrflax_set_aside_{step}")
    self._mngr.reload()
    self.set_aside.append(dst)
    logging.error(
      "checkpoint at step %d in %s is unreadable: %s. Kept as %s; trying the previous one",
      step,
      self.directory,
      reason,
      dst.name,
    )

  def _saved_config(self, step: int) -> dict | None:
    try:
      out = self._mngr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
      return dict(out.config) or None
    except Exception:  # an old or damaged config item: the shapes still tell what differs
      return None

  def _mismatch_message(self, step, saved, want, config) -> str:
    lines = [
      f"the checkpoint at step {step} in {self.directory} is readable but does not fit the "
      "current model (its arrays differ: the architecture changed)."
    ]
    saved_config = self._saved_config(step)
    changes = config_diff(saved_config, config) if config is not None and saved_config else []
    if changes:
      lines.append("  config fields that differ (saved -> current):")
      lines += [f"    {k}: {old!r} -> {new!r}" for k, old, new in changes[:20]]
      if len(changes) > 20:
        lines.append(f"    ... and {len(changes) - 20} more")
    differing = sorted(k for k in saved.keys() | want.keys() if saved.get(k) != want.get(k))
    first = differing[0]
    fmt = lambda spec: "absent" if spec is None else f"{spec[0]} {spec[1]}"
    lines.append(
      f"  first differing array: {first}: saved {fmt(saved.get(first))}, current "
      f"{fmt(want.get(first))} ({len(differing)} of {len(want)} arrays differ)"
    )
    lines.append(
      "  To continue this run, revert the field(s) above that define the model; to train the "
      "changed model, start it in another workdir (--workdir). Nothing in the directory was "
      "changed or deleted."
    )
    return "\n".join(lines)

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


def config_diff(saved: dict | None, current: dict | None) -> list[tuple[str, Any, Any]]:
  """``[(dotted field, saved value, current value)]`` for every leaf that differs.

  Examples:
    >>> config_diff({"model": {"share": 1, "w": 8}}, {"model": {"share": 2, "w": 8}, "x": 0})
    [('model.share', 1, 2), ('x', None, 0)]
  """
  a, b = _flat_config(saved or {}), _flat_config(current or {})
  return [(k, a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]


def _flat_config(d: dict, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat_config(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = tuple(v) if isinstance(v, list) else v
  return out


def _key_name(k) -> str:
  for attr in ("name", "key", "idx"):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def _flat_specs(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
  """``{"params/dec/0/kernel/value": (shape, dtype)}`` of a state or of Orbax's metadata tree."""
  if tree is None:
    raise ValueError("no array metadata")
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {
    "/".join(_key_name(k) for k in path): (tuple(x.shape), str(jax.numpy.dtype(x.dtype)))
    for path, x in leaves
  }


def _registry() -> ocp.handlers.DefaultCheckpointHandlerRegistry:
  """The three items of every step: the train state (arrays), the data position, the config."""
  registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
  state = ocp.handlers.StandardCheckpointHandler()
  registry.add("state", ocp.args.StandardSave, state)
  registry.add("state", ocp.args.StandardRestore, state)
  for name in ("data", "config"):
    handler = ocp.handlers.JsonCheckpointHandler()
    registry.add(name, ocp.args.JsonSave, handler)
    registry.add(name, ocp.args.JsonRestore, handler)
  return registry


def _all_finite(tree: Any) -> bool:
  import jax.numpy as jnp

  ok = True
  for x in jax.tree.leaves(tree):
    if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating):
      ok = ok and bool(jnp.all(jnp.isfinite(x)))
  return ok
