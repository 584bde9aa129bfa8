r"""Runs the GHM / belief-propagation experiments E1-E4 (THEORY §7.7).

Usage::

  python -m experiments.main --config=experiments/ghm/config.py:e1 --workdir=/tmp/ghm_e1

The config is converted to keyword arguments here; the library never sees a ConfigDict. Each
experiment writes ``<name>.json`` (and a PNG figure) into ``config.results_dir`` (or the workdir
when that is empty) and ``config.json`` into the workdir.
"""

from __future__ import annotations

import json
import os
import pickle
import time

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from absl import logging
from flax import nnx

from mrflax import ghm as G
from mrflax.nn import tree_nets as TN
from mrflax.training import ghm as T

matplotlib.use("Agg")
import matplotlib.pyplot as plt

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _rhm(data, *, seed=None, L=None, m=None) -> G.GHM:
  return G.random_hierarchy_model(
    jax.random.key(data.rule_seed if seed is None else seed),
    v=data.v,
    n_classes=data.n_classes,
    m=data.m if m is None else m,
    s=data.s,
    L=data.L if L is None else L,
  )


def _mse(a, b) -> float:
  """Per-leaf squared error, averaged over examples and leaves."""
  return float(jnp.mean(jnp.sum(jnp.square(a - b), axis=-1)))


def _test_set(key, ghm, n, sigma):
  k1, k2 = jax.random.split(key)
  levels = G.sample_levels(k1, ghm, n)
  x = G.one_hot(levels[-1], ghm.v)
  return levels, x, G.add_noise(k2, x, sigma=sigma)


def _bp_stats(ghm, levels, x, z, sigma) -> tuple[dict, jax.Array]:
  """BP MMSE, local baselines, BP root accuracy / cross-entropy / P(root kept)."""
  d_star = G.leaf_posteriors(ghm, z, sigma=sigma)
  prior = G.prior_marginals(ghm)[-1]
  local_pos = G.local_denoiser(jnp.log(prior), z, sigma=sigma)
  local_pool = G.local_denoiser(jnp.log(prior.mean(0)), z, sigma=sigma)
  post = G.root_posterior(ghm, z, sigma=sigma)
  p_true = jnp.take_along_axis(post, levels[0][:, None], axis=-1)[:, 0]
  stats = dict(
    mmse_bp=_mse(x, d_star),
    mse_local_pos=_mse(x, local_pos),
    mse_local_pool=_mse(x, local_pool),
    bp_root_acc=float(jnp.mean(jnp.argmax(post, -1) == levels[0])),
    bp_root_ce=float(-jnp.mean(jnp.log(jnp.maximum(p_true, 1e-30)))),
    p_root_kept_exact=float(jnp.mean(p_true)),
  )
  return stats, d_star


def _unet(cfg, ghm, seed, **overrides) -> TN.BPUNet:
  kw = dict(width=cfg.model.width) | overrides
  return TN.BPUNet(v=ghm.v, s=ghm.s, L=ghm.L, rngs=nnx.Rngs(seed), **kw)


def _train_unet(
  cfg, ghm, key, *, train_leaves=None, sigma_min=None, sigma_max=None, steps=None, **overrides
):
  net = _unet(cfg, ghm, cfg.seed, **overrides)
  t0 = time.perf_counter()
  net, hist = T.train_denoiser(
    key,
    ghm,
    net,
    steps=cfg.train.steps if steps is None else steps,
    batch_size=cfg.train.batch_size,
    learning_rate=cfg.optim.learning_rate,
    warmup_steps=cfg.optim.warmup_steps,
    sigma_min=cfg.train.sigma_min if sigma_min is None else sigma_min,
    sigma_max=cfg.train.sigma_max if sigma_max is None else sigma_max,
    train_leaves=train_leaves,
    steps_per_call=cfg.train.steps_per_call,
  )
  return net, hist, time.perf_counter() - t0


def _history(hist: T.History, every: int = 5) -> dict:
  return dict(step=hist.step[::every], loss=[round(x, 5) for x in hist.loss[::every]])


def _out_dir(cfg, workdir) -> str:
  out = cfg.results_dir or workdir
  os.makedirs(out, exist_ok=True)
  return out


def _dump(cfg, workdir, name, payload) -> None:
  out = _out_dir(cfg, workdir)
  payload = dict(payload, config=json.loads(cfg.to_json()), backend=jax.default_backend())
  for d in {out, workdir}:
    with open(os.path.join(d, f"{name}.json"), "w") as f:
      json.dump(payload, f, indent=1)
  logging.info("wrote %s", os.path.join(out, f"{name}.json"))


def _save_fig(fig, cfg, workdir, name) -> None:
  fig.tight_layout()
  fig.savefig(os.path.join(_out_dir(cfg, workdir), f"{name}.png"), dpi=90)
  plt.close(fig)


# ---------------------------------------------------------------------------------------------
# E1: U-Net denoiser vs BP
# ---------------------------------------------------------------------------------------------


