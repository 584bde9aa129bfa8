r"""Issue 6, item 1: average pooling is the Haar projection, in a trained network (THEORY §3.3).

Usage::

  nice -n 5 python -m experiments.main --config=experiments/unet_haar/config.py:fashion \
    --workdir=/tmp/unet_haar_fashion

Trains Gaussian denoising U-Nets (:class:`mrflax.nn.UNet`) with average, max and strided-conv
downsampling, and the average-pool net retrained with detail-only, approximation-only and no skips,
``len(config.seeds)`` seeds each, then measures U1 (Haar band energies of skips and coarse path,
downsampler leak, output spectrum) and U2 (test-time skip replacement, retraining) on a fixed test
subset with fixed noise. Writes ``<name>.json`` and ``<name>_{u1,u2,examples}.png`` into
``config.results_dir`` (or the workdir when that is empty) and ``config.json`` into the workdir. The
config is converted to keyword arguments here; the library never sees a ConfigDict.
"""

from __future__ import annotations

import functools
import json
import math
import os
import pathlib
import time

import flax
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from absl import logging
from flax import nnx

from mrflax import wavelets as W
from mrflax.data import pad_to, read_idx
from mrflax.nn import UNet
from mrflax.nn.unet import transform_skip
from mrflax.training.steps import StepConfig, Trainer

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ABLATIONS = ("detail", "approx", "none")  # U2 skip replacements (full = baseline)

# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def _read_idx_images(source: str, stem: str) -> np.ndarray:
  for suffix in (".gz", ""):
    path = pathlib.Path(source) / f"{stem}{suffix}"
    if path.exists():
      return read_idx(path)
  raise FileNotFoundError(
    f"{stem}[.gz] not found under {source!r}: apt-get install dataset-fashion-mnist "
    "(IDX files in /usr/share/datasets/fashion-mnist) or set --config.data.source"
  )


def load_images(data) -> tuple[np.ndarray, np.ndarray]:
  """``(train, test)`` float32 images ``[n, h, w, 1]`` scaled to [-1, 1] (padding is black)."""
  if data.name == "fashion_mnist":
    train = _read_idx_images(data.source, "train-images-idx3-ubyte")
    test = _read_idx_images(data.source, "t10k-images-idx3-ubyte")
  elif data.name == "digits":
    from sklearn.datasets import load_digits

    # the split of mrflax.data.import_digits: rescale 0..16 to uint8, fixed-seed permutation
    images = np.round(load_digits().images * (255.0 / 16.0)).astype(np.uint8)
    order = np.random.default_rng(data.split_seed).permutation(len(images))
    n_test = round(len(images) * 0.2)
    test, train = images[order[:n_test]], images[order[n_test:]]
  else:
    raise ValueError(f"data.name must be 'fashion_mnist' or 'digits', got {data.name!r}")

  def prep(u8: np.ndarray) -> np.ndarray:
    x = u8[..., None]
    if data.pad_to:
      x = np.stack([pad_to(im, data.pad_to) for im in x])
    return (x.astype(np.float32) / 127.5 - 1.0).astype(np.float32)

  return prep(train), prep(test)


def add_noise(key, x, *, sigma_min: float, sigma_max: float):
  """``(x + σ ε, σ)`` with :math:`\\log σ \\sim U[\\log σ_{min}, \\log σ_{max}]` per example."""
  k_sigma, k_eps = jax.random.split(key)
  log_sigma = jax.random.uniform(
    k_sigma, (x.shape[0],), minval=math.log(sigma_min), maxval=math.log(sigma_max)
  )
  sigma = jnp.exp(log_sigma)
  return x + sigma[:, None, None, None] * jax.random.normal(k_eps, x.shape, x.dtype), sigma


def dyadic_levels(side: int) -> int:
  """How many times ``side`` halves exactly (28 -> 2, 32 -> 5, 8 -> 3)."""
  n = 0
  while side % 2 == 0:
    side //= 2
    n += 1
  return n


# ---------------------------------------------------------------------------------------------
# Models and training
# ---------------------------------------------------------------------------------------------


