"""Benchmark: the shared-weight HVAE train step, scanned vs unrolled, and compile time vs depth.

Issue 7, item 1. A weight-shared HVAE (one cell per resolution, ``share="full"``) on 16x16 grey
images, width 128 (bottleneck 32, the block of ENGINEERING.md §5), zdim 8, batch 8, decoder
``1x1,4m1,4x1,8m4,8x1,16m8,16x{N-6}`` so that the number of top-down applications is ``N``.
For each depth ``N`` in ``--depths`` it AOT-compiles the train step (forward, backward, AdamW) in
three forms and times the compile on its own:

* ``unrolled``: Python-unrolled applications, JAX's automatic convolution VJP (the baseline);
* ``scan_xla``: ``lax.scan`` over the applications with JAX's automatic convolution VJP;
* ``scan``: ``lax.scan`` with mrflax's loop-friendly convolution VJP (``conv_backward="custom"``,
  mrflax.nn.conv_ops), the configuration issue 7 asks to make as fast as unrolled.

Step times are measured by alternating the variants call by call (median of the per-round
ratios, robust to load changes on a shared machine); compile times are the minimum over
``--compile-repeats`` compiles. The last line is one JSON object with
``scan_over_unrolled`` (scan ÷ unrolled step time at ``--ratio-depth``), ``scan_xla_over_unrolled``
and ``compile_64_over_8`` (scanned compile time at the largest depth ÷ at the smallest).

Run: ``python -m benchmarks.scan [--depths 8 64] [--ratio-depth 16] [--repeats 10]``.
"""

from __future__ import annotations

import argparse
import statistics

from benchmarks.common import emit, hvae_train_step, interleaved_times, machine, median_ratio
from mrflax.nn import ExecPolicy, HVAESpec, spec_param_count

VARIANTS = {
  "unrolled": dict(exec_mode="unroll", conv_backward="xla"),
  "scan_xla": dict(exec_mode="scan", conv_backward="xla"),
  "scan": dict(exec_mode="scan", conv_backward="custom"),
}


def spec_for(depth: int, width: int = 128) -> HVAESpec:
  if depth < 7:
    raise ValueError(f"depth must be >= 7, got {depth}")
  return HVAESpec(
    image_size=16,
    image_channels=1,
    width=width,
    zdim=8,
    enc_blocks="16x2,16d2,8x2,8d2,4x2,4d4,1x1",
    dec_blocks=f"1x1,4m1,4x1,8m4,8x1,16m8,16x{depth - 6}",
    likelihood="logistic",
    share="full",
  )


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--depths", type=int, nargs="+", default=[8, 64])
  ap.add_argument("--ratio-depth", type=int, default=16)
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--width", type=int, default=128)
  ap.add_argument("--repeats", type=int, default=10)
  ap.add_argument("--skip-unrolled-compile", action="store_true", help="skip unrolled at depths")
  ap.add_argument(
    "--variants",
    nargs="+",
    default=list(VARIANTS),
    choices=list(VARIANTS),
    help="which formulations to compile and time (unrolled and scan are always needed)",
  )
  ap.add_argument(
    "--compile-repeats", type=int, default=2, help="compiles per variant and depth; min is kept"
  )
  args = ap.parse_args()
  variants = {n: kw for n, kw in VARIANTS.items() if n in {"unrolled", "scan", *args.variants}}

  d = args.ratio_depth
  compile_s: dict[str, dict[int, float]] = {v: {} for v in variants}
  steps = {}
  for depth in sorted({*args.depths, d}):
    for name, kw in variants.items():
      if name == "unrolled" and args.skip_unrolled_compile and depth != d:
        continue
      spec, policy = spec_for(depth, args.width), ExecPolicy(**kw)
      b = hvae_train_step(spec, batch=args.batch, policy=policy)
      best = b["compile_s"]
      for _ in range(args.compile_repeats - 1):  # compile time is noisy on a shared machine
        best = min(best, hvae_train_step(spec, batch=args.batch, policy=policy)["compile_s"])
      compile_s[name][depth] = round(best, 3)
      print(f"[scan] depth {depth:3d} {name:9s} compile {best:6.1f} s (min of repeats)", flush=True)
      if depth == d:
        steps[name] = b
  times = interleaved_times({n: b["step"] for n, b in steps.items()}, repeats=args.repeats)
  med = {n: statistics.median(t) for n, t in times.items()}
  for n, t in med.items():
    print(f"[scan] depth {d} {n:9s} step {t * 1e3:8.1f} ms (min {min(times[n]) * 1e3:.1f})")
  lo, hi = min(args.depths), max(args.depths)
  result = dict(
    benchmark="scan",
    ratio_depth=d,
    batch=args.batch,
    width=args.width,
    params=spec_param_count(spec_for(d, args.width)).total,
    step_s={n: round(t, 4) for n, t in med.items()},
    scan_over_unrolled=round(median_ratio(times["scan"], times["unrolled"]), 3),
    scan_xla_over_unrolled=(
      round(median_ratio(times["scan_xla"], times["unrolled"]), 3) if "scan_xla" in times else None
    ),
    compile_s={n: {str(k): v for k, v in sorted(c.items())} for n, c in compile_s.items()},
    compile_64_over_8=round(compile_s["scan"][hi] / compile_s["scan"][lo], 3),
    depths=[lo, hi],
    flops=steps["scan"]["flops"],
    repeats=args.repeats,
    **machine(),
  )
  emit(result)


if __name__ == "__main__":
  main()