def run_e1(cfg, workdir) -> None:
  t_start = time.perf_counter()
  ghm = _rhm(cfg.data)
  key = jax.random.key(cfg.seed)
  k_train, k_test, k_sets = jax.random.split(key, 3)
  net, hist, train_s = _train_unet(cfg, ghm, k_train)
  unet = T.pure_denoiser(net)
  n = cfg.eval.n_test

  finite = {}
  for n_train in cfg.e1.n_train_unet:
    train = G.sample(jax.random.fold_in(k_sets, n_train), ghm, n_train)
    finite[n_train] = (train, *_train_unet(cfg, ghm, k_train, train_leaves=train))
  memorise_sets = {
    n_train: G.sample(jax.random.fold_in(k_sets, n_train), ghm, n_train)
    for n_train in cfg.e1.n_train_memorise
  }

  rows = []
  for i, sigma in enumerate(cfg.eval.sigmas):
    levels, x, z = _test_set(jax.random.fold_in(k_test, i), ghm, n, sigma)
    stats, d_star = _bp_stats(ghm, levels, x, z, sigma)
    f = T.predict(unet, z, jnp.full((n,), sigma))
    row = dict(sigma=sigma, mse_unet=_mse(x, f), **stats)
    row["mse_local"] = row["mse_local_pool"]
    row["excess_unet"] = _mse(f, d_star)
    row["pythagoras_residual"] = row["mse_unet"] - row["mmse_bp"] - row["excess_unet"]
    for base in ("pos", "pool"):
      gap = row[f"mse_local_{base}"] - row["mmse_bp"]
      row[f"gap_frac_{base}"] = (row[f"mse_local_{base}"] - row["mse_unet"]) / gap
    for n_train, (_, fnet, _, _) in finite.items():
      ff = T.predict(T.pure_denoiser(fnet), z, jnp.full((n,), sigma))
      row[f"mse_unet_n{n_train}"] = _mse(x, ff)
      row[f"excess_unet_n{n_train}"] = _mse(ff, d_star)
    for n_train, train in memorise_sets.items():
      row[f"mse_memorise_n{n_train}"] = _mse(x, G.empirical_bayes_denoiser(train, z, sigma=sigma))
    rows.append(row)
    logging.info("E1 %s", {k: round(v, 4) for k, v in row.items()})

  # BP and local baselines over independent rule sets (THEORY §7.6 table)
  per_set = {k: [] for k in ("mmse_bp", "mse_local_pos", "mse_local_pool", "bp_root_acc")}
  per_set["bp_root_ce"], per_set["p_root_kept_exact"] = [], []
  for r in range(cfg.eval.n_rule_sets_bp):
    g = _rhm(cfg.data, seed=1000 + r)
    cols = {k: [] for k in per_set}
    for i, sigma in enumerate(cfg.eval.sigmas):
      levels, x, z = _test_set(jax.random.fold_in(k_test, 100 * r + i), g, n, sigma)
      stats, _ = _bp_stats(g, levels, x, z, sigma)
      for k in per_set:
        cols[k].append(stats[k])
    for k in per_set:
      per_set[k].append(cols[k])
  rule_sets = {
    k: dict(mean=np.mean(v, 0).round(4).tolist(), sd=np.std(v, 0).round(4).tolist())
    for k, v in per_set.items()
  }

  payload = dict(
    rows=rows,
    bp_over_rule_sets=dict(sigmas=list(cfg.eval.sigmas), n=cfg.eval.n_rule_sets_bp, **rule_sets),
    n_params=TN.count_params(net),
    train_seconds=round(train_s, 1),
    train_seconds_finite={str(k): round(v[3], 1) for k, v in finite.items()},
    history=_history(hist),
    wall_seconds=round(time.perf_counter() - t_start, 1),
  )
  _dump(cfg, workdir, "e1_denoising", payload)

  sig = [r["sigma"] for r in rows]
  fig, ax = plt.subplots(1, 2, figsize=(10, 4))
  for key_, label, style in [
    ("mse_local_pool", "local-pool", "k:"),
    ("mse_local_pos", "local-pos", "k--"),
    ("mmse_bp", "BP (MMSE)", "k-"),
    ("mse_unet", "U-Net (online)", "C0o-"),
  ] + [(f"mse_unet_n{k}", f"U-Net n_train={k}", "C1s-") for k in finite]:
    ax[0].plot(sig, [r[key_] for r in rows], style, label=label)
  for j, k in enumerate(memorise_sets):
    ax[0].plot(
      sig, [r[f"mse_memorise_n{k}"] for r in rows], f"C{j + 2}x--", lw=0.8, label=f"memorise n={k}"
    )
  ax[0].set(xlabel="σ", ylabel="MSE per leaf", title="E1: denoising MSE", xscale="log")
  ax[0].legend(fontsize=7)
  ax[1].plot(sig, [r["excess_unet"] for r in rows], "C0o-", label="U-Net online")
  for k in finite:
    ax[1].plot(sig, [r[f"excess_unet_n{k}"] for r in rows], "C1s-", label=f"U-Net n={k}")
  ax[1].plot(sig, [r["mse_local_pos"] - r["mmse_bp"] for r in rows], "k--", label="local-pos gap")
  ax[1].set(xlabel="σ", ylabel="E|f - D*|²", title="excess over BP", xscale="log", yscale="log")
  ax[1].legend(fontsize=7)
  _save_fig(fig, cfg, workdir, "e1_denoising")


def _parse_override(spec: str) -> dict:
  """``"skips=False"`` -> ``{"skips": False}``; ``"full"`` -> ``{}``."""
  if spec == "full":
    return {}
  name, value = spec.split("=")
  return {name: {"False": False, "True": True}.get(value, value)}