def groups(cfg) -> list[tuple[str, dict, tuple[str, ...] | None]]:
  """``(label, UNet keyword overrides, per-level skip modes)`` of every trained net.

  Full-skip nets first (label = pooling). U2 (b) retrainings follow: ``retrain.levels`` entry
  ``"all"`` replaces the skip at every level at construction (label ``avg/<mode>``; ``none`` is
  ``skips=False``); ``"finest"`` replaces it at the finest level j = J only, through the per-call
  ``skip_mode`` used in training and evaluation alike (label ``avg/j<J>:<mode>``; ``none`` feeds
  zeros there).
  """
  out = [(p, dict(pooling=p), None) for p in cfg.poolings]
  n_levels = len(cfg.model.widths) - 1
  pool = cfg.retrain.pooling
  for where in cfg.retrain.levels:
    for mode in cfg.retrain.skip_modes:
      if where == "all":
        arch = dict(pooling=pool) | (dict(skips=False) if mode == "none" else dict(skip_mode=mode))
        out.append((f"{pool}/{mode}", arch, None))
      elif where == "finest":
        modes = (mode,) + ("full",) * (n_levels - 1)
        out.append((f"{pool}/j{n_levels}:{mode}", dict(pooling=pool), modes))
      else:
        raise ValueError(f"retrain.levels entries must be 'all' or 'finest', got {where!r}")
  return out


def make_model(cfg, arch: dict, seed: int) -> UNet:
  return UNet(
    in_features=1,
    out_features=1,
    widths=tuple(cfg.model.widths),
    noise_conditioning=cfg.model.noise_conditioning,
    rngs=nnx.Rngs(seed),
    **arch,
  )


def train_group(
  cfg, arch: dict, train_x: np.ndarray, *, modes: tuple[str, ...] | None = None
) -> tuple[Trainer, list[dict]]:
  """Trains one architecture for every seed with one compiled step (same graph for all seeds).

  ``modes`` (optional) overrides the skip variant per level in every training call.

  Seed ``s`` fixes the initialisation, the data order and the training noise; the data order and
  noise are therefore the same for every architecture at a given seed (paired comparisons).
  """
  cond = cfg.model.noise_conditioning
  t = cfg.train

  def loss_fn(model, batch, key):
    x = batch["x"]
    z, sigma = add_noise(key, x, sigma_min=t.sigma_min, sigma_max=t.sigma_max)
    y = model(z, sigma if cond else None, skip_mode=modes)
    return jnp.mean(jnp.square(y - x)), {}

  o = cfg.optim
  step_cfg = StepConfig(
    optimizer="adamw",
    lr=o.lr,
    warmup_steps=o.warmup_steps,
    decay_steps=max(t.steps - o.warmup_steps, 1),
    b1=o.b1,
    b2=o.b2,
    weight_decay=0.0,
    grad_clip=o.grad_clip,
    skip_threshold=None,
    ema_decay=None,
  )
  trainer = Trainer(make_model(cfg, arch, cfg.seeds[0]), loss_fn, step_cfg)
  step = jax.jit(trainer.train_step, donate_argnums=0)
  n, b = train_x.shape[0], t.batch_size
  runs = []
  for seed in cfg.seeds:
    model = make_model(cfg, arch, seed)
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    state = trainer.init_state(model, jax.random.key(seed))
    rng = np.random.default_rng(seed)
    order, pos = rng.permutation(n), 0
    losses, first_s = [], None
    t0 = time.perf_counter()
    for i in range(t.steps):
      if pos + b > n:
        order, pos = rng.permutation(n), 0
      state, metrics = step(state, {"x": train_x[order[pos : pos + b]]})
      pos += b
      losses.append(metrics["loss"])
      if i == 0:
        first_s = time.perf_counter() - t0
      if t.log_every and (i + 1) % t.log_every == 0:
        recent = float(np.mean(jax.device_get(losses[-t.log_every :])))
        logging.info(
          "%s %s seed %d step %d/%d loss %.5f (%.0f s)",
          arch,
          modes or "",
          seed,
          i + 1,
          t.steps,
          recent,
          time.perf_counter() - t0,
        )
    losses = np.asarray(jax.device_get(losses), np.float64)
    runs.append(
      dict(
        seed=seed,
        state=state,
        n_params=n_params,
        train_loss_curve=losses,
        first_step_seconds=round(first_s, 1),
        train_seconds=round(time.perf_counter() - t0, 1),
      )
    )
  return trainer, runs


