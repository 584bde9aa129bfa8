"""Writes the table of the latest `make bench` run into benchmarks/README.md.

Reads every ``benchmarks/results/<name>.json`` (written by :mod:`benchmarks.run_all`) and
replaces the block between ``<!-- make-bench:start -->`` and ``<!-- make-bench:end -->`` in
``benchmarks/README.md`` with one table: per benchmark its headline figures (medians of repeats,
ratios measured within that benchmark's own run), the issue goal where there is one, and the
machine it ran on. The hand-written sections around the block are left alone.

Run: ``python -m benchmarks.report`` (``make bench`` runs it after the benchmarks).
"""

from __future__ import annotations

import datetime
import json
import pathlib
from collections.abc import Callable
from typing import Any

HERE = pathlib.Path(__file__).parent
START, END = "<!-- make-bench:start -->", "<!-- make-bench:end -->"


def _f(v: Any, unit: str = "", digits: int = 3) -> str:
  if v is None:
    return "-"
  if isinstance(v, float):
    return f"{v:.{digits}g}{unit}"
  return f"{v}{unit}"


def _goal(ok: bool) -> str:
  return "met" if ok else "**not met**"


def _hvae_step(r):
  s = (
    f"{r['preset']} {r['mode']} (share={r['share']}, conv {r['conv_backward']}, "
    f"{r.get('compute_dtype', 'float32')}): "
    f"step {_f(r['step_s'], ' s')}, compile {_f(r['compile_s'], ' s')}, "
    f"{_f(r.get('images_per_s'), ' img/s')}, {r['params']:,} params"
  )
  goal = ""
  if "peak_fraction" in r:
    s += f", {r['peak_fraction']:.1%} of the {r['matmul_gflops']} GFLOP/s matmul peak"
    goal = f"≥ 35% of peak: {_goal(r['peak_fraction'] >= 0.35)}"
  if "speedup_vs_pytorch_ref" in r:
    s += f", {r['speedup_vs_pytorch_ref']}× the PyTorch reference (8.9 s/step)"
    goal += f"; ≥ 3× PyTorch: {_goal(r['speedup_vs_pytorch_ref'] >= 3)}"
  return s, goal


def _scan(r):
  s = (
    f"shared HVAE, depth {r['ratio_depth']}: scan/unrolled step **{r['scan_over_unrolled']}** "
    f"(JAX's conv VJP: {r['scan_xla_over_unrolled']}), scanned compile depth "
    f"{r['depths'][1]}/{r['depths'][0]} = **{r['compile_64_over_8']}**"
  )
  goal = (
    f"≤ 1.15: {_goal(r['scan_over_unrolled'] <= 1.15)}; "
    f"≤ 1.5: {_goal(r['compile_64_over_8'] <= 1.5)}"
  )
  return s, goal


def _remat(r):
  remat = r.get("scan_remat", "none")
  return "" if remat == "none" else f" (remat={remat})"


def _scan_settle(r):
  s = (
    f"shared HVAE, depth {r['ratio_depth']}, {r['rounds']} paired rounds, {r['threads']} "
    f"pinned thread(s): scan{_remat(r)}/unrolled step geometric mean **{r['ratio_geomean']}**, "
    f"{r['ratio_ci_level']:.0%} CI [{r['ratio_ci_low']}, **{r['ratio_ci_high']}**], "
    f"median {r['ratio_median']}"
  )
  return s, f"CI upper end ≤ {r['goal_upper']}: {_goal(r['ratio_ci_high'] <= r['goal_upper'])}"


def _memory(r):
  parts = [
    f"{x['preset']} {x['remat']}: {x['peak_mib']:.0f} MiB"
    + (f", {x['step_s']} s/step" if x.get("step_s") else "")
    + (" (not timed: over the free RAM)" if "step_s" in x and x["step_s"] is None else "")
    for x in r["rows"]
  ]
  return "; ".join(parts), ""


def _inference(r):
  parts = [
    f"{x['mode']}: {x['samples_per_s']} samples/s, IW K={r['k']} {x['iw_images_per_s']} img/s"
    for x in r["rows"]
  ]
  return f"{r['preset']}: " + "; ".join(parts), ""


def _train(r):
  return (
    f"{r['config']} batch {r['batch']}: {r['images_per_s']} img/s "
    f"(step {_f(r['step_s_median'], ' s')}, compile {_f(r['compile_s'], ' s')})",
    "",
  )