def run_e1_ablations(cfg, workdir) -> None:
  t_start = time.perf_counter()
  ghm = _rhm(cfg.data)
  k_train, k_test, _ = jax.random.split(jax.random.key(cfg.seed), 3)
  n = cfg.eval.n_test
  tests = []
  for i, sigma in enumerate(cfg.eval.sigmas):
    levels, x, z = _test_set(jax.random.fold_in(k_test, i), ghm, n, sigma)
    stats, d_star = _bp_stats(ghm, levels, x, z, sigma)
    tests.append((sigma, x, z, d_star, stats))
  results = {}
  for spec in cfg.e1.ablations:
    net, _, secs = _train_unet(
      cfg, ghm, k_train, steps=cfg.e1.ablation_steps, **_parse_override(spec)
    )
    rows = []
    for sigma, x, z, d_star, stats in tests:
      f = T.predict(T.pure_denoiser(net), z, jnp.full((n,), sigma))
      gap = stats["mse_local_pos"] - stats["mmse_bp"]
      rows.append(
        dict(
          sigma=sigma,
          mse=_mse(x, f),
          excess=_mse(f, d_star),
          gap_frac_pos=(stats["mse_local_pos"] - _mse(x, f)) / gap,
          **stats,
        )
      )
    results[spec] = dict(rows=rows, n_params=TN.count_params(net), train_seconds=round(secs, 1))
    logging.info("E1 ablation %s: %s", spec, [round(r["excess"], 4) for r in rows])
  _dump(
    cfg,
    workdir,
    "e1_ablations",
    dict(results=results, wall_seconds=round(time.perf_counter() - t_start, 1)),
  )
  fig, ax = plt.subplots(figsize=(6, 4))
  for spec, res in results.items():
    ax.plot([r["sigma"] for r in res["rows"]], [r["excess"] for r in res["rows"]], "o-", label=spec)
  rows0 = next(iter(results.values()))["rows"]
  ax.plot(
    [r["sigma"] for r in rows0],
    [r["mse_local_pos"] - r["mmse_bp"] for r in rows0],
    "k--",
    label="local-pos gap",
  )
  ax.set(xlabel="σ", ylabel="E|f - D*|²", xscale="log", yscale="log", title="E1 ablations")
  ax.legend(fontsize=7)
  _save_fig(fig, cfg, workdir, "e1_ablations")


def _e1_tests(cfg, ghm, k_test) -> list:
  """The E1 test sets (same keys as :func:`run_e1`): ``(sigma, x, z, D*, BP stats)`` per σ."""
  tests = []
  for i, sigma in enumerate(cfg.eval.sigmas):
    levels, x, z = _test_set(jax.random.fold_in(k_test, i), ghm, cfg.eval.n_test, sigma)
    stats, d_star = _bp_stats(ghm, levels, x, z, sigma)
    tests.append((sigma, x, z, d_star, stats))
  return tests


def _gap_frac(stats, mse) -> float:
  return (stats["mse_local_pos"] - mse) / (stats["mse_local_pos"] - stats["mmse_bp"])


def run_e1_ntrain(cfg, workdir) -> None:
  """E1 sample-size sweep: U-Net on fixed training sets vs the memorising denoiser (same set)."""
  t_start = time.perf_counter()
  ghm = _rhm(cfg.data)
  k_train, k_test, k_sets = jax.random.split(jax.random.key(cfg.seed), 3)
  tests = _e1_tests(cfg, ghm, k_test)
  k_fresh = jax.random.fold_in(k_test, 999)
  results = {}
  for n_train in cfg.e1.n_train_sweep:
    train = G.sample(jax.random.fold_in(k_sets, n_train), ghm, n_train)
    net, hist, secs = _train_unet(cfg, ghm, k_train, train_leaves=train, steps=cfg.e1.sweep_steps)
    unet = T.pure_denoiser(net)
    x_tr = G.one_hot(train[: cfg.eval.n_test], ghm.v)
    rows = []
    for j, (sigma, x, z, d_star, stats) in enumerate(tests):
      n = z.shape[0]
      f = T.predict(unet, z, jnp.full((n,), sigma))
      mem = G.empirical_bayes_denoiser(train, z, sigma=sigma)
      # the same U-Net on (freshly noised) training sequences: generalisation gap
      z_tr = G.add_noise(jax.random.fold_in(k_fresh, j), x_tr, sigma=sigma)
      f_tr = T.predict(unet, z_tr, jnp.full((z_tr.shape[0],), sigma))
      row = dict(
        sigma=sigma,
        mse_unet=_mse(x, f),
        excess_unet=_mse(f, d_star),
        mse_unet_trainset=_mse(x_tr, f_tr),
        mse_memorise=_mse(x, mem),
        excess_memorise=_mse(mem, d_star),
        **{k: stats[k] for k in ("mmse_bp", "mse_local_pos", "mse_local_pool")},
      )
      row["gap_frac_pos_unet"] = _gap_frac(stats, row["mse_unet"])
      row["gap_frac_pos_memorise"] = _gap_frac(stats, row["mse_memorise"])
      rows.append(row)
    results[str(n_train)] = dict(
      rows=rows, train_seconds=round(secs, 1), final_train_loss=round(hist.loss[-1], 5)
    )
    logging.info(
      "E1 n_train=%d: unet %s memorise %s",
      n_train,
      [round(r["mse_unet"], 4) for r in rows],
      [round(r["mse_memorise"], 4) for r in rows],
    )
  _dump(
    cfg,
    workdir,
    "e1_ntrain",
    dict(
      results=results,
      steps=cfg.e1.sweep_steps,
      n_params=TN.count_params(net),
      wall_seconds=round(time.perf_counter() - t_start, 1),
    ),
  )

  ns = [int(k) for k in results]
  fig, ax = plt.subplots(1, 2, figsize=(10, 4))
  for j, (sigma, *_rest, stats) in enumerate(tests):
    if sigma not in (0.5, 0.75, 1.0, 1.5) and len(tests) > 2:
      continue
    c = f"C{j}"
    ax[0].plot(
      ns, [results[str(k)]["rows"][j]["mse_unet"] for k in ns], c + "o-", label=f"U-Net σ={sigma}"
    )
    ax[0].plot(ns, [results[str(k)]["rows"][j]["mse_memorise"] for k in ns], c + "x--", lw=0.8)
    ax[0].axhline(stats["mmse_bp"], color=c, ls="-", lw=0.5)
    ax[0].axhline(stats["mse_local_pos"], color=c, ls=":", lw=0.8)
    ax[1].plot(
      ns,
      [results[str(k)]["rows"][j]["excess_unet"] for k in ns],
      c + "o-",
      label=f"U-Net σ={sigma}",
    )
    ax[1].plot(
      ns,
      [results[str(k)]["rows"][j]["excess_memorise"] for k in ns],
      c + "x--",
      lw=0.8,
      label=f"memorise σ={sigma}",
    )
  ax[0].set(
    xlabel="n_train",
    ylabel="MSE per leaf",
    xscale="log",
    title="E1 n_train: U-Net (o), memorise (x), BP (—), local-pos (:)",
  )
  ax[0].title.set_fontsize(8)
  ax[0].legend(fontsize=7)
  ax[1].set(
    xlabel="n_train", ylabel="E|f - D*|²", xscale="log", yscale="log", title="excess over BP"
  )
  ax[1].legend(fontsize=6)
  _save_fig(fig, cfg, workdir, "e1_ntrain")


