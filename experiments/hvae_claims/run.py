r"""Runs the HVAE claim experiments (issue 6 items 2-5): time, sharing, point mass, Euler steps.

Usage::

  python -m experiments.main --config=experiments/hvae_claims/config.py:all \
      --workdir=/tmp/hvae_claims

Every training run goes through ``experiments.hvae.train.train_and_evaluate`` (the same trainer,
checkpoints and test-set ELBO as ``experiments/main.py``) into ``<workdir>/<run name>``; a run
whose ``summary.json`` exists is not trained again. Each experiment then writes
``<experiment>.json`` and ``<experiment>.png`` into ``config.results_dir`` (the workdir when
empty). Definitions follow THEORY.md §5.4 and §6.3.
"""

from __future__ import annotations

import copy
import json
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib
import ml_collections
import numpy as np
from flax import nnx

from experiments.hvae import train as hvae_train
from mrflax import data, nn, wavelets

matplotlib.use("Agg")
import matplotlib.pyplot as plt

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


def train_run(config, workdir: pathlib.Path, name: str) -> dict[str, Any]:
  """Trains (or reuses) one run; returns its ``summary.json``."""
  work = workdir / name
  summary = work / "summary.json"
  if summary.exists():
    print(f"[claims] {name}: reusing {summary}", flush=True)
    return json.loads(summary.read_text())
  print(f"[claims] {name}: training", flush=True)
  t0 = time.perf_counter()
  out = hvae_train.train_and_evaluate(config, str(work))
  print(f"[claims] {name}: done in {time.perf_counter() - t0:.0f} s", flush=True)
  return out


def ema_model(config, workdir: pathlib.Path, name: str):
  """``(spec, EMA model)`` restored from a run's newest checkpoint."""
  spec, trainer, restored = hvae_train._restore(config, workdir / name)
  return spec, trainer.model(restored.state, ema=True)


def test_arrays(config) -> dict[str, np.ndarray]:
  """Every test example (preprocessed) as arrays ``image``, ``target``."""
  source = hvae_train.open_splits(config)[hvae_train.splits(config)["eval"]]
  parts: dict[str, list] = {"image": [], "target": []}
  for batch in data.eval_batches(
    source,
    batch_size=128,
    preprocess=hvae_train.preprocess(config),
    seed=config.seed,
    process_index=0,
    process_count=1,
  ):
    real = batch["mask"] > 0
    for k in parts:
      parts[k].append(batch[k][real])
  return {k: np.concatenate(v) for k, v in parts.items()}


def _metrics(workdir: pathlib.Path, name: str) -> list[dict]:
  path = workdir / name / "metrics.jsonl"
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------
# State diagnostics (THEORY §5.4, §6.3)
# ---------------------------------------------------------------------------------------------


# Module-level jitted functions: one compile per model architecture, reused across runs (trained
# and init weights) and temperatures (a traced argument). A ``jax.jit(lambda ...)`` built per
# call would miss the cache and recompile every time.
_posterior_pass = jax.jit(lambda m, x, k: m.forward(x, k, return_states=True).states)
_prior_pass = jax.jit(
  lambda m, k, t, n: m.decoder(None, k, batch_size=n, temperature=t, return_states=True),
  static_argnums=3,
)
_sample = jax.jit(lambda m, k, n: m.sample(k, batch_size=n, temperature=1.0), static_argnums=2)


def _posterior_states(model, x, key):
  return _posterior_pass(model, x, key)


def _prior_states(model, n, temperature, key):
  out = _prior_pass(model, key, jnp.float32(temperature), n)
  return out.states, out.out


def _rms(states) -> np.ndarray:
  return np.array([float(jnp.sqrt(jnp.mean(jnp.square(h)))) for h in states])


def _spread(states) -> np.ndarray:
  """v_i: mean over elements of the across-sample variance."""
  return np.array([float(jnp.mean(jnp.var(h, axis=0))) for h in states])


