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

**Settle mode** (``--settle``, issue 14 item 5): one question only, is the scanned step within
``GOAL_UPPER`` (1.10) of the unrolled one at ``--ratio-depth``, answered with a confidence
interval instead of one noisy ratio. Only ``unrolled`` and ``scan`` are compiled (compile times
reported apart, one compile each). Then ``--warmup-rounds`` rounds are run and thrown away and
``--rounds`` rounds are kept; each round calls both steps once, unrolled first in even rounds and
scan first in odd ones (:func:`benchmarks.common.paired_rounds`), with Python's garbage collector
off. The per-round ratios scan ÷ unrolled go to :func:`benchmarks.common.ratio_stats`: geometric
mean with a Student-t interval on the mean log-ratio (the headline, ``ratio_ci_low`` /
``ratio_ci_high``), median with a bootstrap interval, and the geometric mean of the two orders
apart (``ratio_geomean_unrolled_first`` / ``..._scan_first``: far apart means order matters).
The goal is met when ``ratio_ci_high <= 1.10``. ``--scan-remat block`` puts each application
of the scanned step under ``jax.checkpoint`` (``ExecPolicy(remat="block")``; the unrolled step
stays without remat, its fastest form): on XLA:CPU that is the fastest scanned form, faster than
the unrolled step (benchmarks/README.md, "Settling scan vs unrolled").

Threads are pinned before JAX is imported (:func:`pin_threads`), ``--threads N`` (default: every
core this process may run on):

* ``PJRT_NPROC=N``: the size of XLA:CPU's intra-op (Eigen) thread pool, read by the PjRt CPU
  client when it is created (``DefaultThreadPoolSize`` in XLA: ``PJRT_NPROC``, then ``NPROC``,
  else ``tsl::port::MaxParallelism()``); XLA has no ``XLA_FLAGS`` flag for the pool size
  (``intra_op_parallelism_threads`` is a TensorFlow session option, not an XLA flag);
* ``os.sched_setaffinity``: the process (and every thread it starts later) runs on the first
  ``N`` cores of its current affinity set only (Linux; skipped where unavailable);
* ``OMP_NUM_THREADS=N``, in case a library in the process uses OpenMP;
* with ``N = 1`` also ``XLA_FLAGS+=--xla_cpu_multi_thread_eigen=false``: the Eigen matmul and
  convolution calls XLA:CPU generates use Eigen's single-threaded kernels (the flag: "When
  generating calls to Eigen in the CPU backend, use multi-threaded Eigen mode").

The JSON line (``benchmark="scan_settle"``) also carries every kept round's times and ratio, so
the interval can be recomputed. Run on an idle machine:
``python -m benchmarks.scan --settle [--rounds 60] [--warmup-rounds 5] [--threads N]
[--scan-remat none|block|resolution]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

# Nothing here imports JAX at module level: the settle mode pins threads before JAX is imported.

GOAL_UPPER = 1.10  # issue 14 item 5: the interval's upper end for scan ÷ unrolled

VARIANTS = {
  "unrolled": dict(exec_mode="unroll", conv_backward="xla"),
  "scan_xla": dict(exec_mode="scan", conv_backward="xla"),
  "scan": dict(exec_mode="scan", conv_backward="custom"),
  # Opt-in (``--variants``): the other corners of mode x VJP x remat, for the decomposition in
  # benchmarks/README.md ("Settling scan vs unrolled").
  "unrolled_custom": dict(exec_mode="unroll", conv_backward="custom"),
  "unrolled_block": dict(exec_mode="unroll", conv_backward="xla", remat="block"),
  "scan_block": dict(exec_mode="scan", conv_backward="custom", remat="block"),
}
DEFAULT_VARIANTS = ("unrolled", "scan_xla", "scan")


def spec_for(depth: int, width: int = 128):
  """The shared-weight HVAE with ``depth`` top-down applications (an ``HVAESpec``)."""
  from mrflax.nn import HVAESpec

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