def run_e1_width(cfg, workdir) -> None:
  """E1 width sweep: online U-Net at several widths, evaluated like E1."""
  t_start = time.perf_counter()
  ghm = _rhm(cfg.data)
  k_train, k_test, _ = jax.random.split(jax.random.key(cfg.seed), 3)
  tests = _e1_tests(cfg, ghm, k_test)
  results = {}
  for width in cfg.e1.widths:
    net, _, secs = _train_unet(cfg, ghm, k_train, steps=cfg.e1.width_steps, width=width)
    rows = []
    for sigma, x, z, d_star, stats in tests:
      f = T.predict(T.pure_denoiser(net), z, jnp.full((z.shape[0],), sigma))
      rows.append(
        dict(
          sigma=sigma,
          mse=_mse(x, f),
          excess=_mse(f, d_star),
          gap_frac_pos=_gap_frac(stats, _mse(x, f)),
          **stats,
        )
      )
    results[str(width)] = dict(
      rows=rows, n_params=TN.count_params(net), train_seconds=round(secs, 1)
    )
    logging.info("E1 width %d: %s", width, [round(r["excess"], 4) for r in rows])
  _dump(
    cfg,
    workdir,
    "e1_width",
    dict(
      results=results,
      steps=cfg.e1.width_steps,
      wall_seconds=round(time.perf_counter() - t_start, 1),
    ),
  )
  fig, ax = plt.subplots(figsize=(6, 4))
  for w, res in results.items():
    ax.plot(
      [r["sigma"] for r in res["rows"]],
      [r["excess"] for r in res["rows"]],
      "o-",
      label=f"width {w}",
    )
  rows0 = next(iter(results.values()))["rows"]
  ax.plot(
    [r["sigma"] for r in rows0],
    [r["mse_local_pos"] - r["mmse_bp"] for r in rows0],
    "k--",
    label="local-pos gap",
  )
  ax.set(xlabel="σ", ylabel="E|f - D*|²", xscale="log", yscale="log", title="E1 width sweep")
  ax.legend(fontsize=7)
  _save_fig(fig, cfg, workdir, "e1_width")


def _unet_reference(cfg, workdir, width: int = 64) -> dict | None:
  """The width-``width`` rows of ``e1_width.json`` if its data, steps and σ grid match ``cfg``."""
  for d in (cfg.results_dir, workdir):
    path = os.path.join(d, "e1_width.json") if d else ""
    if not path or not os.path.exists(path):
      continue
    with open(path) as f:
      ref = json.load(f)
    c = ref.get("config", {})
    same = (
      c.get("data") == cfg.data.to_dict()
      and ref.get("steps") == cfg.e1.exact_bp_steps
      and c.get("train", {}).get("batch_size") == cfg.train.batch_size
      and tuple(c.get("eval", {}).get("sigmas", ())) == tuple(cfg.eval.sigmas)
      and c.get("eval", {}).get("n_test") == cfg.eval.n_test
      and c.get("seed") == cfg.seed
    )
    if same and str(width) in ref["results"]:
      return dict(ref["results"][str(width)], source=path, width=width)
  return None


