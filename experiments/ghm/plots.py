"""The figures of the GHM experiments (matplotlib, Agg): one function per experiment."""

from __future__ import annotations

import os

import matplotlib
import numpy as np

from experiments.ghm.common import out_dir

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _save(fig, cfg, workdir, name) -> None:
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir(cfg, workdir), f"{name}.png"), dpi=90)
  plt.close(fig)


def _excess_vs_sigma(results, label, title, cfg, workdir, name) -> None:
  """One excess-over-BP curve per entry of ``results`` and the local-pos gap."""
  fig, ax = plt.subplots(figsize=(6, 4))
  for key, res in results.items():
    ax.plot(
      [r["sigma"] for r in res["rows"]], [r["excess"] for r in res["rows"]], "o-", label=label(key)
    )
  rows0 = next(iter(results.values()))["rows"]
  ax.plot(
    [r["sigma"] for r in rows0],
    [r["mse_local_pos"] - r["mmse_bp"] for r in rows0],
    "k--",
    label="local-pos gap",
  )
  ax.set(xlabel="σ", ylabel="E|f - D*|²", xscale="log", yscale="log", title=title)
  ax.legend(fontsize=7)
  _save(fig, cfg, workdir, name)


def e1(rows, finite, memorise_sets, cfg, workdir) -> None:
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
  _save(fig, cfg, workdir, "e1_denoising")


def e1_ablations(results, cfg, workdir) -> None:
  _excess_vs_sigma(results, str, "E1 ablations", cfg, workdir, "e1_ablations")


def e1_width(results, cfg, workdir) -> None:
  _excess_vs_sigma(results, lambda w: f"width {w}", "E1 width sweep", cfg, workdir, "e1_width")


def e1_ntrain(results, tests, cfg, workdir) -> None:
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
  _save(fig, cfg, workdir, "e1_ntrain")


def e1_exact_bp(results, true_rows, unet, cfg, workdir) -> None:
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
  _save(fig, cfg, workdir, "e1_exact_bp")


def e2(noisy, clean, cfg, workdir) -> None:
  fig, ax = plt.subplots(1, 2, figsize=(10, 4))
  sig = [r["sigma"] for r in noisy]
  ax[0].plot(sig, [r["bp_acc"] for r in noisy], "k-o", label="BP (Bayes)")
  ax[0].plot(sig, [r["acc"] for r in noisy], "C0-s", label="ConvNet online")
  for n_train in cfg.e2.n_train:
    pts = [(r["sigma"], r[f"acc_n{n_train}"]) for r in noisy if f"acc_n{n_train}" in r]
    if pts:
      ax[0].plot(*zip(*pts, strict=True), "C1^", label=f"ConvNet n_train={n_train}")
  ax[0].axhline(1 / cfg.data.num_classes, color="gray", ls=":", label="chance")
  ax[0].set(xlabel="σ", ylabel="root accuracy", title="E2: classification")
  ax[0].legend(fontsize=7)
  for j, m in enumerate(cfg.e2.clean_ms):
    pts = [(r["ratio"], r["test_error"]) for r in clean if r["m"] == m]
    ax[1].plot(*zip(*pts, strict=True), f"C{j}o-", label=f"m={m}")
  ax[1].set(
    xlabel="n_train / (n_c m^L)",
    ylabel="test error (clean)",
    xscale="log",
    title=f"clean, L={cfg.e2.clean_num_levels}",
  )
  ax[1].legend(fontsize=7)
  _save(fig, cfg, workdir, "e2_classification")


def e3(rows, cfg, workdir) -> None:
  fig, ax = plt.subplots(figsize=(6, 4))
  for r in rows:
    style = "-" if r["sampler"] == "oracle" else "--"
    lv = np.arange(1, len(r["validity_per_level"]) + 1)
    ax.plot(lv, r["validity_per_level"], style + "o", label=f"{r['sampler']} K={r['K']}")
  ax.set(xlabel="parse steps k (bottom → top)", ylabel="validity", title="E3: diffusion samples")
  ax.legend(fontsize=7)
  _save(fig, cfg, workdir, "e3_diffusion")


def e3_ntrain(rows, num_steps, cfg, workdir) -> None:
  fig, ax = plt.subplots(1, 2, figsize=(10, 4))
  for j, r in enumerate(rows):
    lv = np.arange(1, len(r["validity_per_level"]) + 1)
    style = "k-o" if r["sampler"] == "oracle" else f"C{j}--o"
    ax[0].plot(lv, r["validity_per_level"], style, label=r["sampler"])
  ax[0].set(
    xlabel="parse steps k (bottom → top)", ylabel="validity", title=f"E3 n_train, K={num_steps}"
  )
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
  _save(fig, cfg, workdir, "e3_ntrain")


def e4(table, hamming, sde, cfg, workdir) -> None:
  fig, ax = plt.subplots(1, 2, figsize=(10, 4))
  for j, num_levels in enumerate(cfg.e4.num_levels):
    ax[0].plot(cfg.e4.sigma_ts, table[str(num_levels)], f"C{j}o-", label=f"exact, L={num_levels}")
  for name, style in (("oracle", "k--s"), ("unet", "r--^")):
    pts = [(r["sigma_t"], r["p_root_kept"]) for r in sde if r["sampler"] == name]
    ax[0].plot(*zip(*pts, strict=True), style, label=f"{name} SDE, L={cfg.data.num_levels}")
  ax[0].set(xlabel="σ_t", ylabel="P(root kept)", title="E4: forward-backward")
  ax[0].legend(fontsize=7)
  for j, num_levels in enumerate(cfg.e4.num_levels):
    ax[1].plot(cfg.e4.sigma_ts, hamming[str(num_levels)], f"C{j}o-", label=f"exact, L={num_levels}")
  for name, style in (("oracle", "k--s"), ("unet", "r--^")):
    pts = [(r["sigma_t"], r["hamming"]) for r in sde if r["sampler"] == name]
    ax[1].plot(*zip(*pts, strict=True), style, label=f"{name} SDE")
  ax[1].set(xlabel="σ_t", ylabel="leaf Hamming distance")
  ax[1].legend(fontsize=7)
  _save(fig, cfg, workdir, "e4_forward_backward")
