"""Config -> library objects for the HVAE runner: the spec, the execution policy, the step and
loop configs, the preprocessing and the data splits (with their provenance).

The library never reads configs (ENGINEERING.md); this module is where ``config.model``,
``config.optim``, ``config.train`` and ``config.data`` become keyword arguments.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import ml_collections
from jax.experimental import multihost_utils

from mrflax import data, nn
from mrflax.training import loop
from mrflax.training.steps import StepConfig

_POLICY_FIELDS = tuple(f.name for f in dataclasses.fields(nn.ExecPolicy))
"""Keys of ``config.model`` / ``config.model.overrides`` that go to the ExecPolicy."""


def _split_model_config(config: ml_collections.ConfigDict) -> tuple[dict, dict]:
  """``(architecture kwargs, execution kwargs)`` from ``config.model``.

  ``share`` / ``time_embedding`` and every ``config.model.overrides`` key that is not an
  :class:`~mrflax.nn.ExecPolicy` field go to the spec; ``exec_mode`` and the policy keys among
  the overrides (``remat``, ``scan_unroll``, ``conv_backward``, ...) go to the policy.
  """
  m = config.model
  share = m.share if m.share == "full" else int(m.share)
  arch: dict[str, Any] = dict(share=share, time_embedding=m.time_embedding)
  execution: dict[str, Any] = dict(exec_mode=m.exec_mode)
  for key, value in dict(m.get("overrides", {})).items():
    (execution if key in _POLICY_FIELDS else arch)[key] = value
  return arch, execution


def _legacy_remat_mode(execution: dict, block_resolutions) -> dict:
  """Rewrites the old execution mode ``"remat"`` as ``"scan"`` with remat ``"block"``.

  The old mode ran a resolution as a scan with every application under ``jax.checkpoint``
  (``"resolution"`` if that resolution's remat policy said so): the same computation. Configs
  and commands that say ``exec_mode="remat"`` (or a ``"remat"`` override) keep working.
  """
  mode = execution.get("exec_mode", "unroll")
  mode_over = dict(execution.get("exec_overrides", ()))
  if mode != "remat" and "remat" not in mode_over.values():
    return execution
  remat = execution.get("remat", "none")
  remat_over = dict(execution.get("remat_overrides", ()))

  def new_remat(m: str, rm: str) -> str:
    return ("resolution" if rm == "resolution" else "block") if m == "remat" else rm

  default = new_remat(mode, remat)
  at = {r: new_remat(mode_over.get(r, mode), remat_over.get(r, remat)) for r in block_resolutions}
  return dict(
    execution,
    exec_mode="scan" if mode == "remat" else mode,
    exec_overrides=tuple((r, "scan" if m == "remat" else m) for r, m in mode_over.items()),
    remat=default,
    remat_overrides=tuple((r, p) for r, p in at.items() if p != default),
  )


def model_spec(config: ml_collections.ConfigDict) -> nn.HVAESpec:
  """The architecture: the preset with the architecture keys of ``config.model``."""
  arch, _ = _split_model_config(config)
  return nn.get_preset(config.model.preset, **arch)


def exec_policy(config: ml_collections.ConfigDict) -> nn.ExecPolicy:
  """How the model runs: ``config.model.exec_mode`` and the policy keys of the overrides."""
  _, execution = _split_model_config(config)
  return nn.ExecPolicy(**_legacy_remat_mode(execution, model_spec(config).block_resolutions))


def execution_only(changes: list[tuple[str, Any, Any]]) -> list[tuple[str, Any, Any]]:
  """The config changes (``Restored.config_changes``) that only touch the ExecPolicy."""
  keys = {"model.exec_mode", *(f"model.overrides.{k}" for k in _POLICY_FIELDS)}
  return [c for c in changes if c[0] in keys]


def preprocess(config: ml_collections.ConfigDict) -> data.Preprocess:
  d = config.data
  return data.Preprocess(d.name, bits=d.bits, binarize=d.binarize, pad_to=d.pad_to or None)


def step_config(config: ml_collections.ConfigDict) -> StepConfig:
  o = dict(config.optim)
  for name in ("decay_steps", "grad_clip", "skip_threshold", "adaptive_skip", "ema_decay"):
    if o.get(name) is not None and o[name] <= 0:
      o[name] = None  # configs spell "off" as 0 / -1 (ConfigDict fields are typed)
  return StepConfig(**o)


def loop_config(config: ml_collections.ConfigDict) -> loop.LoopConfig:
  t = config.train
  return loop.LoopConfig(
    steps=t.steps,
    batch_size=t.batch_size,
    steps_per_call=t.steps_per_call,
    log_every=t.log_every,
    checkpoint_every=t.checkpoint_every,
    keep_checkpoints=t.keep_checkpoints,
    max_consecutive_skips=t.max_consecutive_skips,
    seed=config.seed,
    eval_every=t.eval_every,
    eval_metric="loss",
  )


def splits(config: ml_collections.ConfigDict) -> dict[str, str]:
  """The split names a run uses: ``train``, ``valid`` (periodic evaluation) and ``eval``.

  ``data.train_split`` / ``data.valid_split`` override the dataset's defaults (the stored
  training split; the held-out split if the dataset defines one, else the evaluation split).
  """
  spec = data.get_spec(config.data.name)
  return {
    "train": config.data.get("train_split") or spec.train_split,
    "valid": config.data.get("valid_split") or spec.valid_split,
    "eval": spec.eval_split,
  }


def open_split(config: ml_collections.ConfigDict, split: str):
  """The split's source; imports the dataset first if it has an offline importer and the
  config allows it (the digits ship inside scikit-learn, so ``make demo`` needs no network).

  In a multi-process run process 0 opens (and if need be imports) the split first while the
  others wait, so that no two processes import into ``data.data_dir`` at once.
  """
  if jax.process_count() > 1:
    barrier = f"mrflax_open_split_{config.data.name}_{split}"
    try:
      if jax.process_index() == 0:
        _open_or_import(config, split)
    finally:  # even if process 0 failed: the others must not wait for it forever
      multihost_utils.sync_global_devices(barrier)
  return _open_or_import(config, split)


def _open_or_import(config: ml_collections.ConfigDict, split: str):
  d = config.data
  try:
    return data.open_source(d.name, split, data_dir=d.data_dir)
  except data.DatasetNotFoundError:
    if not (d.get("auto_import", False) and d.name == "digits"):
      raise
    print(f"[data] importing scikit-learn digits into {d.data_dir}", flush=True)
    data.import_digits(data_dir=d.data_dir)
    return data.open_source(d.name, split, data_dir=d.data_dir)


def open_splits(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Sources of every split the run uses, by split name."""
  return {name: open_split(config, name) for name in dict.fromkeys(splits(config).values())}


def provenance(config: ml_collections.ConfigDict, sources: dict[str, Any]) -> dict[str, Any]:
  spec = data.get_spec(config.data.name)
  used = splits(config)
  heldout = spec.heldout if spec.heldout and set(spec.heldout.names) & set(used.values()) else None
  try:
    stored = data.dataset_metadata(
      data.find_dataset(config.data.name, data_dir=config.data.data_dir)
    )
  except data.DatasetNotFoundError:
    stored = {}
  return {
    "dataset": config.data.name,
    "tfds_name": spec.tfds_name,
    "version": spec.version,
    "variant": stored.get("variant", spec.variant),
    "dataset_metadata": stored,
    "data_dir": str(config.data.data_dir),
    "bits": config.data.bits,
    "binarize": config.data.binarize,
    "pad_to": config.data.pad_to,
    "splits": {k: len(v) for k, v in sources.items()},
    "roles": used,
    "split_rule": heldout.rule if heldout else "the dataset's stored splits",
  }
