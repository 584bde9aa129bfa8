"""Benchmark: sampling speed and importance-weighted evaluation speed of an HVAE.

Issue 7, item 5. For a preset (default: the CIFAR-10 VDVAE configuration, 43 top-down blocks):

* **sampling**: ``model.sample(key, batch_size=B, temperature=1.0)`` (prior pass + likelihood
  sample), jitted, images/s;
* **IW evaluation**: :func:`mrflax.evaluation.hvae_log_weights` with ``K`` posterior samples per
  image (the encoder once, ``K`` vmapped top-down passes, ``--chunk`` at a time), images/s and
  posterior passes/s.

Each is AOT-compiled (compile time reported apart), warmed up once, then timed (median of
``--repeats``), for the decoder run unrolled and as ``lax.scan`` (``--modes``). The last line is
one JSON object.

Run: ``python -m benchmarks.inference [--preset cifar10] [--batch 8] [--iw-batch 2] [--k 8]``.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
from flax import nnx

from benchmarks.common import emit, machine, time_calls
from mrflax.evaluation import hvae_log_weights
from mrflax.nn import HVAE, ExecPolicy, get_preset, spec_param_count


def _compile(f, *args):
  t0 = time.perf_counter()
  c = jax.jit(f).lower(*args).compile()
  return c, time.perf_counter() - t0


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--preset", default="cifar10")
  ap.add_argument("--modes", nargs="+", default=["unroll", "scan"], choices=("unroll", "scan"))
  ap.add_argument("--batch", type=int, default=8, help="images per sampling call")
  ap.add_argument("--iw-batch", type=int, default=2, help="images per IW-evaluation call")
  ap.add_argument("--k", type=int, default=8, help="posterior samples per image (IW bound)")
  ap.add_argument("--chunk", type=int, default=0, help="samples per vmapped call (0: all K)")
  ap.add_argument("--repeats", type=int, default=3)
  args = ap.parse_args()

  rows = []
  for mode in args.modes:
    spec = get_preset(args.preset)
    model = HVAE(spec, policy=ExecPolicy(exec_mode=mode), rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    key = jax.random.key(1)

    def sample(state, key, graphdef=graphdef):
      m = nnx.merge(graphdef, state)
      return m.sample(key, batch_size=args.batch, temperature=1.0)

    shape = (args.iw_batch, spec.image_size, spec.image_size, spec.image_channels)
    x = jnp.round(jax.random.uniform(key, shape, minval=0, maxval=255)) / 127.5 - 1
    batch = {"image": x, "target": x}

    def log_weights(state, batch, key, graphdef=graphdef):
      m = nnx.merge(graphdef, state)
      return hvae_log_weights(m, batch, key, num_samples=args.k, chunk=args.chunk or None)

    cs, cs_s = _compile(sample, state, key)
    t_s = time_calls(lambda: cs(state, key), repeats=args.repeats)  # noqa: B023 (called now)
    ci, ci_s = _compile(log_weights, state, batch, key)
    t_i = time_calls(lambda: ci(state, batch, key), repeats=args.repeats)  # noqa: B023
    row = dict(
      mode=mode,
      sample_compile_s=round(cs_s, 2),
      sample_s=round(t_s["median_s"], 4),
      samples_per_s=round(args.batch / t_s["median_s"], 3),
      iw_compile_s=round(ci_s, 2),
      iw_s=round(t_i["median_s"], 4),
      iw_images_per_s=round(args.iw_batch / t_i["median_s"], 4),
      iw_posterior_passes_per_s=round(args.iw_batch * args.k / t_i["median_s"], 3),
    )
    print(f"[inference] {args.preset} {row}", flush=True)
    rows.append(row)
  emit(
    dict(
      benchmark="inference",
      preset=args.preset,
      params=spec_param_count(get_preset(args.preset)).total,
      batch=args.batch,
      iw_batch=args.iw_batch,
      k=args.k,
      chunk=args.chunk,
      repeats=args.repeats,
      rows=rows,
      **machine(),
    )
  )


if __name__ == "__main__":
  main()