# ---------------------------------------------------------------------------------------------
# Evaluation (U1, U2)
# ---------------------------------------------------------------------------------------------


def _energy_ratio(num, den):
  """Per-example ``|num|^2 / |den|^2`` (mean-convention L² norms; the ratio is convention-free)."""
  return W.l2_inner(num, num, ndim=2) / W.l2_inner(den, den, ndim=2)


def make_eval_fns(trainer: Trainer, *, pooling: str, cond: bool, spectrum_levels: int):
  """Compiled ``predict`` (output and per-example MSE for a skip variant) and ``features`` (U1)."""
  graphdef = trainer.graphdef

  @functools.partial(jax.jit, static_argnames="modes")
  def predict(params, rest, z, sigma, x, modes=None):
    model = nnx.merge(graphdef, params, rest, copy=True)
    y = model(z, sigma if cond else None, skip_mode=modes)
    return y, jnp.mean(jnp.square(y - x), axis=(1, 2, 3))

  @jax.jit
  def features(params, rest, z, sigma, x):
    model = nnx.merge(graphdef, params, rest, copy=True)
    y, f = model(z, sigma if cond else None, return_features=True)
    skip_w, coarse_w, leak = [], [], []
    for j, (h, c, d) in enumerate(zip(f.skips, f.coarse, f.down, strict=True)):
      # Down(ιP h): for avg and max pooling it is P h (all four children equal); for the strided
      # conv it is the conv applied to the piecewise-constant ιP h.
      ph = W.project(h, ndim=2)
      down_approx = model.down[j](W.embed(ph, ndim=2)) if pooling == "conv" else ph
      skip_w.append(_energy_ratio(transform_skip(h, "detail"), h))
      coarse_w.append(_energy_ratio(transform_skip(c, "detail"), c))
      leak.append(_energy_ratio(d - down_approx, d))

    def bands(v):  # energy per Haar level [approx, coarsest detail, ..., finest detail]
      return W.band_energies(W.haar_analysis(v, levels=spectrum_levels, ndim=2)).per_level()

    centre = lambda v: v - jnp.mean(v, axis=(1, 2, 3), keepdims=True)
    return dict(
      skip_w=jnp.stack(skip_w, -1),
      coarse_w=jnp.stack(coarse_w, -1),
      leak=jnp.stack(leak, -1),
      e_target=bands(centre(x)),
      e_output=bands(centre(y)),
      e_error=bands(y - x),
    )

  return predict, features


def skip_variants(n_levels: int, per_level: bool) -> dict[str, tuple[str, ...]]:
  """U2 (a) variants: name -> skip mode per level (finest first). Level names use THEORY's j
  (the finest skip is j = n_levels, the coarsest j = 1)."""
  out = {"full": ("full",) * n_levels}
  for mode in ABLATIONS:
    out[f"all:{mode}"] = (mode,) * n_levels
  if per_level and n_levels > 1:
    for i in range(n_levels):
      for mode in ABLATIONS:
        modes = ["full"] * n_levels
        modes[i] = mode
        out[f"j{n_levels - i}:{mode}"] = tuple(modes)
  return out


def _batched(fn, n: int, bs: int, *arrays):
  outs = [fn(*(a[i : i + bs] for a in arrays)) for i in range(0, n, bs)]
  return jax.tree.map(lambda *xs: np.concatenate([np.asarray(x) for x in xs]), *outs)


