"""Benchmark: images/s and compile time of the train step ``fit`` runs, for an experiment config.

The step is exactly the one ``mrflax.training.loop.fit`` compiles: ``Trainer.train_steps``
(VDVAE-semantics update with clipping, skipping and EMA; ``--steps_per_call`` iterations scanned
per call) under ``jax.jit`` with buffer donation and the data-parallel shardings over all
devices, for the model and optimiser of ``experiments/<config>/config.py``. Inputs are random
uint8 images of the dataset's shape passed through the config's preprocessing (no dataset
needed). Compile time (``lower().compile()``) is reported apart from the median call time over
``--repeats`` calls after one warm-up call.

Usage (the numbers in benchmarks/README.md, section "Train-step throughput"):

  python -m benchmarks.train_throughput --config fashion_mnist --batch 32 --repeats 10
  python -m benchmarks.train_throughput --config vdvae_cifar10 --batch 8 --repeats 2

Progress lines first, then one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import time

import jax
import numpy as np
from flax import nnx

from benchmarks import common
from experiments.hvae import from_config
from experiments.hvae import train as hvae_train
from mrflax import data, nn, sharding
from mrflax.training.steps import Trainer


def _batches(config, *, batch: int, steps_per_call: int, seed: int) -> dict[str, np.ndarray]:
  """``[k, batch, ...]`` preprocessed random images of the config's dataset shape."""
  spec = data.get_spec(config.data.name)
  prep = from_config.preprocess(config)
  rng = np.random.default_rng(seed)
  examples = []
  for _ in range(steps_per_call * batch):
    image = rng.integers(0, 256, spec.image_shape, dtype=np.uint8)
    examples.append(prep({"image": image, "label": 0}, rng))
  stacked = {k: np.stack([ex[k] for ex in examples]) for k in ("image", "target")}
  return {k: v.reshape(steps_per_call, batch, *v.shape[1:]) for k, v in stacked.items()}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="fashion_mnist", help="experiments/<config>/config.py")
  parser.add_argument("--variant", default="", help="config variant (e.g. shared)")
  parser.add_argument("--preset", default="", help="override model.preset (smoke tests: tiny8)")
  parser.add_argument("--batch", type=int, default=32, help="global batch size")
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--steps_per_call", type=int, default=1)
  args = parser.parse_args()
  if args.batch < 1 or args.repeats < 1 or args.steps_per_call < 1:
    parser.error("--batch, --repeats and --steps_per_call must be >= 1")

  config = importlib.import_module(f"experiments.{args.config}.config").get_config(
    args.variant or None
  )
  if args.preset:
    config.model.preset = args.preset
  spec = from_config.model_spec(config)
  policy = from_config.exec_policy(config)
  step_config = from_config.step_config(config)
  counts = nn.spec_param_count(spec)
  k = args.steps_per_call
  mesh = sharding.make_mesh()
  sharding.check_batch_divisible(args.batch, mesh)
  print(
    f"[train_throughput] {args.config}{':' + args.variant if args.variant else ''}: "
    f"preset {config.model.preset}, {counts.total:,} parameters, batch {args.batch}, "
    f"{k} step(s) per call, {jax.device_count()} {jax.default_backend()} device(s)",
    flush=True,
  )

  # -------------------------------------------------------------- state and step, as fit builds
  t0 = time.perf_counter()
  rep = sharding.replicated(mesh)
  model = nn.HVAE(spec, policy=policy, rngs=nnx.Rngs(config.seed))
  trainer = Trainer(model, hvae_train.hvae_loss, step_config)
  state = jax.device_put(trainer.init_state(model, jax.random.key(config.seed)), rep)
  del model
  init_s = time.perf_counter() - t0
  step_fn = jax.jit(
    trainer.train_steps,
    donate_argnums=0,
    in_shardings=(rep, sharding.batch_sharding(mesh, leading=1)),
    out_shardings=(rep, rep),
  )
  batches = sharding.shard_batch(
    _batches(config, batch=args.batch, steps_per_call=k, seed=1), mesh, leading=1
  )
  t0 = time.perf_counter()
  compiled = step_fn.lower(state, batches).compile()
  compile_s = time.perf_counter() - t0
  print(f"[train_throughput] init {init_s:.1f} s, compile {compile_s:.1f} s", flush=True)

  # ------------------------------------------------------------------------------------- timing
  t0 = time.perf_counter()
  state, metrics = compiled(state, batches)
  jax.block_until_ready(metrics)
  print(f"[train_throughput] warm-up call {time.perf_counter() - t0:.2f} s", flush=True)
  times = []
  for i in range(args.repeats):
    t0 = time.perf_counter()
    state, metrics = compiled(state, batches)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
    print(
      f"[train_throughput] call {i}: {times[-1]:.3f} s, {args.batch * k / times[-1]:.1f} images/s",
      flush=True,
    )
  median = statistics.median(times)
  cost = compiled.cost_analysis()
  if isinstance(cost, list):  # older JAX: one dict per device
    cost = cost[0] if cost else {}
  result = dict(
    benchmark="train_throughput",
    config=args.config,
    variant=args.variant,
    preset=config.model.preset,
    params=counts.total,
    batch=args.batch,
    steps_per_call=k,
    repeats=args.repeats,
    init_s=round(init_s, 3),
    compile_s=round(compile_s, 3),
    call_s_median=round(median, 4),
    call_s_min=round(min(times), 4),
    call_s_max=round(max(times), 4),
    step_s_median=round(median / k, 4),
    images_per_s=round(args.batch * k / median, 2),
    images_per_s_best=round(args.batch * k / min(times), 2),
    loss=float(np.asarray(metrics["loss"])[-1]),
    skipped=int(np.sum(np.asarray(metrics["skipped"]))),
    flops_per_call=(cost or {}).get("flops"),
    **common.machine(),
  )
  common.emit(result)


if __name__ == "__main__":
  main()
