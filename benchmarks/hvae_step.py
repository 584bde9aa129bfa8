"""Benchmark: one HVAE train step (forward, backward, AdamW), unrolled vs scan vs shared weights.

Usage (CPU, the numbers in benchmarks/README.md, section "HVAE train step"):

  python -m benchmarks.hvae_step --preset cifar10 --batch 8 --mode unrolled
  python -m benchmarks.hvae_step --preset cifar10 --batch 8 --mode scan
  python -m benchmarks.hvae_step --preset cifar10 --batch 8 --mode shared --share 2

Modes: ``unrolled`` = unshared, Python-unrolled blocks; ``scan`` = unshared, ``lax.scan`` over the
stacked blocks of each resolution; ``shared`` = weight sharing with group size ``--share``
(default ``full``), scanned. ``--conv-backward`` picks the convolution VJP (``auto``: custom
on CPU, XLA's own elsewhere; ``xla``: JAX's own; ``custom``: mrflax.nn.conv_ops, fast inside loops
on CPU).
Compile time (``lower().compile()``) is reported apart from the median step time over
``--repeats`` calls after one warm-up. ``--compute-dtype bfloat16`` applies the precision policy
(bf16 convolutions; fp32 parameters, KL, likelihood and softplus/exp). The last line of stdout
is one JSON object with ``step_s`` (median seconds per step), ``compile_s`` and ``params``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax

from benchmarks.common import emit, hvae_train_step, machine, matmul_flops_per_s, unrolled_flops
from mrflax.nn import ExecPolicy, get_preset, spec_param_count

# issue 7: the published PyTorch VDVAE trains CIFAR-10 at about 8.9 s per step of batch 8 on a
# 2-core machine of this kind (fp32); a reference figure quoted by the issue, not measured here.
PYTORCH_CIFAR10_STEP_S = 8.9


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--preset", default="cifar10")
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--mode", choices=("unrolled", "scan", "shared"), default="unrolled")
  ap.add_argument("--share", default="full", help="group size k or 'full' (mode=shared)")
  ap.add_argument("--conv-backward", choices=("auto", "xla", "custom"), default="custom")
  ap.add_argument("--repeats", type=int, default=5)
  ap.add_argument("--scan-unroll", type=int, default=1)
  ap.add_argument(
    "--compute-dtype",
    choices=("float32", "bfloat16"),
    default="float32",
    help="precision policy: bfloat16 = bf16 convolutions, fp32 parameters, KL and likelihood",
  )
  args = ap.parse_args()

  share = 1
  if args.mode == "shared":
    share = args.share if args.share == "full" else int(args.share)
  spec = get_preset(args.preset, share=share)
  policy = ExecPolicy(
    exec_mode="unroll" if args.mode == "unrolled" else "scan",
    scan_unroll=args.scan_unroll,
    conv_backward=args.conv_backward,
    compute_dtype=None if args.compute_dtype == "float32" else args.compute_dtype,
  )
  counts = spec_param_count(spec)
  print(
    f"[hvae_step] {args.preset} {args.mode} (share={share}, conv_backward={args.conv_backward}, "
    f"{args.compute_dtype}): "
    f"{counts.total:,} parameters, {counts.num_applications} applications of "
    f"{counts.num_cells} cells",
    flush=True,
  )
  b = hvae_train_step(spec, batch=args.batch, policy=policy)
  print(f"[hvae_step] init {b['init_s']:.1f} s, compile {b['compile_s']:.1f} s", flush=True)
  t0 = time.perf_counter()
  loss = jax.block_until_ready(b["step"]())
  print(f"[hvae_step] warm-up step {time.perf_counter() - t0:.2f} s", flush=True)
  times = []
  for i in range(args.repeats):
    t0 = time.perf_counter()
    loss = jax.block_until_ready(b["step"]())
    times.append(time.perf_counter() - t0)
    print(f"[hvae_step] step {i}: {times[-1]:.2f} s", flush=True)
  step_s = statistics.median(times)
  # XLA counts a scanned body once: the model's FLOPs come from the unrolled program
  flops = (
    b["flops"] if args.mode == "unrolled" else unrolled_flops(spec, batch=args.batch, policy=policy)
  )
  peak = matmul_flops_per_s()
  model_rate = (flops or 0.0) / step_s
  print(
    f"[hvae_step] model {model_rate / 1e9:.1f} GFLOP/s = {model_rate / peak:.1%} of the "
    f"{peak / 1e9:.1f} GFLOP/s matmul peak measured now",
    flush=True,
  )
  extra = {}
  if args.preset == "cifar10" and args.batch == 8:
    extra["speedup_vs_pytorch_ref"] = round(PYTORCH_CIFAR10_STEP_S / step_s, 3)
  emit(
    dict(
      benchmark="hvae_step",
      preset=args.preset,
      batch=args.batch,
      mode=args.mode,
      share=share,
      conv_backward=args.conv_backward,
      scan_unroll=args.scan_unroll,
      compute_dtype=args.compute_dtype,
      params=counts.total,
      params_decoder_cells=counts.decoder_cells,
      n_applications=counts.num_applications,  # result keys kept (stored results, report.py)
      n_cells=counts.num_cells,
      init_s=round(b["init_s"], 3),
      compile_s=round(b["compile_s"], 3),
      step_s=round(statistics.median(times), 4),
      step_s_min=round(min(times), 4),
      step_s_max=round(max(times), 4),
      repeats=args.repeats,
      loss=float(loss),
      flops=flops,
      flops_compiled=b["flops"],
      images_per_s=round(args.batch / statistics.median(times), 3),
      matmul_gflops=round(peak / 1e9, 2),
      model_gflops=round(model_rate / 1e9, 2),
      peak_fraction=round(model_rate / peak, 4),
      **extra,
      **machine(),
    )
  )


if __name__ == "__main__":
  main()
