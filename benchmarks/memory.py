"""Benchmark: peak memory (XLA memory analysis) and step time per rematerialisation policy.

Issue 7, item 3. For each preset (default: the CIFAR-10 and ImageNet32 VDVAE configurations) and
each remat policy (``none``, ``block``: every block application under ``jax.checkpoint``,
``resolution``: every resolution's stack under one ``jax.checkpoint``), the train step (forward,
backward, AdamW) is AOT-compiled and ``compiled.memory_analysis()`` read: temporaries, arguments,
outputs, aliased (donated) bytes, and the peak estimate ``temp + arguments + outputs - alias``.
Then the step is timed (median of ``--repeats`` after one warm-up; ``--repeats 0`` = memory
only). The stacks run as ``lax.scan`` with mrflax's loop-friendly convolution VJP by default
(``--exec-mode``, ``--conv-backward``). The last line is one JSON object.

Run: ``python -m benchmarks.memory [--presets cifar10 imagenet32] [--batch 8] [--repeats 2]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax

from benchmarks.common import emit, hvae_train_step, machine
from mrflax.nn import ExecPolicy, get_preset, spec_param_count

POLICIES = ("none", "block", "resolution")
MiB = 2**20


def _available_mib() -> float | None:
  """MemAvailable from /proc/meminfo (Linux), in MiB; None where it cannot be read."""
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) / 1024
  except OSError:
    return None
  return None


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--presets", nargs="+", default=["cifar10", "imagenet32"])
  ap.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--repeats", type=int, default=2)
  ap.add_argument("--exec-mode", default="scan", choices=("unroll", "scan"))
  ap.add_argument("--conv-backward", default="custom", choices=("auto", "xla", "custom"))
  args = ap.parse_args()

  rows = []
  for name in args.presets:
    for policy in args.policies:
      spec = get_preset(name)
      execution = ExecPolicy(
        exec_mode=args.exec_mode, remat=policy, conv_backward=args.conv_backward
      )
      b = hvae_train_step(spec, batch=args.batch, policy=execution)
      mem = b["compiled"].memory_analysis()
      row = dict(
        preset=name,
        remat=policy,
        params=spec_param_count(spec).total,
        compile_s=round(b["compile_s"], 2),
        temp_mib=round(mem.temp_size_in_bytes / MiB, 1),
        argument_mib=round(mem.argument_size_in_bytes / MiB, 1),
        output_mib=round(mem.output_size_in_bytes / MiB, 1),
        alias_mib=round(mem.alias_size_in_bytes / MiB, 1),
        peak_mib=round(
          (
            mem.temp_size_in_bytes
            + mem.argument_size_in_bytes
            + mem.output_size_in_bytes
            - mem.alias_size_in_bytes
          )
          / MiB,
          1,
        ),
        flops=b["flops"],
      )
      avail = _available_mib()
      if args.repeats and avail is not None and row["peak_mib"] > 0.9 * avail:
        row["step_s"] = None  # running it would swap or be killed: say so instead
        print(
          f"[memory] {name} {policy}: step not timed, XLA's peak estimate "
          f"{row['peak_mib']:.0f} MiB exceeds 90% of the {avail:.0f} MiB available",
          flush=True,
        )
      elif args.repeats:
        jax.block_until_ready(b["step"]())
        times = []
        for _ in range(args.repeats):
          t0 = time.perf_counter()
          jax.block_until_ready(b["step"]())
          times.append(time.perf_counter() - t0)
        row["step_s"] = round(statistics.median(times), 3)
      print(f"[memory] {row}", flush=True)
      rows.append(row)
      del b
  emit(
    dict(
      benchmark="memory",
      batch=args.batch,
      exec_mode=args.exec_mode,
      conv_backward=args.conv_backward,
      rows=rows,
      **machine(),
    )
  )


if __name__ == "__main__":
  main()
