"""Figures of the U-Net/Haar study: U1 (band energies, leak, spectra), U2 (ablations), examples."""

from __future__ import annotations

import os

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt


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