def _rel_increments(states, resolutions) -> np.ndarray:
  """delta_i = ||H_{i+1} - H_i|| / ||H_i|| within a resolution (NaN across a jump)."""
  out = []
  for i in range(len(states) - 1):
    if resolutions[i + 1] != resolutions[i]:
      out.append(np.nan)
      continue
    a, b = states[i], states[i + 1]
    out.append(float(jnp.linalg.norm(b - a) / jnp.maximum(jnp.linalg.norm(a), 1e-12)))
  return np.array(out)


def _nan_to_none(a) -> list:
  return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, np.float64)]


def _ratio(num, den) -> list:
  """Elementwise num / den as a JSON list, None where den is 0."""
  num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
  out = np.divide(num, den, out=np.full_like(num, np.nan), where=den > 0)
  return [None if np.isnan(v) else float(v) for v in out]


def _features(h) -> np.ndarray:
  """phi(H): per-channel spatial mean and spatial RMS (2w numbers per image)."""
  h = np.asarray(h)
  return np.concatenate([h.mean(axis=(1, 2)), np.sqrt((h**2).mean(axis=(1, 2)))], axis=-1)


def _ranks(a: np.ndarray) -> np.ndarray:
  order = np.argsort(a, kind="stable")
  r = np.empty(len(a))
  r[order] = np.arange(len(a))
  return r


def spearman(a, b) -> float:
  """Spearman rank correlation (no ties expected)."""
  ra, rb = _ranks(np.asarray(a)), _ranks(np.asarray(b))
  ra, rb = ra - ra.mean(), rb - rb.mean()
  den = np.sqrt((ra**2).sum() * (rb**2).sum())
  return float((ra * rb).sum() / den) if den > 0 else float("nan")


def ridge_probe(feats, targets, train_mask, *, lam=1e-2) -> dict[str, float]:
  """Ridge regression from features to targets; held-out R² and mean absolute error."""
  x, y = np.asarray(feats, np.float64), np.asarray(targets, np.float64)
  mu, sd = x[train_mask].mean(0), x[train_mask].std(0) + 1e-8
  x = (x - mu) / sd
  x = np.concatenate([x, np.ones((len(x), 1))], axis=1)
  xt, yt = x[train_mask], y[train_mask]
  w = np.linalg.solve(xt.T @ xt + lam * len(xt) * np.eye(x.shape[1]), xt.T @ yt)
  pred = x[~train_mask] @ w
  ytest = y[~train_mask]
  ss_res = float(((pred - ytest) ** 2).sum())
  ss_tot = float(((ytest - ytest.mean()) ** 2).sum())
  return {
    "r2": 1 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
    "mae": float(np.abs(pred - ytest).mean()),
  }