def thread_pinning(
  threads: int | None, *, env: Mapping[str, str], cpus: Iterable[int] | None
) -> tuple[dict[str, str], list[int] | None]:
  """What :func:`pin_threads` changes (pure): the environment variables to set and the cores.

  ``threads`` (``None``: all of ``cpus``, or ``os.cpu_count()`` when ``cpus`` is unknown), the
  current environment ``env`` and the cores the process may run on (``None``: unknown).
  Returns ``(updates, cores)``: ``PJRT_NPROC`` and ``OMP_NUM_THREADS`` set to the count, and for
  one thread ``XLA_FLAGS`` with ``--xla_cpu_multi_thread_eigen=false`` appended (unless it already
  names that flag); ``cores`` are the first ``threads`` of ``cpus`` in ascending order.
  """
  available = sorted(cpus) if cpus is not None else None
  n = threads if threads is not None else len(available or []) or os.cpu_count() or 1
  if n < 1:
    raise ValueError(f"threads must be >= 1, got {n}")
  if available is not None and n > len(available):
    raise ValueError(f"{n} threads asked for, only cores {available} are available")
  updates = {"PJRT_NPROC": str(n), "OMP_NUM_THREADS": str(n)}
  flags = env.get("XLA_FLAGS", "")
  if n == 1 and "xla_cpu_multi_thread_eigen" not in flags:
    updates["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false".strip()
  return updates, (available[:n] if available is not None else None)


def pin_threads(threads: int | None) -> dict[str, Any]:
  """Pins XLA:CPU to ``threads`` threads on as many fixed cores (see the module docstring).

  Must run before JAX is imported: XLA reads ``PJRT_NPROC`` and ``XLA_FLAGS`` when it creates its
  CPU client, and threads inherit the affinity of the thread that starts them.
  Returns ``dict(threads=, cpus=, env=)`` for the JSON record.
  """
  if "jax" in sys.modules:
    raise RuntimeError("pin_threads must run before jax is imported")
  cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
  updates, cores = thread_pinning(threads, env=os.environ, cpus=cpus)
  os.environ.update(updates)
  if cores is not None:
    os.sched_setaffinity(0, cores)
  return dict(threads=int(updates["PJRT_NPROC"]), cpus=cores, env=updates)


def settle_rounds(
  unrolled: Callable[[], Any],
  scan: Callable[[], Any],
  *,
  rounds: int,
  warmup_rounds: int,
  confidence: float = 0.95,
) -> dict[str, Any]:
  """Times the two (compiled) steps in paired rounds and returns the ratio fields of the JSON.

  ``unrolled`` and ``scan`` are zero-argument callables (one train step each). Prints the
  per-round ratios' quartiles, the intervals and the goal; see the module docstring.
  """
  from benchmarks.common import paired_rounds, ratio_stats

  t = paired_rounds(unrolled, scan, rounds=rounds, warmup_rounds=warmup_rounds)
  times = {"unrolled": t["a"], "scan": t["b"]}
  st = ratio_stats(times["scan"], times["unrolled"], confidence=confidence)
  ratios = [s / u for s, u in zip(times["scan"], times["unrolled"], strict=True)]

  def by_order(unrolled_first: bool) -> float | None:
    keep = [i for i, a_first in enumerate(t["a_first"]) if a_first == unrolled_first]
    if len(keep) < 2:
      return None
    num, den = [times["scan"][i] for i in keep], [times["unrolled"][i] for i in keep]
    return round(ratio_stats(num, den, bootstrap=0)["geomean"], 4)

  q = statistics.quantiles(ratios, n=4, method="inclusive")
  med = {name: statistics.median(x) for name, x in times.items()}
  for name, x in med.items():
    print(
      f"[scan settle] {name:8s} step median {x * 1e3:8.2f} ms (min {min(times[name]) * 1e3:.2f})"
    )
  met = st["ci_high"] <= GOAL_UPPER
  print(
    f"[scan settle] {st['n']} rounds kept ({warmup_rounds} warm-up rounds discarded), "
    f"scan/unrolled per round: min {min(ratios):.3f}, quartiles {q[0]:.3f} / {q[1]:.3f} / "
    f"{q[2]:.3f}, max {max(ratios):.3f}\n"
    f"[scan settle] geometric mean {st['geomean']:.4f}, {st['confidence']:.0%} t-interval "
    f"[{st['ci_low']:.4f}, {st['ci_high']:.4f}]; median {st['median']:.4f} (bootstrap "
    f"[{st['median_ci_low']:.4f}, {st['median_ci_high']:.4f}]); by order: unrolled first "
    f"{by_order(True)}, scan first {by_order(False)}\n"
    f"[scan settle] goal: interval's upper end <= {GOAL_UPPER}: {'met' if met else 'NOT met'}",
    flush=True,
  )
  return dict(
    rounds=st["n"],
    warmup_rounds=warmup_rounds,
    order="alternating: unrolled first in even rounds, scan first in odd ones",
    step_s={name: round(x, 5) for name, x in med.items()},
    ratio_median=round(st["median"], 4),
    ratio_median_ci_low=round(st["median_ci_low"], 4),
    ratio_median_ci_high=round(st["median_ci_high"], 4),
    ratio_geomean=round(st["geomean"], 4),
    ratio_ci_low=round(st["ci_low"], 4),
    ratio_ci_high=round(st["ci_high"], 4),
    ratio_ci_level=st["confidence"],
    ratio_ci_method="Student t on the mean log-ratio, exponentiated (median: bootstrap)",
    ratio_log_sd=round(st["log_sd"], 5),
    ratio_geomean_unrolled_first=by_order(True),
    ratio_geomean_scan_first=by_order(False),
    goal_upper=GOAL_UPPER,
    goal_met=met,
    ratios=[round(r, 4) for r in ratios],
    times_s={name: [round(v, 5) for v in x] for name, x in times.items()},
  )


def settle(args: argparse.Namespace, pinned: dict[str, Any]) -> dict[str, Any]:
  """The settle mode (module docstring): compile both steps, then :func:`settle_rounds`."""
  from benchmarks.common import hvae_train_step, machine
  from mrflax.nn import ExecPolicy, spec_param_count

  d = args.ratio_depth
  spec = spec_for(d, args.width)
  print(
    f"[scan settle] threads {pinned['threads']} on cores {pinned['cpus']}, env {pinned['env']}",
    flush=True,
  )
  steps, compile_s = {}, {}
  for name in ("unrolled", "scan"):
    kw = dict(VARIANTS[name], remat=args.scan_remat) if name == "scan" else VARIANTS[name]
    b = hvae_train_step(spec, batch=args.batch, policy=ExecPolicy(**kw))
    steps[name], compile_s[name] = b["step"], round(b["compile_s"], 3)
    print(f"[scan settle] depth {d} {name:8s} compile {b['compile_s']:6.1f} s", flush=True)
  return dict(
    benchmark="scan_settle",
    ratio_depth=d,
    scan_remat=args.scan_remat,
    batch=args.batch,
    width=args.width,
    params=spec_param_count(spec).total,
    threads=pinned["threads"],
    cpus=pinned["cpus"],
    pinned_env=pinned["env"],
    compile_s=compile_s,
    **settle_rounds(
      steps["unrolled"],
      steps["scan"],
      rounds=args.rounds,
      warmup_rounds=args.warmup_rounds,
      confidence=args.confidence,
    ),
    **machine(),
  )


def main(argv: list[str] | None = None) -> None:
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
    default=list(DEFAULT_VARIANTS),
    choices=list(VARIANTS),
    help="which formulations to compile and time (unrolled and scan are always needed)",
  )
  ap.add_argument(
    "--compile-repeats", type=int, default=2, help="compiles per variant and depth; min is kept"
  )
  settle_args = ap.add_argument_group("settle mode (--settle: unrolled vs scan at --ratio-depth)")
  settle_args.add_argument(
    "--settle", action="store_true", help="paired rounds and a ratio interval (see the docstring)"
  )
  settle_args.add_argument("--rounds", type=int, default=60, help="rounds kept")
  settle_args.add_argument("--warmup-rounds", type=int, default=5, help="rounds discarded")
  settle_args.add_argument(
    "--threads", type=int, default=None, help="XLA:CPU threads and cores (default: all cores)"
  )
  settle_args.add_argument("--confidence", type=float, default=0.95)
  settle_args.add_argument(
    "--scan-remat",
    default="none",
    choices=["none", "block", "resolution"],
    help="remat policy of the scanned step (the unrolled one never rematerialises)",
  )
  args = ap.parse_args(argv)
  if args.settle and (args.rounds < 2 or args.warmup_rounds < 0):
    ap.error("--settle needs --rounds >= 2 and --warmup-rounds >= 0")
  if args.settle:
    pinned = pin_threads(args.threads)  # before anything imports JAX
    from benchmarks.common import emit

    emit(settle(args, pinned))
  else:
    sweep(args)


def sweep(args: argparse.Namespace) -> None:
  """The default mode: compile times over ``--depths``, step ratios at ``--ratio-depth``."""
  from benchmarks.common import emit, hvae_train_step, interleaved_times, machine, median_ratio
  from mrflax.nn import ExecPolicy, spec_param_count

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
    over_unrolled={n: round(median_ratio(t, times["unrolled"]), 3) for n, t in times.items()},
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
