"""Explicit Euler step size (issue 6 item 5, THEORY §4.3, §5.4 D4): one shared cell per
resolution in explicit step-size mode with ``shared_sigma``, trained with N applications and
evaluated with N' ∈ ``cfg.euler_eval_blocks`` at the same parameters (finer / coarser Euler
steps): test NLL and samples."""

from __future__ import annotations

import pathlib

import jax
import ml_collections
import numpy as np
from flax import nnx

from experiments.hvae import from_config
from experiments.hvae import train as hvae_train
from experiments.hvae_claims import plots, runs
from mrflax import nn


def euler_runs(cfg) -> dict[str, ml_collections.ConfigDict]:
  out = {}
  for i in cfg.euler_train:
    blocks = cfg.euler_eval_blocks[i]
    n = nn.get_preset("digits8", dec_blocks=blocks).num_applications
    out[f"euler_n{n}"] = runs.run_config(
      cfg,
      seed=cfg.seeds[0],
      share="full",
      step_size="explicit",
      shared_sigma=True,
      dec_blocks=blocks,
    )
  return out


def run_euler(cfg, workdir: pathlib.Path) -> dict:
  rows = []
  grids = []
  for name, c in euler_runs(cfg).items():
    s = runs.train_run(c, workdir, name)
    spec, model = runs.ema_model(c, workdir, name)
    params = nnx.state(model, nnx.Param)
    source = from_config.open_splits(c)[from_config.splits(c)["eval"]]
    for blocks in cfg.euler_eval_blocks:
      other = spec.replace(dec_blocks=blocks)
      m = nn.HVAE(other, rngs=nnx.Rngs(0))
      nnx.update(m, params)  # one cell per resolution: the same parameter tree
      res = hvae_train.evaluate_split(c, other, m, source, key=jax.random.key(c.seed + 1))
      samples = runs.sample(m, jax.random.key(c.seed + 5), 8)
      grids.append((f"{name} → N'={other.num_applications}", np.asarray(samples)))
      rows.append(
        dict(
          trained=name,
          trained_applications=spec.num_applications,
          eval_applications=other.num_applications,
          bits_per_dim=res.bits_per_dim,
          distortion=res.distortion,
          rate=res.rate,
          train_eval_bits_per_dim=s["eval"]["bits_per_dim"],
        )
      )
      print(f"[claims] euler {rows[-1]}", flush=True)
  payload = dict(rows=rows, eval_blocks=list(cfg.euler_eval_blocks))
  runs.write(cfg, workdir, "euler", payload, plots.euler(rows, euler_runs(cfg), grids))
  return payload