def run_e1_exact_bp(cfg, workdir) -> None:
  """E1 exact-BP layer variant: BP with learnable tables (contains D*) vs BP and the U-Net."""
  t_start = time.perf_counter()
  ghm = _rhm(cfg.data)
  k_train, k_test, _ = jax.random.split(jax.random.key(cfg.seed), 3)
  tests = _e1_tests(cfg, ghm, k_test)

  def make():
    return TN.ExactBPDenoiser(
      v=ghm.v, n_classes=ghm.n_classes, s=ghm.s, L=ghm.L, rngs=nnx.Rngs(cfg.seed)
    )

  def evaluate(net):
    rows = []
    for sigma, x, z, d_star, stats in tests:
      f = T.predict(T.pure_denoiser(net), z, jnp.full((z.shape[0],), sigma))
      mse = _mse(x, f)
      gap_pool = (stats["mse_local_pool"] - mse) / (stats["mse_local_pool"] - stats["mmse_bp"])
      rows.append(
        dict(
          sigma=sigma,
          mse=mse,
          excess=_mse(f, d_star),
          gap_frac_pos=_gap_frac(stats, mse),
          gap_frac_pool=gap_pool,
          **stats,
        )
      )
    return rows

  # sanity check: the model class contains D* (true tables loaded -> excess ~ 0)
  oracle = make()
  oracle.set_tables(ghm)
  true_rows = evaluate(oracle)
  results = {}
  for lr in cfg.e1.exact_bp_lrs:
    net = make()
    t0 = time.perf_counter()
    net, hist = T.train_denoiser(
      k_train,
      ghm,
      net,
      steps=cfg.e1.exact_bp_steps,
      batch_size=cfg.train.batch_size,
      learning_rate=lr,
      warmup_steps=cfg.optim.warmup_steps,
      sigma_min=cfg.train.sigma_min,
      sigma_max=cfg.train.sigma_max,
      steps_per_call=cfg.train.steps_per_call,
    )
    secs = time.perf_counter() - t0
    learned = net.ghm()
    results[f"{lr:g}"] = dict(
      learning_rate=lr,
      rows=evaluate(net),
      train_seconds=round(secs, 1),
      final_train_loss=round(hist.loss[-1], 5),
      history=_history(hist),
      # how close to a sparse (RHM-like) grammar the learned tables are: the mass of each row's
      # top m child tuples, averaged over rows and levels (1.0 for the true RHM)
      top_m_mass=float(
        np.mean(
          [
            np.sort(np.asarray(t), axis=-1)[:, -cfg.data.m :].sum(-1).mean()
            for t in learned.kernels
          ]
        )
      ),
    )
    logging.info(
      "E1 exact-BP lr=%g (%.0f s): excess %s",
      lr,
      secs,
      [round(r["excess"], 4) for r in results[f"{lr:g}"]["rows"]],
    )
  unet = _unet_reference(cfg, workdir)
  _dump(
    cfg,
    workdir,
    "e1_exact_bp",
    dict(
      results=results,
      true_tables_rows=[dict(sigma=r["sigma"], excess=r["excess"]) for r in true_rows],
      unet_width64=unet,
      steps=cfg.e1.exact_bp_steps,
      n_params=TN.count_params(oracle),
      wall_seconds=round(time.perf_counter() - t_start, 1),
    ),
  )
  fig, ax = plt.subplots(figsize=(6, 4))
  sig = [r["sigma"] for r in true_rows]
  for lr, res in results.items():
    ax.plot(sig, [r["excess"] for r in res["rows"]], "o-", label=f"exact-BP layers, lr {lr}")
  if unet is not None:
    ax.plot(sig, [r["excess"] for r in unet["rows"]], "s--", label="U-Net width 64")
  rows0 = next(iter(results.values()))["rows"] if results else []
  if rows0:
    ax.plot(sig, [r["mse_local_pos"] - r["mmse_bp"] for r in rows0], "k:", label="local-pos gap")
  ax.plot(
    sig,
    [max(r["excess"], 1e-12) for r in true_rows],
    "kx",
    label="true tables loaded (clipped at 1e-12)",
  )
  ax.set(xlabel="σ", ylabel="E|f - D*|²", xscale="log", yscale="log", title="E1 exact-BP layers")
  ax.legend(fontsize=7)
  _save_fig(fig, cfg, workdir, "e1_exact_bp")


# ---------------------------------------------------------------------------------------------
# E2: ConvNet classifier vs BP
# ---------------------------------------------------------------------------------------------


def _classifier(cfg, ghm, key, *, sigma, steps, train=None):
  net = TN.ConvNetClassifier(
    v=ghm.v,
    n_classes=ghm.n_classes,
    s=ghm.s,
    L=ghm.L,
    width=cfg.model.width,
    rngs=nnx.Rngs(cfg.seed),
  )
  t0 = time.perf_counter()
  net, hist = T.train_classifier(
    key,
    ghm,
    net,
    sigma=sigma,
    steps=steps,
    batch_size=cfg.train.batch_size,
    learning_rate=cfg.optim.learning_rate,
    warmup_steps=cfg.optim.warmup_steps,
    train_leaves=None if train is None else train[-1],
    train_labels=None if train is None else train[0],
    steps_per_call=cfg.train.steps_per_call,
  )
  return net, hist, time.perf_counter() - t0


def _clf_eval(net, levels, z, sigma):
  logits = T.predict(T.pure_logits(net), z, jnp.full((z.shape[0],), sigma if sigma > 0 else 1.0))
  logp = jax.nn.log_softmax(logits)
  y = levels[0]
  return dict(
    acc=float(jnp.mean(jnp.argmax(logits, -1) == y)),
    ce=float(-jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=-1))),
  )