def depth_probe(states, resolutions, *, seed=0) -> dict[str, Any]:
  """D2: predict the block index from phi(H_i); global (over blocks of equal width) and within
  each resolution; fit on half of the images, scored on the other half; shuffled control."""
  n_img = states[0].shape[0]
  rng = np.random.default_rng(seed)
  half = np.zeros(n_img, bool)
  half[rng.permutation(n_img)[: n_img // 2]] = True
  out: dict[str, Any] = {"within": {}}
  res = np.asarray(resolutions)
  for r in sorted(set(resolutions)):
    idx = np.flatnonzero(res == r)
    if len(idx) < 2:
      continue
    feats = np.concatenate([_features(states[i]) for i in idx])
    target = np.repeat(idx.astype(np.float64), n_img)
    mask = np.tile(half, len(idx))
    shuffled = rng.permutation(target)
    out["within"][str(r)] = {
      **ridge_probe(feats, target, mask),
      "shuffled_r2": ridge_probe(feats, shuffled, mask)["r2"],
      "blocks": len(idx),
    }
  widths = {states[i].shape[-1] for i in range(len(resolutions))}
  if len(widths) == 1:  # global probe needs one feature size
    feats = np.concatenate([_features(states[i]) for i in range(len(resolutions))])
    target = np.repeat(np.arange(len(resolutions), dtype=np.float64), n_img)
    mask = np.tile(half, len(resolutions))
    out["global"] = {
      **ridge_probe(feats, target, mask),
      "shuffled_r2": ridge_probe(feats, rng.permutation(target), mask)["r2"],
    }
  return out


def _spearman_within(values, resolutions) -> dict[str, float]:
  res = np.asarray(resolutions)
  return {
    str(r): spearman(np.flatnonzero(res == r), np.asarray(values)[res == r])
    for r in sorted(set(resolutions))
    if (res == r).sum() >= 3
  }


def _boundaries(ax, resolutions):
  for i in range(1, len(resolutions)):
    if resolutions[i] != resolutions[i - 1]:
      ax.axvline(i - 0.5, color="0.8", lw=0.8)


# ---------------------------------------------------------------------------------------------
# Experiments
# ---------------------------------------------------------------------------------------------


def _out(cfg, workdir: pathlib.Path) -> pathlib.Path:
  out = pathlib.Path(cfg.results_dir) if cfg.results_dir else workdir
  out.mkdir(parents=True, exist_ok=True)
  return out


def _dump(cfg, workdir, name, payload, fig) -> None:
  out = _out(cfg, workdir)
  (out / f"{name}.json").write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
  fig.savefig(out / f"{name}.png", dpi=90, bbox_inches="tight")
  plt.close(fig)
  print(f"[claims] wrote {out / name}.json and .png", flush=True)


def _mean_sd(values) -> tuple[float, float | None]:
  """Mean and sample s.d. (ddof = 1); the s.d. is None (JSON null) for a single seed."""
  v = np.asarray(values, np.float64)
  return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else None)


def sharing_runs(cfg) -> dict[str, ml_collections.ConfigDict]:
  runs = {}
  for seed in cfg.seeds:
    for k in cfg.shares:
      runs[f"k{k}_s{seed}"] = run_config(cfg, seed=seed, share=k)
    if cfg.time_embedding_runs:
      runs[f"kfull_time_s{seed}"] = run_config(cfg, seed=seed, share="full", time_embedding=True)
  return runs


def run_sharing(cfg, workdir: pathlib.Path) -> dict:
  rows = []
  for name, c in sharing_runs(cfg).items():
    s = train_run(c, workdir, name)
    spec = hvae_train.model_spec(c)
    counts = nn.count_params(spec)
    rows.append(
      dict(
        run=name,
        share=c.model.share,
        time_embedding=bool(c.model.time_embedding),
        seed=c.seed,
        params=counts.total,
        decoder_cell_params=counts.decoder_cells,
        n_cells=counts.n_cells,
        n_applications=counts.n_applications,
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
    m, sd = _mean_sd([r["bits_per_dim"] for r in rs])
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
  fig, ax = plt.subplots(figsize=(5, 3.5))
  for s in summary:
    ax.errorbar(
      s["params"] / 1e3,
      s["bits_per_dim_mean"],
      yerr=s["bits_per_dim_sd"],
      fmt="s" if s["time_embedding"] else "o",
      capsize=3,
      label=f"k={s['share']}" + (" + time FiLM" if s["time_embedding"] else ""),
    )
  ax.set_xlabel("distinct parameters (thousands)")
  ax.set_ylabel("test NLL bound (bits/dim)")
  ax.set_title(f"weight sharing, {rows[0]['n_applications']} top-down blocks (digits)")
  ax.legend(fontsize=8)
  payload = dict(rows=rows, summary=summary, dec_blocks=cfg.hvae.model.overrides.dec_blocks)
  _dump(cfg, workdir, "sharing", payload, fig)
  return payload


def run_time(cfg, workdir: pathlib.Path) -> dict:
  seed = cfg.seeds[0]
  name = f"k1_s{seed}"
  c = run_config(cfg, seed=seed, share="1")
  train_run(c, workdir, name)
  spec, trained = ema_model(c, workdir, name)
  # committed to the restored model's device, so one compilation serves both models
  init = jax.device_put(nn.HVAE(spec, rngs=nnx.Rngs(seed)), jax.tree.leaves(trained)[0].sharding)
  arrays = test_arrays(c)
  x = jnp.asarray(arrays["image"])
  resolutions = [r for r, _ in spec.dec_pairs]
  key = jax.random.key(seed + 10)
  result: dict[str, Any] = {"resolutions": resolutions, "models": {}}
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
  for label, model in (("trained", trained), ("init", init)):
    post = _posterior_states(model, x, key)[:-1]
    entry = {
      "rms_posterior": _rms(post).tolist(),
      "spearman_posterior": _spearman_within(_rms(post), resolutions),
      "probe_posterior": depth_probe(post, resolutions, seed=seed),
    }
    for t in (1.0, 0.8):
      pri, _ = _prior_states(model, cfg.num_prior_samples, t, key)
      entry[f"rms_prior_t{t}"] = _rms(pri[:-1]).tolist()
      entry[f"spearman_prior_t{t}"] = _spearman_within(_rms(pri[:-1]), resolutions)
    result["models"][label] = entry
    style = "-" if label == "trained" else ":"
    axes[0].plot(entry["rms_posterior"], "o" + style, ms=3, label=f"{label}: posterior")
    axes[0].plot(entry["rms_prior_t1.0"], "x" + style, ms=3, label=f"{label}: prior τ=1")
  tr, it = result["models"]["trained"], result["models"]["init"]
  # the first state at init is the zero start constant: no ratio there (null in the JSON)
  result["rms_ratio_trained_over_init"] = _ratio(tr["rms_posterior"], it["rms_posterior"])
  _boundaries(axes[0], resolutions)
  axes[0].set_xlabel("top-down block i")
  axes[0].set_ylabel("state RMS")
  axes[0].set_title("D1: state norm along depth")
  axes[0].legend(fontsize=7)
  labels, r2_tr, r2_init, r2_shuf = [], [], [], []
  for r, v in tr["probe_posterior"]["within"].items():
    labels.append(f"{r}x{r}")
    r2_tr.append(v["r2"])
    r2_init.append(it["probe_posterior"]["within"][r]["r2"])
    r2_shuf.append(v["shuffled_r2"])
  xs = np.arange(len(labels))
  axes[1].bar(xs - 0.25, r2_tr, 0.25, label="trained")
  axes[1].bar(xs, r2_init, 0.25, label="init")
  axes[1].bar(xs + 0.25, r2_shuf, 0.25, label="shuffled labels")
  axes[1].set_xticks(xs, labels)
  axes[1].set_ylabel("held-out R² (block index)")
  axes[1].set_title("D2: depth probe within each resolution")
  axes[1].axhline(0, color="k", lw=0.5)
  axes[1].legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3)
  _dump(cfg, workdir, "time", result, fig)
  return result


def _haar_spectrum(x) -> list[float]:
  """Haar spectrum (§2.5) of images around their mean: fraction of energy per level."""
  x = jnp.asarray(x, jnp.float32)
  x = x - jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  levels = int(np.log2(x.shape[1]))
  e = wavelets.band_energies(wavelets.haar_analysis(x, levels=levels, ndim=2))
  per = jnp.mean(e.per_level(), axis=0)
  return (per / jnp.sum(per)).tolist()


def _pairwise(x) -> float:
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
  return float(d[np.triu_indices(len(x), 1)].mean())


def _first_finite(rows) -> float | None:
  """Mean over runs of the first within-resolution relative increment (delta of block 0)."""
  firsts = [next((v for v in row if v is not None and np.isfinite(v)), None) for row in rows]
  firsts = [v for v in firsts if v is not None]
  return float(np.mean(firsts)) if firsts else None


def _finite(r) -> np.ndarray:
  v = np.array([np.nan if x is None else x for x in r["prior"]["1.0"]["exposure_ratio"]])
  return v[np.isfinite(v)]


def _finite_mean(r) -> float:
  return float(np.mean(_finite(r)))


def _finite_max(r) -> float:
  return float(np.max(_finite(r)))


def point_mass_runs(cfg) -> dict[str, tuple[float, ml_collections.ConfigDict]]:
  runs = {}
  for seed in cfg.seeds:
    runs[f"k1_s{seed}"] = (0.0, run_config(cfg, seed=seed, share="1"))
    for z in cfg.zetas:
      runs[f"zeta{z}_s{seed}"] = (z, run_config(cfg, seed=seed, share="1", start_noise=float(z)))
  return runs


def run_point_mass(cfg, workdir: pathlib.Path) -> dict:
  rows = []
  data_spectrum = None
  fig, axes = plt.subplots(1, 3, figsize=(14, 3.5))
  for name, (zeta, c) in point_mass_runs(cfg).items():
    s = train_run(c, workdir, name)
    metrics = _metrics(workdir, name)
    norms = np.array([m["grad_norm"] for m in metrics if "grad_norm" in m])
    norm_max = np.array([m.get("grad_norm_max", np.nan) for m in metrics if "grad_norm" in m])
    spec, model = ema_model(c, workdir, name)
    arrays = test_arrays(c)
    x = jnp.asarray(arrays["image"])
    if data_spectrum is None:
      data_spectrum = _haar_spectrum(arrays["target"])
    resolutions = [r for r, _ in spec.dec_pairs]
    key = jax.random.key(c.seed + 20)
    post = _posterior_states(model, x, key)
    rms_post = _rms(post[:-1])
    per_t = {}
    for t in cfg.temperatures:
      pri, out = _prior_states(model, cfg.num_prior_samples, t, key)
      samples = model.sample_likelihood(jax.random.fold_in(key, 1), out)
      finite = np.asarray(jnp.all(jnp.isfinite(out), axis=(1, 2, 3)))
      rms_pri = _rms(pri[:-1])
      per_t[str(t)] = dict(
        rms=rms_pri.tolist(),
        spread=_spread(pri[:-1]).tolist(),
        exposure_ratio=_ratio(rms_pri, rms_post),
        rel_increment=_nan_to_none(_rel_increments(pri, [*resolutions, resolutions[-1]])),
        nonfinite_fraction=float(1 - finite.mean()),
        pairwise_distance=_pairwise(samples[:64]),
        haar_spectrum=_haar_spectrum(samples),
      )
    rows.append(
      dict(
        run=name,
        zeta=zeta,
        seed=c.seed,
        bits_per_dim=s["eval"]["bits_per_dim"],
        kl_per_block=s["eval"]["kl_per_block"],
        skipped=s["skipped_updates"],
        grad_norm_median=float(np.median(norms)) if len(norms) else None,
        grad_norm_max=float(np.nanmax(norm_max)) if np.isfinite(norm_max).any() else None,
        rel_increment_posterior=_nan_to_none(
          _rel_increments(post, [*resolutions, resolutions[-1]])
        ),
        prior=per_t,
      )
    )
    if c.seed == cfg.seeds[0]:
      lab = f"ζ={zeta}" if zeta else "point mass"
      ratio = [np.nan if v is None else v for v in per_t["1.0"]["exposure_ratio"]]
      axes[0].plot(ratio, "o-", ms=3, label=lab)
      axes[1].plot(per_t["1.0"]["spread"], "o-", ms=3, label=lab)
      axes[2].plot(rows[-1]["kl_per_block"], "o-", ms=3, label=lab)
  resolutions = [r for r, _ in spec.dec_pairs]
  for ax, title in zip(
    axes,
    (
      "exposure ratio χ_i(τ=1) = RMS prior / RMS posterior",
      "state spread v_i (prior, τ=1)",
      "KL per block (nats/dim)",
    ),
    strict=True,
  ):
    _boundaries(ax, resolutions)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("top-down block i")
    ax.legend(fontsize=7)
  axes[1].set_yscale("log")
  summary = []
  for zeta in sorted({r["zeta"] for r in rows}):
    rs = [r for r in rows if r["zeta"] == zeta]
    m, sd = _mean_sd([r["bits_per_dim"] for r in rs])
    summary.append(
      dict(
        zeta=zeta,
        bits_per_dim_mean=m,
        bits_per_dim_sd=sd,
        skipped_mean=float(np.mean([r["skipped"] for r in rs])),
        exposure_ratio_t1_mean=float(np.mean([_finite_mean(r) for r in rs])),
        exposure_ratio_t1_max=float(np.max([_finite_max(r) for r in rs])),
        first_increment_post=_first_finite([r["rel_increment_posterior"] for r in rs]),
        nonfinite_t1=float(np.mean([r["prior"]["1.0"]["nonfinite_fraction"] for r in rs])),
        seeds=len(rs),
      )
    )
  payload = dict(
    rows=rows,
    summary=summary,
    data_haar_spectrum=data_spectrum,
    temperatures=list(cfg.temperatures),
  )
  _dump(cfg, workdir, "point_mass", payload, fig)
  return payload


def euler_runs(cfg) -> dict[str, ml_collections.ConfigDict]:
  runs = {}
  for i in cfg.euler_train:
    blocks = cfg.euler_eval_blocks[i]
    n = nn.presets.get("digits8", dec_blocks=blocks).n_applications
    runs[f"euler_n{n}"] = run_config(
      cfg,
      seed=cfg.seeds[0],
      share="full",
      step_size="explicit",
      shared_sigma=True,
      dec_blocks=blocks,
    )
  return runs


def run_euler(cfg, workdir: pathlib.Path) -> dict:
  rows = []
  grids = []
  for name, c in euler_runs(cfg).items():
    s = train_run(c, workdir, name)
    spec, model = ema_model(c, workdir, name)
    params = nnx.state(model, nnx.Param)
    source = hvae_train.open_splits(c)[hvae_train.splits(c)["eval"]]
    for blocks in cfg.euler_eval_blocks:
      other = spec.replace(dec_blocks=blocks)
      m = nn.HVAE(other, rngs=nnx.Rngs(0))
      nnx.update(m, params)  # one cell per resolution: the same parameter tree
      res = hvae_train.evaluate_split(c, other, m, source, key=jax.random.key(c.seed + 1))
      samples = _sample(m, jax.random.key(c.seed + 5), 8)
      grids.append((f"{name} → N'={other.n_applications}", np.asarray(samples)))
      rows.append(
        dict(
          trained=name,
          trained_applications=spec.n_applications,
          eval_applications=other.n_applications,
          bits_per_dim=res.bits_per_dim,
          distortion=res.distortion,
          rate=res.rate,
          train_eval_bits_per_dim=s["eval"]["bits_per_dim"],
        )
      )
      print(f"[claims] euler {rows[-1]}", flush=True)
  fig = plt.figure(figsize=(11, 4))
  ax = fig.add_subplot(1, 2, 1)
  for name in euler_runs(cfg):
    rs = [r for r in rows if r["trained"] == name]
    ax.plot(
      [r["eval_applications"] for r in rs],
      [r["bits_per_dim"] for r in rs],
      "o-",
      label=f"trained with {name}",
    )
  ax.set_xscale("log", base=2)
  ax.set_xlabel("applications N' at evaluation (same parameters)")
  ax.set_ylabel("test NLL bound (bits/dim)")
  ax.set_title("explicit step size: finer vs coarser Euler steps")
  ax.legend(fontsize=8)
  ax2 = fig.add_subplot(1, 2, 2)
  rows_img = [np.concatenate(list(g[:, :, :, 0]), axis=1) for _, g in grids]
  ax2.imshow(np.concatenate(rows_img, axis=0), cmap="gray", vmin=-1, vmax=1)
  ax2.set_yticks(
    [(i + 0.5) * grids[0][1].shape[1] for i in range(len(grids))], [g[0] for g in grids], fontsize=7
  )
  ax2.set_xticks([])
  ax2.set_title("samples at τ = 1")
  payload = dict(rows=rows, eval_blocks=list(cfg.euler_eval_blocks))
  _dump(cfg, workdir, "euler", payload, fig)
  return payload


RUNNERS = {
  "sharing": run_sharing,
  "time": run_time,
  "point_mass": run_point_mass,
  "euler": run_euler,
}


def train(cfg, workdir) -> None:
  """Runs every experiment in ``cfg.experiments`` (finished runs resume from ``workdir``)."""
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / "config.json").write_text(cfg.to_json(indent=1))
  for name in cfg.experiments:
    t0 = time.perf_counter()
    RUNNERS[name](cfg, workdir)
    print(f"[claims] {name}: {time.perf_counter() - t0:.0f} s", flush=True)


#: The modes ``python -m experiments.main --mode=...`` dispatches to.
MODES = {"train": train}
