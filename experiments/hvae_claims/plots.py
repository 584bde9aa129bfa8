"""The figures of the HVAE claim experiments, drawn from the payloads their runners write."""

from __future__ import annotations

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def boundaries(ax, resolutions) -> None:
  """Vertical lines between blocks of different resolutions."""
  for i in range(1, len(resolutions)):
    if resolutions[i] != resolutions[i - 1]:
      ax.axvline(i - 0.5, color="0.8", lw=0.8)


def sharing(summary: list[dict], n_applications: int, *, dataset: str = "digits"):
  """Test NLL against distinct parameters, one marker per sharing pattern (mean ± s.d.)."""
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
  ax.set_title(f"weight sharing, {n_applications} top-down blocks ({dataset})")
  ax.legend(fontsize=8)
  return fig


def time(result: dict):
  """D1 (state RMS along depth, trained vs init) and D2 (depth-probe R² per resolution)."""
  resolutions = result["resolutions"]
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
  for label in ("trained", "init"):
    entry = result["models"][label]
    style = "-" if label == "trained" else ":"
    axes[0].plot(entry["rms_posterior"], "o" + style, ms=3, label=f"{label}: posterior")
    axes[0].plot(entry["rms_prior_t1.0"], "x" + style, ms=3, label=f"{label}: prior τ=1")
  tr, it = result["models"]["trained"], result["models"]["init"]
  boundaries(axes[0], resolutions)
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
  return fig


def point_mass(rows: list[dict], first_seed: int, resolutions):
  """Exposure ratio, state spread (prior, τ = 1) and KL per block for the first seed's runs."""
  fig, axes = plt.subplots(1, 3, figsize=(14, 3.5))
  for row in rows:
    if row["seed"] != first_seed:
      continue
    lab = f"ζ={row['zeta']}" if row["zeta"] else "point mass"
    t1 = row["prior"]["1.0"]
    axes[0].plot([np.nan if v is None else v for v in t1["exposure_ratio"]], "o-", ms=3, label=lab)
    axes[1].plot(t1["spread"], "o-", ms=3, label=lab)
    axes[2].plot(row["kl_per_block"], "o-", ms=3, label=lab)
  for ax, title in zip(
    axes,
    (
      "exposure ratio χ_i(τ=1) = RMS prior / RMS posterior",
      "state spread v_i (prior, τ=1)",
      "KL per block (nats/dim)",
    ),
    strict=True,
  ):
    boundaries(ax, resolutions)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("top-down block i")
    ax.legend(fontsize=7)
  axes[1].set_yscale("log")
  return fig


def euler(rows: list[dict], trained_names, grids: list[tuple[str, np.ndarray]]):
  """Test NLL against the applications N' at evaluation, and samples of every (run, N')."""
  fig = plt.figure(figsize=(11, 4))
  ax = fig.add_subplot(1, 2, 1)
  for name in trained_names:
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
  return fig


def curves(curves_by_run: dict[str, dict], rows: list[dict]):
  """Validation ELBO against step and against wall-clock minutes, one line per run (colour:
  sharing pattern; line style: seed)."""
  fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
  variants = sorted({r["variant"] for r in rows})
  colours = {v: f"C{i}" for i, v in enumerate(variants)}
  styles = ["-", "--", ":", "-."]
  for r in rows:
    c = curves_by_run[r["run"]]
    kw = dict(color=colours[r["variant"]], ls=styles[r["seed"] % len(styles)], marker="o", ms=3)
    label = f"{r['variant']}, seed {r['seed']}"
    axes[0].plot(c["step"], c["valid_bits_per_dim"], label=label, **kw)
    axes[1].plot(c["minutes"], c["valid_bits_per_dim"], **kw)
  axes[0].set_xlabel("step")
  axes[1].set_xlabel("minutes since the first logged step")
  axes[0].set_ylabel("validation NLL bound (bits/dim, EMA)")
  axes[0].set_title("learning curves against steps")
  axes[1].set_title("... and against wall-clock time")
  if rows:
    axes[0].legend(fontsize=7)
    last = [v for c in curves_by_run.values() for v in c["valid_bits_per_dim"][1:]]
    if last:  # the first evaluation is far above the rest: zoom on the later ones
      lo, hi = min(last), max(last)
      axes[0].set_ylim(lo - 0.05 * (hi - lo + 0.1), hi + 0.2 * (hi - lo + 0.1))
  return fig