def run_e2(cfg, workdir) -> None:
  t_start = time.perf_counter()
  ghm = _rhm(cfg.data)
  key = jax.random.key(cfg.seed)
  k_train, k_test, k_sets = jax.random.split(key, 3)
  n = cfg.eval.n_test
  noisy = []
  for i, sigma in enumerate(cfg.e2.sigmas):
    levels, x, z = _test_set(jax.random.fold_in(k_test, i), ghm, n, sigma)
    stats, _ = _bp_stats(ghm, levels, x, z, sigma)
    net, _, secs = _classifier(cfg, ghm, k_train, sigma=sigma, steps=cfg.e2.steps)
    row = dict(
      sigma=sigma,
      n_train="online",
      train_seconds=round(secs, 1),
      bp_acc=stats["bp_root_acc"],
      bp_ce=stats["bp_root_ce"],
      **_clf_eval(net, levels, z, sigma),
    )
    if sigma == cfg.e2.n_train_sigma:
      for n_train in cfg.e2.n_train:
        train = G.sample_levels(jax.random.fold_in(k_sets, n_train), ghm, n_train)
        fnet, _, _fsecs = _classifier(
          cfg, ghm, k_train, sigma=sigma, steps=cfg.e2.steps, train=train
        )
        res = _clf_eval(fnet, levels, z, sigma)
        row[f"acc_n{n_train}"], row[f"ce_n{n_train}"] = res["acc"], res["ce"]
    noisy.append(row)
    logging.info("E2 %s", row)

  clean = []
  for m in cfg.e2.clean_ms:
    g = _rhm(cfg.data, m=m, L=cfg.e2.clean_L)
    support = cfg.data.n_classes * m**cfg.e2.clean_L
    levels, x, _ = _test_set(jax.random.fold_in(k_test, 77 + m), g, n, 0.0)
    for ratio in cfg.e2.clean_ratios:
      n_train = max(int(ratio * support), 1)
      train = G.sample_levels(jax.random.fold_in(k_sets, 1000 * m + n_train), g, n_train)
      net, _, secs = _classifier(cfg, g, k_train, sigma=0.0, steps=cfg.e2.clean_steps, train=train)
      res = _clf_eval(net, levels, x, 0.0)
      clean.append(
        dict(
          m=m,
          L=cfg.e2.clean_L,
          n_train=n_train,
          ratio=ratio,
          test_error=1 - res["acc"],
          ce=res["ce"],
          train_seconds=round(secs, 1),
        )
      )
      logging.info("E2 clean %s", clean[-1])

  _dump(
    cfg,
    workdir,
    "e2_classification",
    dict(noisy=noisy, clean=clean, wall_seconds=round(time.perf_counter() - t_start, 1)),
  )
  fig, ax = plt.subplots(1, 2, figsize=(10, 4))
  sig = [r["sigma"] for r in noisy]
  ax[0].plot(sig, [r["bp_acc"] for r in noisy], "k-o", label="BP (Bayes)")
  ax[0].plot(sig, [r["acc"] for r in noisy], "C0-s", label="ConvNet online")
  for n_train in cfg.e2.n_train:
    pts = [(r["sigma"], r[f"acc_n{n_train}"]) for r in noisy if f"acc_n{n_train}" in r]
    if pts:
      ax[0].plot(*zip(*pts, strict=True), "C1^", label=f"ConvNet n_train={n_train}")
  ax[0].axhline(1 / cfg.data.n_classes, color="gray", ls=":", label="chance")
  ax[0].set(xlabel="σ", ylabel="root accuracy", title="E2: classification")
  ax[0].legend(fontsize=7)
  for j, m in enumerate(cfg.e2.clean_ms):
    pts = [(r["ratio"], r["test_error"]) for r in clean if r["m"] == m]
    ax[1].plot(*zip(*pts, strict=True), f"C{j}o-", label=f"m={m}")
  ax[1].set(
    xlabel="n_train / (n_c m^L)",
    ylabel="test error (clean)",
    xscale="log",
    title=f"clean, L={cfg.e2.clean_L}",
  )
  ax[1].legend(fontsize=7)
  _save_fig(fig, cfg, workdir, "e2_classification")


# ---------------------------------------------------------------------------------------------
# E3: diffusion sampling (oracle BP score vs U-Net)
# ---------------------------------------------------------------------------------------------


def _sample_metrics(ghm, x, train=None) -> dict:
  p = G.parse(ghm, x)
  valid = np.asarray(p.valid)
  full = valid[:, -1]
  roots = np.asarray(p.root)[full]
  hist = np.bincount(roots, minlength=ghm.n_classes) / max(len(roots), 1)
  rows = {tuple(r) for r in np.asarray(x).tolist()}
  out = dict(
    validity_per_level=valid.mean(0).round(4).tolist(),
    root_tv=round(float(0.5 * np.abs(hist - 1 / ghm.n_classes).sum()), 4),
    distinct_fraction=round(len(rows) / x.shape[0], 4),
  )
  if train is not None:
    seen = {tuple(r) for r in np.asarray(train).tolist()}
    out["copy_fraction"] = round(
      float(np.mean([tuple(r) in seen for r in np.asarray(x).tolist()])), 4
    )
  return out


def _save_net(net, path) -> None:
  with open(path, "wb") as f:
    pickle.dump(jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(net))), f)


def _load_net(net, path):
  with open(path, "rb") as f:
    pure = pickle.load(f)
  state = nnx.state(net)
  nnx.replace_by_pure_dict(state, pure)
  nnx.update(net, state)
  return net


def _e3_unet(cfg, ghm, workdir, unet_dir=""):
  for d in (unet_dir, workdir):
    path = os.path.join(d, "e3_unet.pkl") if d else ""
    if path and os.path.exists(path):
      logging.info("loading the E3 U-Net from %s", path)
      return _load_net(_unet(cfg, ghm, cfg.seed), path), None
  net, _, secs = _train_unet(
    cfg,
    ghm,
    jax.random.key(cfg.seed + 3),
    sigma_min=cfg.e3.sigma_min,
    sigma_max=cfg.e3.sigma_max,
    steps=cfg.e3.steps,
  )
  _save_net(net, os.path.join(workdir, "e3_unet.pkl"))
  return net, secs


def run_e3(cfg, workdir) -> None:
  t_start = time.perf_counter()
  ghm = _rhm(cfg.data)
  net, train_s = _e3_unet(cfg, ghm, workdir)
  denoisers = dict(
    oracle=lambda z, s: G.leaf_posteriors(ghm, z, sigma=s), unet=T.pure_denoiser(net)
  )
  key = jax.random.key(cfg.seed + 30)
  n = cfg.e3.n_samples
  rows = []
  for K in cfg.e3.Ks:
    sigmas = G.ve_sigma_grid(
      K=K, sigma_max=cfg.e3.sampler_sigma_max, sigma_min=cfg.e3.sampler_sigma_min
    )
    z0 = sigmas[0] * jax.random.normal(jax.random.fold_in(key, K), (n, *ghm.leaf_shape, ghm.v))
    for name, d in denoisers.items():
      t0 = time.perf_counter()
      zk = jax.jit(lambda k, z, d=d, sigmas=sigmas: G.reverse_ve(k, d, z, sigmas))(
        jax.random.fold_in(key, K + 1), z0
      )
      x = G.decode(d, zk, float(sigmas[-1]))
      row = dict(
        sampler=name, K=K, seconds=round(time.perf_counter() - t0, 1), **_sample_metrics(ghm, x)
      )
      rows.append(row)
      logging.info("E3 %s", row)
  _dump(
    cfg,
    workdir,
    "e3_diffusion",
    dict(rows=rows, train_seconds=train_s, wall_seconds=round(time.perf_counter() - t_start, 1)),
  )
  fig, ax = plt.subplots(figsize=(6, 4))
  for r in rows:
    style = "-" if r["sampler"] == "oracle" else "--"
    lv = np.arange(1, len(r["validity_per_level"]) + 1)
    ax.plot(lv, r["validity_per_level"], style + "o", label=f"{r['sampler']} K={r['K']}")
  ax.set(xlabel="parse steps k (bottom → top)", ylabel="validity", title="E3: diffusion samples")
  ax.legend(fontsize=7)
  _save_fig(fig, cfg, workdir, "e3_diffusion")