def evaluate_run(
  run: dict, predict, features, test, *, variants, n_features: int, bs: int, example_idx
):
  """Per-example losses of every skip variant, U1 statistics, example outputs for one net."""
  params, rest = run["state"].params, run["state"].rest
  x, z, sigma = test
  losses, examples = {}, {}
  for name, modes in variants.items():
    y, mse = _batched(
      lambda z_, s_, x_, m=modes: predict(params, rest, z_, s_, x_, modes=m),
      len(x),
      bs,
      z,
      sigma,
      x,
    )
    losses[name] = mse
    examples[name] = y[example_idx]
  n_f = min(n_features, len(x))
  feats = _batched(
    lambda z_, s_, x_: features(params, rest, z_, s_, x_), n_f, bs, z[:n_f], sigma[:n_f], x[:n_f]
  )
  return losses, feats, examples


# ---------------------------------------------------------------------------------------------
# Summaries and verdicts
# ---------------------------------------------------------------------------------------------


def _ms(values) -> dict:
  """Mean and s.d. (ddof = 1; 0 for one seed) over seeds, plus the per-seed values."""
  v = np.asarray(values, np.float64)
  sd = np.std(v, axis=0, ddof=1) if v.shape[0] > 1 else np.zeros(v.shape[1:])
  return dict(mean=np.mean(v, 0).tolist(), sd=np.asarray(sd).tolist(), seeds=v.tolist())


def summarise_run(losses: dict, feats: dict, sigma: np.ndarray, sigma_edges) -> dict:
  """One seed: loss per variant (overall and per σ tercile), Δloss, U1 means, spectra."""
  full = losses["full"]
  bins = np.digitize(sigma, sigma_edges)
  out = dict(
    loss={k: float(np.mean(v)) for k, v in losses.items()},
    delta_loss={k: float(np.mean(v - full)) for k, v in losses.items() if k != "full"},
    loss_by_sigma={k: [float(np.mean(v[bins == b])) for b in range(3)] for k, v in losses.items()},
  )
  e_t, e_o, e_e = feats["e_target"], feats["e_output"], feats["e_error"]
  out.update(
    skip_w=np.mean(feats["skip_w"], 0).tolist(),
    coarse_w=np.mean(feats["coarse_w"], 0).tolist(),
    coarse_w_max=np.max(feats["coarse_w"], 0).tolist(),
    leak=np.mean(feats["leak"], 0).tolist(),
    spectrum_target=np.mean(e_t / e_t.sum(-1, keepdims=True), 0).tolist(),
    spectrum_output=np.mean(e_o / e_o.sum(-1, keepdims=True), 0).tolist(),
    output_over_target=(e_o.sum(0) / e_t.sum(0)).tolist(),
    error_share=(e_e.sum(0) / e_e.sum()).tolist(),
    error_over_target=(e_e.sum(0) / e_t.sum()).tolist(),
  )
  return out


def aggregate(per_seed: list[dict]) -> dict:
  """Mean ± s.d. over seeds of every number of :func:`summarise_run`."""
  out = {}
  for key, first in per_seed[0].items():
    if isinstance(first, dict):
      out[key] = {k: _ms([s[key][k] for s in per_seed]) for k in first}
    else:
      out[key] = _ms([s[key] for s in per_seed])
  return out


def _within_spread(a: dict, b: dict) -> tuple[float, float]:
  """``(mean_a - mean_b, 2 x standard error of that difference)`` over seeds."""
  n = len(a["seeds"])
  se = math.sqrt((a["sd"] ** 2 + b["sd"] ** 2) / n)
  return a["mean"] - b["mean"], 2 * se