def _wavelets(r):
  return (
    f"5-level round trip {_f(r.get('mrflax_s'), ' s')}: {_f(r.get('over_copy'))}× a copy, "
    f"{_f(r.get('speedup_vs_pywt'))}× faster than PyWavelets",
    f"≤ 4× copy, ≥ 3× PyWavelets: {_goal(r['over_copy'] <= 4 and r['speedup_vs_pywt'] >= 3)}",
  )


def _ghm(r):
  rows = r["rows"]
  us = [x["full_us_per_leaf"] for x in rows]
  return f"exact BP, {len(rows)} depths: {min(us):.2f}–{max(us):.2f} µs per leaf (full pass)", ""


def _pytorch_vdvae(r):
  b = r["bench"]
  lo, hi = b["speedup_ci"]
  s = (
    f"{b['preset']} batch {b['batch']}, mrflax {b['mrflax_mode']} remat {b['mrflax_remat']}: "
    f"{b['mrflax_step_s']} s vs PyTorch {b['torch_step_s']} s per step; mrflax/PyTorch "
    f"images/s **{b['speedup_mrflax_over_torch']}** [{lo}, {hi}]; peak fraction "
    f"{b['mrflax_peak_fraction']:.0%} vs {b['torch_peak_fraction']:.0%}"
  )
  goal = b.get("speedup_goal")
  return s, (f"≥ {goal} (interval's lower end): {_goal(lo >= goal)}" if goal else "")


def _profile_step(r):
  m, t = r["mrflax"], r.get("torch")
  top = sorted(m["seconds"].items(), key=lambda kv: -kv[1])[:3]
  s = (
    f"{r['preset']} batch {r['batch']}, {r['threads']} thread(s): mrflax {m['step_s']} s "
    f"(most: {', '.join(f'{c} {v:.2f} s' for c, v in top)})"
  )
  if t:
    s += f"; PyTorch {t['step_s']} s"
  return s, ""


SUMMARIES: dict[str, Callable[[dict], tuple[str, str]]] = {
  "hvae_step": _hvae_step,
  "scan": _scan,
  "scan_settle": _scan_settle,
  "memory": _memory,
  "inference": _inference,
  "train_throughput": _train,
  "wavelets": _wavelets,
  "ghm_bp": _ghm,
  "pytorch_vdvae": _pytorch_vdvae,
  "profile_step": _profile_step,
}


def render(results: dict[str, dict]) -> str:
  """The markdown block for a set of results (name -> JSON object)."""
  lines = [
    START,
    "## Latest `make bench` run",
    "",
    "Generated by `python -m benchmarks.report` from `benchmarks/results/*.json`; figures are "
    "medians of repeats, ratios are measured within one run.",
    "",
  ]
  machines = set()
  for r in results.values():
    m = r.get("machine", r)  # some benchmarks nest the machine facts
    flags = f", XLA_FLAGS={m['xla_flags']}" if m.get("xla_flags") else ""
    machines.add(
      f"{m.get('cpu_count')}-core {m.get('processor')} {m.get('backend')}, jax {m.get('jax')}, "
      f"flax {m.get('flax')}{flags}"
    )
  lines += [f"Machine: {'; '.join(sorted(machines))}.", ""]
  lines += ["| benchmark | result | goal | recorded |", "|---|---|---|---|"]
  for name, r in sorted(results.items()):
    fn = SUMMARIES.get(r.get("benchmark", name))
    try:
      text, goal = fn(r) if fn else (", ".join(f"{k}={v}" for k, v in r.items()), "")
    except (KeyError, TypeError) as e:  # an older result file: show it raw
      text, goal = f"(unreadable: missing {e})", ""
    lines.append(f"| `{name}` | {text} | {goal} | {r.get('recorded', '-')} |")
  lines += ["", END]
  return "\n".join(lines)


def update_readme(readme: pathlib.Path, block: str) -> None:
  text = readme.read_text() if readme.exists() else "# mrflax benchmarks\n"
  if START in text and END in text:
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    text = head + block + tail
  else:  # first time: insert after the title line
    title, _, body = text.partition("\n")
    text = f"{title}\n\n{block}\n{body}"
  readme.write_text(text)


def main() -> None:
  results = {}
  for p in sorted((HERE / "results").glob("*.json")):
    r = json.loads(p.read_text())
    r.setdefault("recorded", datetime.date.fromtimestamp(p.stat().st_mtime).isoformat())
    results[p.stem] = r
  if not results:
    raise SystemExit("no results in benchmarks/results/: run `make bench` first")
  update_readme(HERE / "README.md", render(results))
  print(f"benchmarks/README.md: table of {len(results)} results written")


if __name__ == "__main__":
  main()