def run_e3_ntrain(cfg, workdir) -> None:
  """E3 with U-Nets trained on fixed sets: validity, root TV, distinct and copy fractions."""
  t_start = time.perf_counter()
  ghm = _rhm(cfg.data)
  key = jax.random.key(cfg.seed + 30)
  k_sets = jax.random.key(cfg.seed + 31)
  n, K = cfg.e3.n_samples, cfg.e3.sweep_K
  sigmas = G.ve_sigma_grid(
    K=K, sigma_max=cfg.e3.sampler_sigma_max, sigma_min=cfg.e3.sampler_sigma_min
  )
  z0 = sigmas[0] * jax.random.normal(jax.random.fold_in(key, K), (n, *ghm.leaf_shape, ghm.v))
  train_sets = {
    n_train: G.sample(jax.random.fold_in(k_sets, n_train), ghm, n_train)
    for n_train in cfg.e3.n_train_sweep
  }
  seen = {k: {tuple(r) for r in np.asarray(v).tolist()} for k, v in train_sets.items()}
  runs = [("oracle", None)] + ([("online", None)] if cfg.e3.sweep_online else [])
  runs += [(f"n{k}", k) for k in cfg.e3.n_train_sweep]
  rows = []
  for name, n_train in runs:
    train_s = None
    if name == "oracle":
      d = lambda z, s: G.leaf_posteriors(ghm, z, sigma=s)
    else:
      net, _, train_s = _train_unet(
        cfg,
        ghm,
        jax.random.key(cfg.seed + 3),
        sigma_min=cfg.e3.sigma_min,
        sigma_max=cfg.e3.sigma_max,
        steps=cfg.e3.sweep_steps,
        train_leaves=None if n_train is None else train_sets[n_train],
      )
      d = T.pure_denoiser(net)
    t0 = time.perf_counter()
    zk = jax.jit(lambda k, z, d=d: G.reverse_ve(k, d, z, sigmas))(
      jax.random.fold_in(key, K + 1), z0
    )
    x = G.decode(d, zk, float(sigmas[-1]))
    rows_x = [tuple(r) for r in np.asarray(x).tolist()]
    copy_vs = {str(k): round(float(np.mean([r in s for r in rows_x])), 4) for k, s in seen.items()}
    m = _sample_metrics(ghm, x, None if n_train is None else train_sets[n_train])
    full = np.asarray(G.parse(ghm, x).valid)[:, -1]
    own = seen.get(n_train, set())
    novel_valid = float(np.mean(full & np.array([r not in own for r in rows_x])))
    row = dict(
      sampler=name,
      n_train=n_train if n_train is not None else name,
      K=K,
      train_seconds=None if train_s is None else round(train_s, 1),
      sample_seconds=round(time.perf_counter() - t0, 1),
      **m,
      valid_novel_fraction=round(novel_valid, 4),
      copy_fraction_vs_sets=copy_vs,
    )
    rows.append(row)
    logging.info("E3 n_train %s", row)
  _dump(
    cfg,
    workdir,
    "e3_ntrain",
    dict(
      rows=rows,
      steps=cfg.e3.sweep_steps,
      support_size=int(ghm.n_classes * cfg.data.m ** sum(ghm.s**i for i in range(ghm.L))),
      wall_seconds=round(time.perf_counter() - t_start, 1),
    ),
  )
  fig, ax = plt.subplots(1, 2, figsize=(10, 4))
  for j, r in enumerate(rows):
    lv = np.arange(1, len(r["validity_per_level"]) + 1)
    style = "k-o" if r["sampler"] == "oracle" else f"C{j}--o"
    ax[0].plot(lv, r["validity_per_level"], style, label=r["sampler"])
  ax[0].set(xlabel="parse steps k (bottom → top)", ylabel="validity", title=f"E3 n_train, K={K}")
  ax[0].legend(fontsize=7)
  names = [r["sampler"] for r in rows]
  xs = np.arange(len(rows))
  ax[1].bar(xs - 0.25, [r["validity_per_level"][-1] for r in rows], 0.25, label="fully valid")
  ax[1].bar(xs, [r.get("copy_fraction", 0.0) for r in rows], 0.25, label="copy (own set)")
  oracle = rows[0]["copy_fraction_vs_sets"]
  ax[1].bar(
    xs + 0.25,
    [oracle.get(str(r["n_train"]), 0.0) for r in rows],
    0.25,
    label="oracle samples in that set",
  )
  ax[1].set_xticks(xs, names)
  ax[1].set(ylabel="fraction", title="validity and copies")
  ax[1].legend(fontsize=7)
  _save_fig(fig, cfg, workdir, "e3_ntrain")


# ---------------------------------------------------------------------------------------------
# E4: forward-backward
# ---------------------------------------------------------------------------------------------