def verdicts(summary: dict, cfg) -> dict:
  """The THEORY §3.3 [hypothesis] items, each with the rule that decides it and the numbers."""
  out = {}
  pool = cfg.retrain.pooling
  n_levels = len(cfg.model.widths) - 1
  own = lambda label: summary[label]["loss"]["full"]
  for where in cfg.retrain.levels:
    tag, prefix, scope = (
      ("", "", "at every level")
      if where == "all"
      else ("finest_", f"j{n_levels}:", f"at the finest level j = {n_levels} only")
    )
    labels = [f"{pool}/{prefix}{m}" for m in ABLATIONS]
    if pool not in summary or not all(lbl in summary for lbl in labels):
      continue
    full = own(pool)
    det, app_, none = (own(lbl) for lbl in labels)
    gap = none["mean"] - full["mean"]
    d1, s1 = _within_spread(det, full)
    rel1 = d1 / gap if gap > 0 else float("nan")
    v1 = "supported" if abs(d1) <= s1 else ("mixed" if abs(rel1) <= 0.1 else "not supported")
    out[f"b_{tag}detail_only_matches_full"] = dict(
      claim=f"(b) retrained with detail-only skips {scope}, the avg-pool net matches full skips "
      "within seed spread",
      rule="supported if |Δ| <= 2 s.e. (seeds); mixed if outside but |Δ| <= 10% of the "
      "none-vs-full gap; else not supported",
      delta=d1,
      two_se=s1,
      fraction_of_no_skip_gap=rel1,
      verdict=v1,
    )
    d2, s2 = _within_spread(app_, none)
    rel2 = (app_["mean"] - full["mean"]) / gap if gap > 0 else float("nan")
    v2 = "supported" if abs(d2) <= s2 else ("mixed" if rel2 >= 0.75 else "not supported")
    out[f"b_{tag}approx_only_as_bad_as_none"] = dict(
      claim=f"(b) approximation-only skips {scope} are about as bad as no skips there",
      rule="supported if |approx - none| <= 2 s.e.; mixed if outside but approx-only keeps >= 75% "
      "of the none-vs-full gap; else not supported",
      delta=d2,
      two_se=s2,
      fraction_of_no_skip_gap=rel2,
      verdict=v2,
    )
  if pool in summary:
    d = summary[pool]["delta_loss"]
    names = [k[: -len(":approx")] for k in d if k.endswith(":approx")]
    ratios, ok, weak = {}, True, False
    for lvl in names:
      hurt_detail = np.asarray(d[f"{lvl}:approx"]["seeds"])  # the skip's detail removed
      hurt_approx = np.asarray(d[f"{lvl}:detail"]["seeds"])  # the skip's approximation removed
      ratios[lvl] = (hurt_detail / np.maximum(hurt_approx, 1e-12)).tolist()
      ok &= bool(np.all(hurt_detail > 3 * np.maximum(hurt_approx, 0)))
      weak |= bool(np.mean(hurt_detail) <= np.mean(hurt_approx))
    out["a_detail_removal_hurts_far_more"] = dict(
      claim="(a) at test time, removing the skip's detail hurts far more than removing its "
      "approximation (avg pooling)",
      rule="supported if Δ(approx-only) > 3 Δ(detail-only) for every seed and level set; not "
      "supported if mean Δ(approx-only) <= mean Δ(detail-only) for some level set; else mixed",
      ratio_per_seed=ratios,
      verdict="supported" if ok else ("not supported" if weak else "mixed"),
    )
  pools = [p for p in ("avg", "max", "conv") if p in summary]
  if len(pools) > 1 and "avg" in pools:
    leak = {p: summary[p]["leak"]["mean"] for p in pools}
    split = {}
    for p in pools:
      d = summary[p]["delta_loss"]
      split[p] = d["all:approx"]["mean"] / max(d["all:detail"]["mean"], 1e-12)
    others = [p for p in pools if p != "avg"]
    leaks_ok = max(leak["avg"]) < 1e-6 and all(min(leak[p]) > 1e-3 for p in others)
    split_ok = all(split["avg"] > split[p] for p in others)
    out["u3_clean_split_for_avg_only"] = dict(
      claim="the clean detail/approximation split holds for avg pooling only; max and conv "
      "show leak > 0 and a blurred split",
      rule="supported if leak(avg) < 1e-6 < 1e-3 < leak(max, conv) at every level and the "
      "all-level split ratio Δ(approx-only)/Δ(detail-only) under (a) is largest for avg; "
      "mixed if only one of the two holds",
      leak=leak,
      split_ratio_all_levels=split,
      verdict="supported"
      if leaks_ok and split_ok
      else ("mixed" if leaks_ok or split_ok else "not supported"),
    )
  coarse = {p: max(summary[p]["coarse_w_max"]["mean"]) for p in pools}
  out["lemma1_coarse_has_no_detail"] = dict(
    claim="Lemma 1 [verified exact]: with nearest upsampling, Q c_j = 0 (any pooling)",
    rule="supported if max_j E_W^coarse(j) < 1e-10 for every pooling",
    max_e_w_coarse=coarse,
    verdict="supported" if all(v < 1e-10 for v in coarse.values()) else "not supported",
  )
  return out


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------


