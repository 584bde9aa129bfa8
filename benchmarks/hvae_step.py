"""Benchmark: one HVAE train step (forward, backward, AdamW), unrolled vs scan vs shared weights.

Usage (CPU, the numbers in benchmarks/README.md, section "HVAE train step"):

  python benchmarks/hvae_step.py --preset cifar10 --batch 8 --mode unrolled
  python benchmarks/hvae_step.py --preset cifar10 --batch 8 --mode scan
  python benchmarks/hvae_step.py --preset cifar10 --batch 8 --mode shared --share 2

Modes: ``unrolled`` = unshared, Python-unrolled blocks; ``scan`` = unshared, ``lax.scan`` over the
stacked blocks of each resolution; ``shared`` = weight sharing with group size ``--share``
(default ``full``), scanned. Compile time (``lower().compile()``) is reported separately from the
median step time over ``--repeats`` calls after one warm-up. The last line of stdout is one JSON
object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import flax
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from mrflax.nn import HVAE, count_params, presets


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--preset", default="cifar10")
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--mode", choices=("unrolled", "scan", "shared"), default="unrolled")
  ap.add_argument("--share", default="full", help="group size k or 'full' (mode=shared)")
  ap.add_argument("--repeats", type=int, default=5)
  ap.add_argument("--scan-unroll", type=int, default=1)
  args = ap.parse_args()

  share = 1
  if args.mode == "shared":
    share = args.share if args.share == "full" else int(args.share)
  exec_mode = "unroll" if args.mode == "unrolled" else "scan"
  spec = presets.get(args.preset, share=share, exec_mode=exec_mode, scan_unroll=args.scan_unroll)
  counts = count_params(spec)

  t0 = time.perf_counter()
  model = HVAE(spec, rngs=nnx.Rngs(0))
  init_s = time.perf_counter() - t0
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tx = optax.adamw(2e-4, b1=0.9, b2=0.9, eps=1e-8, weight_decay=0.01)
  opt_state = tx.init(params)
  shape = (args.batch, spec.image_size, spec.image_size, spec.image_channels)
  x = jax.random.uniform(jax.random.key(1), shape, minval=-1.0, maxval=1.0)
  x = jnp.round((x + 1) * 127.5) / 127.5 - 1
  key = jax.random.key(2)

  def train_step(params, opt_state, x, key):
    def f(p):
      m = nnx.merge(graphdef, p, rest, copy=True)
      return m.loss(x, x, key)[0]

    loss, grads = jax.value_and_grad(f)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  t0 = time.perf_counter()
  compiled = jax.jit(train_step, donate_argnums=(0, 1)).lower(params, opt_state, x, key).compile()
  compile_s = time.perf_counter() - t0
  print(f"[hvae_step] {args.mode}: init {init_s:.1f} s, compile {compile_s:.1f} s", flush=True)
  t0 = time.perf_counter()
  params, opt_state, loss = compiled(params, opt_state, x, key)
  jax.block_until_ready(loss)
  print(f"[hvae_step] warm-up step {time.perf_counter() - t0:.2f} s", flush=True)
  times = []
  for i in range(args.repeats):
    t0 = time.perf_counter()
    params, opt_state, loss = compiled(params, opt_state, x, key)
    jax.block_until_ready(loss)
    times.append(time.perf_counter() - t0)
    print(f"[hvae_step] step {i}: {times[-1]:.2f} s", flush=True)
  cost = compiled.cost_analysis()
  if isinstance(cost, list):
    cost = cost[0] if cost else {}
  result = dict(
    preset=args.preset,
    batch=args.batch,
    mode=args.mode,
    share=share,
    scan_unroll=args.scan_unroll,
    params_total=counts.total,
    params_decoder_cells=counts.decoder_cells,
    n_applications=counts.n_applications,
    n_cells=counts.n_cells,
    init_s=round(init_s, 3),
    compile_s=round(compile_s, 3),
    step_s_median=round(statistics.median(times), 4),
    step_s_min=round(min(times), 4),
    step_s_max=round(max(times), 4),
    repeats=args.repeats,
    loss=float(loss),
    flops=(cost or {}).get("flops"),
    device=jax.devices()[0].device_kind,
    backend=jax.default_backend(),
    cpu_count=os.cpu_count(),
    machine=platform.machine(),
    jax=jax.__version__,
    flax=flax.__version__,
    xla_flags=os.environ.get("XLA_FLAGS", ""),
  )
  print(json.dumps(result))


if __name__ == "__main__":
  main()
