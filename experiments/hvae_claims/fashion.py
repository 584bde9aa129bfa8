"""Weight sharing on real images (issue 15): the sharing study on Fashion-MNIST 28x28.

Each run is ``experiments/fashion_mnist/config.py:cpu`` with a sharing pattern and a seed
(``cfg.sharing_runs``: ``k1_s0``, ``k2_s1``, ``kfull_s0``, ``kfull_time_s0``, ...), trained through
the HVAE runner into ``<workdir>/<run>``. The study spans sessions: ``cfg.max_new_runs`` bounds
the trainings per invocation, finished runs are reused (and checked to have the same config), and
``fashion_sharing.json`` lists the finished rows and the pending runs. Written into
``cfg.results_dir``:

* ``fashion_sharing.json``: ``rows`` (variant, seed, params, test_bits_per_dim, rate, distortion,
  KL per resolution, train_minutes, wall minutes, skipped updates), ``curves`` (validation ELBO per
  evaluation: step and minutes since the first logged step), ``iw`` (importance-weighted bound of
  the best unshared and the best shared run), ``verdicts`` (the rules below), ``pending``;
* ``fashion_sharing.png`` (test NLL against distinct parameters), ``fashion_sharing_curves.png``
  (validation ELBO against step and against minutes, every run);
* ``fashion_samples_<run>.png`` (rows: τ = 1.0, 0.9, 0.8, 0.7) and
  ``fashion_reconstructions_<run>.png`` for the best unshared and the best shared run.

Verdict rules, fixed before the runs (THEORY §5.2; "gap" = mean test bits/dim of a variant minus
that of k = 1; "spread" = the larger seed s.d. of the two, or 0.005 bits/dim with one seed):

* TS2 (k = 2 reaches the unshared likelihood with about half the parameters): **supported** if
  the k = 2 gap is at most 2 x spread; **mixed** if it is larger but under 1% of the unshared
  value; **not supported** otherwise. Needs both seeds of k = 1 and k = 2.
* TS2-full (one cell per resolution): the same rule for full sharing (one seed).
* TS3 (with full sharing, an explicit time embedding adds little): **supported** if the time
  embedding closes less than 25% of the full-sharing gap (or the gap is within 2 x spread),
  **not supported** otherwise.
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import time

import jax
import numpy as np

from experiments import common
from experiments.hvae import from_config
from experiments.hvae import train as hvae_train
from experiments.hvae_claims import plots, runs
from mrflax import data, nn

_RUN_NAME = re.compile(r"^k(?P<share>\d+|full)(?P<time>_time)?_s(?P<seed>\d+)$")
_SEED_SPREAD = 0.005  # bits/dim: the spread assumed while only one seed has finished


def parse_run(name: str) -> dict:
  """``"kfull_time_s0"`` -> ``{"share": "full", "time_embedding": True, "seed": 0}``."""
  m = _RUN_NAME.match(name)
  if m is None:
    raise ValueError(f"bad run name {name!r}: use k<group size|full>[_time]_s<seed>, e.g. k2_s1")
  return dict(share=m["share"], time_embedding=bool(m["time"]), seed=int(m["seed"]))


def variant(share: str, time_embedding: bool) -> str:
  return f"k={share}" + (" + time" if time_embedding else "")


def run_configs(cfg) -> dict:
  return {name: runs.run_config(cfg, **parse_run(name)) for name in cfg.sharing_runs}


def curve(records: list[dict]) -> dict:
  """Validation ELBO per evaluation of a run (its ``metrics.jsonl`` records), against step and
  against minutes since the first logged training step (compile time excluded; the evaluations'
  own time included)."""
  start = next(r for r in records if "loss" in r)
  t0 = start["time"]
  evals = [r for r in records if "eval/bits_per_dim" in r]
  return dict(
    step=[r["step"] for r in evals],
    minutes=[(r["time"] - t0) / 60 for r in evals],
    valid_bits_per_dim=[r["eval/bits_per_dim"] for r in evals],
    first_logged_step=start["step"],
  )


def row(name: str, c, summary: dict, records: list[dict], valid: list[float]) -> dict:
  """One run's row: ``summary.json``, the ``metrics.jsonl`` records, its validation ELBOs."""
  counts = nn.spec_param_count(from_config.model_spec(c))
  train = [r for r in records if "loss" in r]
  ev = summary["eval"]
  return dict(
    run=name,
    variant=variant(c.model.share, bool(c.model.time_embedding)),
    share=c.model.share,
    time_embedding=bool(c.model.time_embedding),
    seed=c.seed,
    params=counts.total,
    num_cells=counts.num_cells,
    test_bits_per_dim=ev["bits_per_dim"],
    rate=ev["rate"],
    distortion=ev["distortion"],
    bits_per_resolution=ev.get("bits_per_resolution"),
    train_minutes=(train[-1]["time"] - train[0]["time"]) / 60 if len(train) > 1 else None,
    wall_minutes=summary["wall_s"] / 60,
    compile_s=summary.get("compile_s"),
    skipped=summary["skipped_updates"],
    steps=summary["step"],
    best_valid_bits_per_dim=min(valid, default=None),
  )