def run_e4(cfg, workdir) -> None:
  t_start = time.perf_counter()
  key = jax.random.key(cfg.seed + 40)
  n = cfg.e4.n_test
  exact = []
  for L in cfg.e4.Ls:
    for r in range(cfg.e4.n_rule_sets):
      g = _rhm(cfg.data, seed=cfg.data.rule_seed + r, L=L)
      for i, sig_t in enumerate(cfg.e4.sigma_ts):
        levels, _, z = _test_set(jax.random.fold_in(key, 1000 * L + 10 * r + i), g, n, sig_t)
        post = G.root_posterior(g, z, sigma=sig_t)
        kept = float(jnp.mean(jnp.take_along_axis(post, levels[0][:, None], axis=-1)))
        xs = G.posterior_sample_levels(jax.random.fold_in(key, 7 + i), g, z, sigma=sig_t)
        exact.append(
          dict(
            L=L,
            rule_set=r,
            sigma_t=sig_t,
            p_root_kept=kept,
            p_root_kept_sampled=float(jnp.mean(xs[0] == levels[0])),
            hamming=float(jnp.mean(xs[-1] != levels[-1])),
          )
        )
    logging.info("E4 exact L=%d done", L)
  table = {}
  for L in cfg.e4.Ls:
    table[str(L)] = [
      round(
        float(np.mean([e["p_root_kept"] for e in exact if e["L"] == L and e["sigma_t"] == s])), 4
      )
      for s in cfg.e4.sigma_ts
    ]
  hamming = {
    str(L): [
      round(float(np.mean([e["hamming"] for e in exact if e["L"] == L and e["sigma_t"] == s])), 4)
      for s in cfg.e4.sigma_ts
    ]
    for L in cfg.e4.Ls
  }

  # Reverse SDE from sigma_t at the benchmark depth: oracle BP and the E3 U-Net
  ghm = _rhm(cfg.data)
  net, _ = _e3_unet(cfg, ghm, workdir, cfg.e4.unet_dir)
  denoisers = dict(
    oracle=lambda z, s: G.leaf_posteriors(ghm, z, sigma=s), unet=T.pure_denoiser(net)
  )
  sde = []
  for i, sig_t in enumerate(cfg.e4.sigma_ts):
    levels, _x, z = _test_set(jax.random.fold_in(key, 5000 + i), ghm, n, sig_t)
    post = G.root_posterior(ghm, z, sigma=sig_t)
    exact_kept = float(jnp.mean(jnp.take_along_axis(post, levels[0][:, None], axis=-1)))
    sigmas = sig_t * (cfg.e3.sampler_sigma_min / sig_t) ** (jnp.arange(cfg.e4.K + 1) / cfg.e4.K)
    for name, d in denoisers.items():
      zk = jax.jit(lambda k, z, d=d, sigmas=sigmas: G.reverse_ve(k, d, z, sigmas))(
        jax.random.fold_in(key, 9000 + i), z
      )
      xh = G.decode(d, zk, float(sigmas[-1]))
      p = G.parse(ghm, xh)
      kept = np.asarray(p.valid[:, -1] & (p.root == levels[0]))
      sde.append(
        dict(
          sampler=name,
          sigma_t=sig_t,
          p_root_kept=float(kept.mean()),
          p_root_kept_exact=exact_kept,
          valid=float(jnp.mean(p.valid[:, -1])),
          hamming=float(jnp.mean(xh != levels[-1])),
        )
      )
      logging.info("E4 sde %s", sde[-1])

  _dump(
    cfg,
    workdir,
    "e4_forward_backward",
    dict(
      p_root_kept_exact=table,
      hamming_exact=hamming,
      sigma_ts=list(cfg.e4.sigma_ts),
      per_rule_set=exact,
      reverse_sde=sde,
      wall_seconds=round(time.perf_counter() - t_start, 1),
    ),
  )
  fig, ax = plt.subplots(1, 2, figsize=(10, 4))
  for j, L in enumerate(cfg.e4.Ls):
    ax[0].plot(cfg.e4.sigma_ts, table[str(L)], f"C{j}o-", label=f"exact, L={L}")
  for name, style in (("oracle", "k--s"), ("unet", "r--^")):
    pts = [(r["sigma_t"], r["p_root_kept"]) for r in sde if r["sampler"] == name]
    ax[0].plot(*zip(*pts, strict=True), style, label=f"{name} SDE, L={cfg.data.L}")
  ax[0].set(xlabel="σ_t", ylabel="P(root kept)", title="E4: forward-backward")
  ax[0].legend(fontsize=7)
  for j, L in enumerate(cfg.e4.Ls):
    ax[1].plot(cfg.e4.sigma_ts, hamming[str(L)], f"C{j}o-", label=f"exact, L={L}")
  for name, style in (("oracle", "k--s"), ("unet", "r--^")):
    pts = [(r["sigma_t"], r["hamming"]) for r in sde if r["sampler"] == name]
    ax[1].plot(*zip(*pts, strict=True), style, label=f"{name} SDE")
  ax[1].set(xlabel="σ_t", ylabel="leaf Hamming distance")
  ax[1].legend(fontsize=7)
  _save_fig(fig, cfg, workdir, "e4_forward_backward")


# ---------------------------------------------------------------------------------------------


RUNNERS = dict(
  e1=run_e1,
  e1_ablations=run_e1_ablations,
  e1_ntrain=run_e1_ntrain,
  e1_width=run_e1_width,
  e1_exact_bp=run_e1_exact_bp,
  e2=run_e2,
  e3=run_e3,
  e3_ntrain=run_e3_ntrain,
  e4=run_e4,
)


def train(cfg, workdir: str) -> None:
  """Runs the experiment ``cfg.experiment`` names; writes config.json, its JSON and figures."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(cfg.to_json(indent=1))
  logging.info("backend %s, devices %s", jax.default_backend(), jax.devices())
  RUNNERS[cfg.experiment](cfg, workdir)


#: The modes ``python -m experiments.main --mode=...`` dispatches to.
MODES = {"train": train}
