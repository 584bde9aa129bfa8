"""The THEORY §3.3 [hypothesis] verdicts of the U-Net/Haar study, each with its rule."""

from __future__ import annotations

import math

import numpy as np

from experiments.unet_haar.analysis import ABLATIONS


def _within_spread(a: dict, b: dict) -> tuple[float, float]:
  """``(mean_a - mean_b, 2 x standard error of that difference)`` over seeds."""
  n = len(a["seeds"])
  se = math.sqrt((a["sd"] ** 2 + b["sd"] ** 2) / n)
  return a["mean"] - b["mean"], 2 * se


def retrain_verdicts(summary: dict, *, pool: str, where: str, n_levels: int) -> dict:
  """U2 (b): the ``pool`` net retrained with detail-only / approximation-only / no skips at every
  level (``where="all"``) or at the finest level only (``"finest"``); ``{}`` if not all ran."""
  tag, prefix, scope = (
    ("", "", "at every level")
    if where == "all"
    else ("finest_", f"j{n_levels}:", f"at the finest level j = {n_levels} only")
  )
  labels = [f"{pool}/{prefix}{m}" for m in ABLATIONS]
  if pool not in summary or not all(lbl in summary for lbl in labels):
    return {}
  full = summary[pool]["loss"]["full"]
  det, app_, none = (summary[lbl]["loss"]["full"] for lbl in labels)
  gap = none["mean"] - full["mean"]
  d1, s1 = _within_spread(det, full)
  rel1 = d1 / gap if gap > 0 else float("nan")
  v1 = "supported" if abs(d1) <= s1 else ("mixed" if abs(rel1) <= 0.1 else "not supported")
  d2, s2 = _within_spread(app_, none)
  rel2 = (app_["mean"] - full["mean"]) / gap if gap > 0 else float("nan")
  v2 = "supported" if abs(d2) <= s2 else ("mixed" if rel2 >= 0.75 else "not supported")
  return {
    f"b_{tag}detail_only_matches_full": dict(
      claim=f"(b) retrained with detail-only skips {scope}, the avg-pool net matches full skips "
      "within seed spread",
      rule="supported if |Δ| <= 2 s.e. (seeds); mixed if outside but |Δ| <= 10% of the "
      "none-vs-full gap; else not supported",
      delta=d1,
      two_se=s1,
      fraction_of_no_skip_gap=rel1,
      verdict=v1,
    ),
    f"b_{tag}approx_only_as_bad_as_none": dict(
      claim=f"(b) approximation-only skips {scope} are about as bad as no skips there",
      rule="supported if |approx - none| <= 2 s.e.; mixed if outside but approx-only keeps >= 75% "
      "of the none-vs-full gap; else not supported",
      delta=d2,
      two_se=s2,
      fraction_of_no_skip_gap=rel2,
      verdict=v2,
    ),
  }


def ablation_verdict(delta_loss: dict) -> dict:
  """U2 (a) for one net's test-time Δloss per skip variant (``<level set>:<mode>``)."""
  names = [k[: -len(":approx")] for k in delta_loss if k.endswith(":approx")]
  ratios, ok, weak = {}, True, False
  for lvl in names:
    hurt_detail = np.asarray(delta_loss[f"{lvl}:approx"]["seeds"])  # the skip's detail removed
    hurt_approx = np.asarray(delta_loss[f"{lvl}:detail"]["seeds"])  # its approximation removed
    ratios[lvl] = (hurt_detail / np.maximum(hurt_approx, 1e-12)).tolist()
    ok &= bool(np.all(hurt_detail > 3 * np.maximum(hurt_approx, 0)))
    weak |= bool(np.mean(hurt_detail) <= np.mean(hurt_approx))
  return dict(
    claim="(a) at test time, removing the skip's detail hurts far more than removing its "
    "approximation (avg pooling)",
    rule="supported if Δ(approx-only) > 3 Δ(detail-only) for every seed and level set; not "
    "supported if mean Δ(approx-only) <= mean Δ(detail-only) for some level set; else mixed",
    ratio_per_seed=ratios,
    verdict="supported" if ok else ("not supported" if weak else "mixed"),
  )


def clean_split_verdict(summary: dict, pools: list[str]) -> dict:
  """U3: zero leak and the sharpest detail/approximation split for avg pooling only."""
  leak = {p: summary[p]["leak"]["mean"] for p in pools}
  split = {}
  for p in pools:
    d = summary[p]["delta_loss"]
    split[p] = d["all:approx"]["mean"] / max(d["all:detail"]["mean"], 1e-12)
  others = [p for p in pools if p != "avg"]
  leaks_ok = max(leak["avg"]) < 1e-6 and all(min(leak[p]) > 1e-3 for p in others)
  split_ok = all(split["avg"] > split[p] for p in others)
  return dict(
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


def lemma1_verdict(summary: dict, pools: list[str]) -> dict:
  """Lemma 1: no detail energy on the coarse path, whatever the downsampler."""
  coarse = {p: max(summary[p]["coarse_w_max"]["mean"]) for p in pools}
  return dict(
    claim="Lemma 1 [verified exact]: with nearest upsampling, Q c_j = 0 (any pooling)",
    rule="supported if max_j E_W^coarse(j) < 1e-10 for every pooling",
    max_e_w_coarse=coarse,
    verdict="supported" if all(v < 1e-10 for v in coarse.values()) else "not supported",
  )


def verdicts(summary: dict, cfg) -> dict:
  """The THEORY §3.3 [hypothesis] items, each with the rule that decides it and the numbers."""
  out = {}
  pool = cfg.retrain.pooling
  n_levels = len(cfg.model.widths) - 1
  for where in cfg.retrain.levels:
    out |= retrain_verdicts(summary, pool=pool, where=where, n_levels=n_levels)
  if pool in summary:
    out["a_detail_removal_hurts_far_more"] = ablation_verdict(summary[pool]["delta_loss"])
  pools = [p for p in ("avg", "max", "conv") if p in summary]
  if len(pools) > 1 and "avg" in pools:
    out["u3_clean_split_for_avg_only"] = clean_split_verdict(summary, pools)
  out["lemma1_coarse_has_no_detail"] = lemma1_verdict(summary, pools)
  return out