def _save_fig(fig, out_dir: str, name: str) -> None:
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, f"{name}.png"), dpi=80)
  plt.close(fig)


def plot_u1(summary, pools, level_names, band_names, out_dir, name) -> None:
  fig, ax = plt.subplots(1, 3, figsize=(13, 3.8))
  x = np.arange(len(level_names))
  w = 0.8 / len(pools)
  for k, p in enumerate(pools):
    s = summary[p]
    ax[0].bar(x + k * w, s["skip_w"]["mean"], w, yerr=s["skip_w"]["sd"], label=f"{p}: skip h_j")
    ax[0].plot(x + k * w, s["coarse_w"]["mean"], "kx")
    ax[1].bar(x + k * w, s["leak"]["mean"], w, yerr=s["leak"]["sd"], label=p)
  ax[0].plot([], [], "kx", label="coarse c_j (all)")
  ax[0].set(xticks=x + 0.4 - w / 2, xticklabels=level_names, ylabel="|Q v|² / |v|²")
  ax[0].set_title("U1: detail (W) energy fraction", fontsize=10)
  ax[0].legend(fontsize=7)
  ax[1].set(xticks=x + 0.4 - w / 2, xticklabels=level_names, ylabel="leak(j)")
  ax[1].set_title("|Down h - Down ιPh|² / |Down h|²", fontsize=10)
  ax[1].legend(fontsize=7)
  b = np.arange(len(band_names))
  ax[2].semilogy(b, summary[pools[0]]["spectrum_target"]["mean"], "k-o", lw=2, label="target")
  for k, p in enumerate(pools):
    ax[2].semilogy(b, summary[p]["spectrum_output"]["mean"], f"C{k}-s", label=f"{p} output")
    ax[2].semilogy(b, summary[p]["error_over_target"]["mean"], f"C{k}:^", label=f"{p} error")
  ax[2].set(xticks=b, xticklabels=band_names, ylabel="energy / target energy")
  ax[2].set_title("Haar spectrum (mean removed)", fontsize=10)
  ax[2].legend(fontsize=7)
  _save_fig(fig, out_dir, f"{name}_u1")


def plot_u2(summary, pools, retrained, out_dir, name) -> None:
  fig, ax = plt.subplots(1, 2, figsize=(13, 3.8), gridspec_kw=dict(width_ratios=[2.2, 1]))
  variants = [k for k in summary[pools[0]]["delta_loss"]]
  x = np.arange(len(variants))
  w = 0.8 / len(pools)
  for k, p in enumerate(pools):
    d = summary[p]["delta_loss"]
    ax[0].bar(
      x + k * w,
      [d[v]["mean"] for v in variants],
      w,
      yerr=[d[v]["sd"] for v in variants],
      label=p,
    )
  ax[0].set_yscale("symlog", linthresh=1e-4)
  keeps = dict(detail="Qh", approx="ιPh", none="0")
  ticks = [f"{v.split(':')[0]}: {keeps[v.split(':')[1]]}" for v in variants]
  ax[0].set_xticks(x + 0.4 - w / 2, ticks, rotation=30, fontsize=8)
  ax[0].set(ylabel="Δ test MSE vs full skips")
  ax[0].set_title(
    "U2 (a): skip h replaced at test time by Qh (approx. removed), ιPh (detail removed), 0",
    fontsize=9,
  )
  ax[0].legend(fontsize=7)
  if retrained:
    labels = [r.split("/")[-1] if "/" in r else "full" for r in retrained]
    for k, r in enumerate(retrained):
      s = summary[r]["loss"]["full"]
      ax[1].bar(k, s["mean"], 0.6, color="C0", alpha=0.5)
      ax[1].plot([k] * len(s["seeds"]), s["seeds"], "k.")
    ax[1].set_xticks(range(len(retrained)), labels)
    lo = min(min(summary[r]["loss"]["full"]["seeds"]) for r in retrained)
    hi = max(max(summary[r]["loss"]["full"]["seeds"]) for r in retrained)
    ax[1].set_ylim(lo - 0.1 * (hi - lo) - 1e-6, hi + 0.1 * (hi - lo) + 1e-6)
    ax[1].set(ylabel="test MSE (seeds: dots)")
    ax[1].set_title(f"U2 (b): {retrained[0]} retrained per skip mode", fontsize=10)
  _save_fig(fig, out_dir, f"{name}_u2")