def summarise(rows: list[dict]) -> list[dict]:
  """Per variant: distinct parameters (and their fraction of k = 1), mean ± s.d. over seeds."""
  groups: dict[str, list[dict]] = {}
  for r in rows:
    groups.setdefault(r["variant"], []).append(r)
  base = groups["k=1"][0]["params"] if "k=1" in groups else None
  out = []
  for name, rs in groups.items():
    m, sd = runs.mean_sd([r["test_bits_per_dim"] for r in rs])
    out.append(
      dict(
        variant=name,
        share=rs[0]["share"],
        time_embedding=rs[0]["time_embedding"],
        params=rs[0]["params"],
        param_fraction=rs[0]["params"] / base if base else None,
        bits_per_dim_mean=m,
        bits_per_dim_sd=sd,
        seeds=len(rs),
      )
    )
  return out


def verdicts(rows: list[dict]) -> dict:
  """The pre-registered rules of the module docstring, on the finished rows."""
  g = {
    s["variant"]: dict(mean=s["bits_per_dim_mean"], sd=s["bits_per_dim_sd"], seeds=s["seeds"])
    for s in summarise(rows)
  }
  out: dict[str, dict] = {}
  base = g.get("k=1")

  def spread(*names) -> float:
    sds = [g[n]["sd"] for n in names if n in g and g[n]["sd"] is not None]
    return max(sds) if sds else _SEED_SPREAD

  def reach(name: str, need_seeds: int) -> dict:
    if base is None or name not in g or min(base["seeds"], g[name]["seeds"]) < need_seeds:
      return dict(verdict="pending")
    gap = g[name]["mean"] - base["mean"]
    s = spread("k=1", name)
    if gap <= 2 * s:
      v = "supported"
    elif gap < 0.01 * base["mean"]:
      v = "mixed"
    else:
      v = "not supported"
    return dict(verdict=v, gap=gap, relative_gap=gap / base["mean"], spread=s)

  out["TS2_k2"] = reach("k=2", 2)
  out["TS2_full"] = reach("k=full", 1)
  if base is None or "k=full" not in g or "k=full + time" not in g:
    out["TS3_time"] = dict(verdict="pending")
  else:
    gap = g["k=full"]["mean"] - base["mean"]
    closed = g["k=full"]["mean"] - g["k=full + time"]["mean"]
    s = spread("k=1", "k=full", "k=full + time")
    small = gap <= 2 * s or closed < 0.25 * gap
    out["TS3_time"] = dict(
      verdict="supported" if small else "not supported",
      full_gap=gap,
      closed=closed,
      closed_fraction=closed / gap if gap else None,
      spread=s,
    )
  return out


