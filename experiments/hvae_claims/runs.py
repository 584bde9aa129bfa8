"""The training runs the HVAE claim experiments share, and what they read back from them.

Every training run goes through ``experiments.hvae.train.train_and_evaluate`` (the same trainer,
checkpoints and test-set ELBO as ``experiments/main.py``) into ``<workdir>/<run name>``; a run
whose ``summary.json`` exists is not trained again. The decoder passes that return the states
are jitted once here, with the model as an argument: one compile per model architecture, reused
across runs (trained and init weights) and temperatures (a traced argument).
"""

from __future__ import annotations

import copy
import json
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments import common
from experiments.hvae import from_config
from experiments.hvae import train as hvae_train
from mrflax import data, training

# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------


def run_config(cfg, *, seed: int, **model) -> ml_collections.ConfigDict:
  """The HVAE config of one run: ``cfg.hvae`` with a seed and model changes."""
  c = copy.deepcopy(cfg.hvae)
  c.unlock()
  c.seed = seed
  for key in ("share", "time_embedding", "exec_mode"):
    if key in model:
      c.model[key] = model.pop(key)
  for key, value in model.items():
    c.model.overrides[key] = value
  return c


def finished(workdir: pathlib.Path, name: str) -> bool:
  """Whether run ``name`` has finished (its ``summary.json`` exists)."""
  return (workdir / name / "summary.json").exists()


def train_run(config, workdir: pathlib.Path, name: str) -> dict[str, Any]:
  """Trains (or reuses) one run; returns its ``summary.json``.

  A finished run is reused only if it was trained with the same config (its ``config.json``) up
  to the execution policy and the data location; otherwise this raises with the differing
  fields rather than mixing two protocols in one table.
  """
  work = workdir / name
  summary = work / "summary.json"
  if summary.exists():
    saved = json.loads((work / "config.json").read_text())
    changes = training.config_diff(saved, json.loads(config.to_json()))
    # how a run executes (the ExecPolicy: remat, scan, convolution VJP) and where the data lives
    # change wall time and float round-off, not the model, the data or the optimisation
    how = {c[0] for c in from_config.execution_only(changes)} | {"data.data_dir"}
    diff = [f"{k}: {a!r} -> {b!r}" for k, a, b in changes if k not in how]
    if diff:
      raise ValueError(
        f"run {name!r} in {work} was trained with another config ({'; '.join(diff)}); "
        "use another --workdir, or move that run away to retrain it"
      )
    print(f"[claims] {name}: reusing {summary}", flush=True)
    return json.loads(summary.read_text())
  print(f"[claims] {name}: training", flush=True)
  t0 = time.perf_counter()
  out = hvae_train.train_and_evaluate(config, str(work))
  print(f"[claims] {name}: done in {time.perf_counter() - t0:.0f} s", flush=True)
  return out


def ema_model(config, workdir: pathlib.Path, name: str):
  """``(spec, EMA model)`` restored from a run's newest checkpoint."""
  spec, trainer, restored = hvae_train.restore(config, workdir / name)
  return spec, trainer.model(restored.state, ema=True)


def test_arrays(config, limit: int = 0) -> dict[str, np.ndarray]:
  """The test examples (preprocessed) as arrays ``image``, ``target``: all of them, or the
  first ``limit`` (a posterior pass that returns every state holds them all in memory)."""
  source = from_config.open_splits(config)[from_config.splits(config)["eval"]]
  if limit:
    source = data.IndexedSource(source, np.arange(min(limit, len(source))))
  parts: dict[str, list] = {"image": [], "target": []}
  for batch in data.eval_batches(
    source,
    batch_size=128,
    preprocess=from_config.preprocess(config),
    seed=config.seed,
    process_index=0,
    process_count=1,
  ):
    real = batch["mask"] > 0
    for k in parts:
      parts[k].append(batch[k][real])
  return {k: np.concatenate(v) for k, v in parts.items()}


def metrics(workdir: pathlib.Path, name: str) -> list[dict]:
  """The records of a run's ``metrics.jsonl``."""
  path = workdir / name / "metrics.jsonl"
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------
# Decoder passes that return the states (compiled once per architecture)
# ---------------------------------------------------------------------------------------------

# Module-level jitted functions: a ``jax.jit(lambda ...)`` built per call would miss the cache and
# recompile every time.
posterior_pass = jax.jit(lambda m, x, k: m.forward(x, k, return_states=True).states)
_prior_pass = jax.jit(
  lambda m, k, t, n: m.decoder(None, k, batch_size=n, temperature=t, return_states=True),
  static_argnums=3,
)
sample = jax.jit(lambda m, k, n: m.sample(k, batch_size=n, temperature=1.0), static_argnums=2)


def prior_states(model, n: int, temperature: float, key):
  """``(states, out)`` of a prior pass of ``n`` samples at ``temperature``."""
  out = _prior_pass(model, key, jnp.float32(temperature), n)
  return out.states, out.out


# ---------------------------------------------------------------------------------------------
# Writing results
# ---------------------------------------------------------------------------------------------


def none_for_nan(a) -> list:
  """A float list for JSON, None (null) where NaN."""
  return [None if np.isnan(v) else float(v) for v in np.asarray(a, np.float64)]


def none_for_nonfinite(a) -> list:
  """A float list for JSON, None (null) where NaN or infinite."""
  return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, np.float64)]


def mean_sd(values) -> tuple[float, float | None]:
  """Mean and sample s.d. (ddof = 1); the s.d. is None (JSON null) for a single seed."""
  v = np.asarray(values, np.float64)
  return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else None)


def write(cfg, workdir: pathlib.Path, name: str, payload: dict, fig) -> None:
  """``<prefix><name>.json`` and ``.png`` into ``cfg.results_dir`` (the workdir when empty);
  ``cfg.prefix`` names the dataset of a study (``"fashion_"``; ``""`` for the digits)."""
  out = common.out_dir(cfg, workdir)
  name = cfg.prefix + name
  common.dump_json(payload, out / f"{name}.json")
  if fig is not None:
    common.save_fig(fig, out / f"{name}.png", dpi=90)
  print(f"[claims] wrote {out / name}.json" + (" and .png" if fig is not None else ""), flush=True)