def plot_examples(examples, pools, test, example_idx, out_dir, name) -> None:
  x, z, sigma = test
  cols = ["noisy", "full", "all:detail", "all:approx", "all:none", "clean"]
  rows = [(p, i) for p in pools for i in range(len(example_idx))]
  fig, ax = plt.subplots(len(rows), len(cols), figsize=(1.3 * len(cols), 1.4 * len(rows)))
  ax = np.atleast_2d(ax)
  for r, (p, i) in enumerate(rows):
    k = example_idx[i]
    ims = [z[k], *(examples[p][c][i] for c in cols[1:-1]), x[k]]
    for c, im in enumerate(ims):
      ax[r, c].imshow(np.clip(im[..., 0], -1, 1), cmap="gray", vmin=-1, vmax=1)
      ax[r, c].set_xticks([])
      ax[r, c].set_yticks([])
      if r == 0:
        ax[r, c].set_title(cols[c].replace("all:", "skip: "), fontsize=8)
    ax[r, 0].set_ylabel(f"{p} σ={sigma[k]:.2f}", fontsize=7)
  _save_fig(fig, out_dir, f"{name}_examples")


# ---------------------------------------------------------------------------------------------
# The experiment
# ---------------------------------------------------------------------------------------------


def run(cfg, workdir: str) -> dict:
  """Trains, evaluates, writes ``<name>.json`` and the figures; returns the JSON payload."""
  t_start = time.perf_counter()
  out_dir = cfg.results_dir or workdir
  os.makedirs(out_dir, exist_ok=True)
  train_x, test_all = load_images(cfg.data)
  n_test = min(cfg.eval.n_test, len(test_all))
  x_test = test_all[:n_test]
  z_test, sigma_test = add_noise(
    jax.random.key(cfg.eval.seed),
    jnp.asarray(x_test),
    sigma_min=cfg.train.sigma_min,
    sigma_max=cfg.train.sigma_max,
  )
  test = (x_test, np.asarray(z_test), np.asarray(sigma_test))
  lo, hi = math.log(cfg.train.sigma_min), math.log(cfg.train.sigma_max)
  sigma_edges = [math.exp(lo + (hi - lo) / 3), math.exp(lo + 2 * (hi - lo) / 3)]
  order = np.argsort(np.abs(test[2] - cfg.eval.example_sigma))
  example_idx = np.sort(order[: cfg.eval.n_examples])
  side = x_test.shape[1]
  n_levels = len(cfg.model.widths) - 1
  spectrum_levels = dyadic_levels(side)
  level_names = [f"j={n_levels - i} ({side >> i}²)" for i in range(n_levels)]
  band_names = [f"V ({side >> spectrum_levels}²)"] + [
    f"W→{side >> (spectrum_levels - k - 1)}²" for k in range(spectrum_levels)
  ]
  logging.info(
    "data %s: train %s, test %s; %d U-Net levels",
    cfg.data.name,
    train_x.shape,
    x_test.shape,
    n_levels,
  )

  summary, per_seed_all, timing, examples, n_params = {}, {}, {}, {}, {}
  for label, arch, modes in groups(cfg):
    t0 = time.perf_counter()
    trainer, runs = train_group(cfg, arch, train_x, modes=modes)
    t_train = time.perf_counter() - t0
    predict, features = make_eval_fns(
      trainer,
      pooling=arch["pooling"],
      cond=cfg.model.noise_conditioning,
      spectrum_levels=spectrum_levels,
    )
    retrained = "/" in label
    variants = {"full": modes} if retrained else skip_variants(n_levels, bool(cfg.eval.per_level))
    per_seed = []
    for r in runs:
      losses, feats, ex = evaluate_run(
        r,
        predict,
        features,
        test,
        variants=variants,
        n_features=cfg.eval.n_features,
        bs=cfg.eval.batch_size,
        example_idx=example_idx,
      )
      s = summarise_run(losses, feats, test[2], sigma_edges)
      curve = r["train_loss_curve"]
      s["train_loss_last10pct"] = float(np.mean(curve[-max(len(curve) // 10, 1) :]))
      per_seed.append(s)
      if r["seed"] == cfg.seeds[0]:
        examples[label] = ex
    summary[label] = aggregate(per_seed)
    per_seed_all[label] = [
      dict(seed=r["seed"], train_seconds=r["train_seconds"], first_step_s=r["first_step_seconds"])
      for r in runs
    ]
    n_params[label] = runs[0]["n_params"]
    timing[label] = dict(train_s=round(t_train, 1), total_s=round(time.perf_counter() - t0, 1))
    logging.info(
      "%s: test MSE %.5f ± %.5f; skip W %s; leak %s (%.0f s)",
      label,
      summary[label]["loss"]["full"]["mean"],
      summary[label]["loss"]["full"]["sd"],
      np.round(summary[label]["skip_w"]["mean"], 4),
      np.round(summary[label]["leak"]["mean"], 4),
      timing[label]["total_s"],
    )

  pools = [p for p in cfg.poolings]
  retrained = [cfg.retrain.pooling] if cfg.retrain.pooling in summary else []
  retrained += [g for g, _, _ in groups(cfg) if "/" in g]
  payload = dict(
    name=cfg.name,
    data=dict(
      name=cfg.data.name,
      train=int(train_x.shape[0]),
      test=n_test,
      u1_images=min(cfg.eval.n_features, n_test),
      side=side,
      sigma_tercile_edges=sigma_edges,
    ),
    levels=[dict(j=n_levels - i, side=side >> i, index=i) for i in range(n_levels)],
    level_names=level_names,
    band_names=band_names,
    groups={g: dict(a, modes=m) if m else a for g, a, m in groups(cfg)},
    n_params=n_params,
    summary=summary,
    verdicts=verdicts(summary, cfg),
    runs=per_seed_all,
    timing=timing,
    wall_seconds=round(time.perf_counter() - t_start, 1),
    config=json.loads(cfg.to_json()),
    backend=jax.default_backend(),
    versions=dict(jax=jax.__version__, flax=flax.__version__),
  )
  for d in {out_dir, workdir}:
    with open(os.path.join(d, f"{cfg.name}.json"), "w") as f:
      json.dump(payload, f, indent=1)
  logging.info("wrote %s", os.path.join(out_dir, f"{cfg.name}.json"))
  plot_u1(summary, pools, level_names, band_names, out_dir, cfg.name)
  plot_u2(summary, pools, retrained, out_dir, cfg.name)
  plot_examples(examples, pools, test, example_idx, out_dir, cfg.name)
  return payload


def train(cfg, workdir: str) -> None:
  """Runs the study; writes config.json, its JSON and figures."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(cfg.to_json(indent=1))
  logging.info("backend %s, devices %s", jax.default_backend(), jax.devices())
  run(cfg, workdir)


#: The modes ``python -m experiments.main --mode=...`` dispatches to.
MODES = {"train": train}