def _iw(c, workdir: pathlib.Path, name: str, cfg) -> dict:
  """The importance-weighted bound of a run (cached in ``<run>/iw.json``)."""
  path = workdir / name / "iw.json"
  want = dict(num_samples=int(cfg.iw_samples), images=int(cfg.iw_images))
  if path.exists():
    cached = json.loads(path.read_text())
    if cached.get("setting") == want:
      return cached
  c = c.copy_and_resolve_references()
  c.eval.iw_samples, c.eval.iw_chunk = int(cfg.iw_samples), int(cfg.iw_chunk)
  spec, model = runs.ema_model(c, workdir, name)
  source = from_config.open_splits(c)[from_config.splits(c)["eval"]]
  source = data.IndexedSource(source, np.arange(min(int(cfg.iw_images), len(source))))
  print(f"[claims] {name}: IW bound, K={cfg.iw_samples} on {len(source)} test images", flush=True)
  t0 = time.perf_counter()
  iw = hvae_train.evaluate_iw_split(c, spec, model, source, key=jax.random.key(c.seed + 4))
  out = dict(iw.to_dict(), setting=want, wall_s=time.perf_counter() - t0)
  out["elbo_bits_per_dim"] = out["elbo_nats_per_dim"] / np.log(2)
  path.write_text(json.dumps(out, indent=1) + "\n")
  return out


def _pictures(cfg, workdir: pathlib.Path, out: pathlib.Path, best: dict[str, str]) -> list[str]:
  """Copies the samples and reconstructions of the best runs.

  Pictures of former bests stay: the study spans sessions, and experiments/README.md may show
  a run's pictures that a later, better run does not replace.
  """
  keep = []
  for name in best.values():
    for kind in ("samples", "reconstructions"):
      dst = out / f"{cfg.prefix}{kind}_{name}.png"
      shutil.copyfile(workdir / name / f"{kind}.png", dst)
      keep.append(dst.name)
  return keep


def run_fashion_sharing(cfg, workdir: pathlib.Path) -> dict:
  configs = run_configs(cfg)
  budget = len(configs) if cfg.max_new_runs < 0 else int(cfg.max_new_runs)
  rows, pending, curves = [], [], {}
  for name, c in configs.items():
    if not runs.finished(workdir, name):
      if budget == 0:
        pending.append(name)
        continue
      budget -= 1
    summary = runs.train_run(c, workdir, name)
    records = runs.metrics(workdir, name)
    curves[name] = curve(records)
    rows.append(row(name, c, summary, records, curves[name]["valid_bits_per_dim"]))
  payload: dict = dict(
    rows=rows,
    pending=pending,
    curves=curves,
    summary=summarise(rows),
    verdicts=verdicts(rows),
    dec_blocks=from_config.model_spec(cfg.hvae).dec_blocks,
    steps=cfg.hvae.train.steps,
    batch_size=cfg.hvae.train.batch_size,
  )
  best = {}
  for group, shared in (("unshared", False), ("shared", True)):
    candidates = [r for r in rows if (r["share"] != "1") == shared]
    if candidates:
      best[group] = min(candidates, key=lambda r: r["test_bits_per_dim"])["run"]
  payload["best"] = best
  payload["iw"] = {name: _iw(configs[name], workdir, name, cfg) for name in best.values()}
  out = common.out_dir(cfg, workdir)
  payload["pictures"] = _pictures(cfg, workdir, out, best)
  n_app = nn.spec_param_count(from_config.model_spec(cfg.hvae)).num_applications
  fig = plots.sharing(payload["summary"], n_app, dataset="Fashion-MNIST") if rows else None
  runs.write(cfg, workdir, "sharing", payload, fig)
  curves_png = out / f"{cfg.prefix}sharing_curves.png"
  common.save_fig(plots.curves(payload["curves"], rows), curves_png)
  print(f"[claims] wrote {curves_png}; pending runs: {pending or 'none'}", flush=True)
  return payload
