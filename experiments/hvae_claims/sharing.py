"""Weight sharing (issue 6 item 3, THEORY §5.2 TS2/TS3, §5.4 D3): test NLL against distinct
parameters for unshared (k = 1), shared in groups, one cell per resolution (full) and full
sharing with a FiLM time embedding, at equal depth and budget, over seeds."""

from __future__ import annotations

import pathlib

import ml_collections
import numpy as np

from experiments.hvae import from_config
from experiments.hvae_claims import plots, runs
from mrflax import nn


def sharing_runs(cfg) -> dict[str, ml_collections.ConfigDict]:
  out = {}
  for seed in cfg.seeds:
    for k in cfg.shares:
      out[f"k{k}_s{seed}"] = runs.run_config(cfg, seed=seed, share=k)
    if cfg.time_embedding_runs:
      out[f"kfull_time_s{seed}"] = runs.run_config(
        cfg, seed=seed, share="full", time_embedding=True
      )
  return out


def run_sharing(cfg, workdir: pathlib.Path) -> dict:
  rows = []
  for name, c in sharing_runs(cfg).items():
    s = runs.train_run(c, workdir, name)
    spec = from_config.model_spec(c)
    counts = nn.spec_param_count(spec)
    rows.append(
      dict(
        run=name,
        share=c.model.share,
        time_embedding=bool(c.model.time_embedding),
        seed=c.seed,
        params=counts.total,
        decoder_cell_params=counts.decoder_cells,
        n_cells=counts.num_cells,
        n_applications=counts.num_applications,
        bits_per_dim=s["eval"]["bits_per_dim"],
        rate=s["eval"]["rate"],
        skipped=s["skipped_updates"],
        wall_s=s.get("wall_s"),
      )
    )
  groups: dict[tuple, list] = {}
  for r in rows:
    groups.setdefault((r["share"], r["time_embedding"]), []).append(r)
  base = np.mean([r["params"] for r in groups[("1", False)]]) if ("1", False) in groups else None
  summary = []
  for (share, temb), rs in groups.items():
    m, sd = runs.mean_sd([r["bits_per_dim"] for r in rs])
    summary.append(
      dict(
        share=share,
        time_embedding=temb,
        params=rs[0]["params"],
        param_fraction=rs[0]["params"] / base if base else None,
        bits_per_dim_mean=m,
        bits_per_dim_sd=sd,
        seeds=len(rs),
      )
    )
  payload = dict(rows=rows, summary=summary, dec_blocks=cfg.hvae.model.overrides.dec_blocks)
  runs.write(cfg, workdir, "sharing", payload, plots.sharing(summary, rows[0]["n_applications"]))
  return payload
