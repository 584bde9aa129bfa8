"""Benchmark: exact BP throughput (sequences/s) against depth L, showing cost linear in leaves.

For the RHM with v = 8, n_c = 8, m = 2, s = 2 and L = 2..10 (4 to 1,024 leaves), times

  * the full BP denoiser (upward + downward pass, all leaf marginals: ``leaf_posteriors``),
  * the upward pass only (the Bayes classifier: ``root_posterior``),

on a fixed batch of noisy sequences (σ = 0.75, float32). Compile time is measured apart
(``jax.jit(f).lower(...).compile()``), then one warm-up and the median of repeats with
``block_until_ready``. Linear cost means a constant time per leaf (``us_per_leaf``).

Run: ``python -m benchmarks.ghm_bp [--batch 64 --max_L 10 --repeats 10]``.
"""

from __future__ import annotations

import argparse

import jax

from benchmarks import common
from mrflax import ghm as G


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--min_L", type=int, default=2)
  parser.add_argument("--max_L", type=int, default=10)
  parser.add_argument("--repeats", type=int, default=10)
  args = parser.parse_args()

  rows = []
  for L in range(args.min_L, args.max_L + 1):
    model = G.random_hierarchy_model(jax.random.key(L), v=8, num_classes=8, m=2, s=2, num_levels=L)
    x = G.one_hot(G.sample(jax.random.key(1), model, args.batch), 8)
    z = G.add_noise(jax.random.key(2), x, sigma=0.75)
    row = {"L": L, "num_leaves": model.num_leaves}
    for name, fn in (
      ("full", lambda m, z: G.leaf_posteriors(m, z, sigma=0.75)),
      ("upward", lambda m, z: G.root_posterior(m, z, sigma=0.75)),
    ):
      r = common.bench_jit(fn, model, z, repeats=args.repeats)
      row[f"{name}_compile_s"] = round(r["compile_s"], 3)
      row[f"{name}_median_s"] = r["median_s"]
      row[f"{name}_seq_per_s"] = round(args.batch / r["median_s"], 1)
      row[f"{name}_us_per_leaf"] = round(1e6 * r["median_s"] / (args.batch * model.num_leaves), 3)
      row[f"{name}_flops"] = r["flops"]
    rows.append(row)
    print(
      f"L={L:2d} leaves={model.num_leaves:5d}  full {row['full_seq_per_s']:>10.1f} seq/s "
      f"({row['full_us_per_leaf']:.3f} us/leaf, compile {row['full_compile_s']:.2f} s)  "
      f"upward {row['upward_seq_per_s']:>10.1f} seq/s ({row['upward_us_per_leaf']:.3f} us/leaf)",
      flush=True,
    )
  common.emit({"benchmark": "ghm_bp", "batch": args.batch, "rows": rows, **common.machine()})


if __name__ == "__main__":
  main()
