"""Shared benchmark helpers: compile time separated from run time, medians, machine facts."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax


def machine() -> dict[str, Any]:
  """What ran the benchmark: device, core count and library versions."""
  import flax

  dev = jax.devices()[0]
  return {
    "backend": jax.default_backend(),
    "device": getattr(dev, "device_kind", str(dev)),
    "cpu_count": os.cpu_count(),
    "processor": platform.processor() or platform.machine(),
    "jax": jax.__version__,
    "flax": flax.__version__,
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
  }


def time_calls(f: Callable[[], Any], *, repeats: int, warmup: int = 1) -> dict[str, float]:
  """Median / min / max wall time of ``f()`` (blocking on its outputs)."""
  for _ in range(warmup):
    jax.block_until_ready(f())
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(f())
    times.append(time.perf_counter() - t0)
  return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def interleaved_times(fns: dict[str, Callable[[], Any]], *, repeats: int) -> dict[str, list]:
  """Times several callables in alternation (a, b, c, a, b, c, ...), one warm-up call each.

  Alternating makes ratios between them robust to load that changes during the run (shared
  machines): take the median of the per-round ratios.
  """
  for f in fns.values():
    jax.block_until_ready(f())
  times: dict[str, list] = {name: [] for name in fns}
  for _ in range(repeats):
    for name, f in fns.items():
      t0 = time.perf_counter()
      jax.block_until_ready(f())
      times[name].append(time.perf_counter() - t0)
  return times


def median_ratio(num: list[float], den: list[float]) -> float:
  """Median of the per-round ratios ``num[i] / den[i]``."""
  return statistics.median(a / b for a, b in zip(num, den, strict=True))


def bench_jit(fn: Callable, *args, repeats: int = 10) -> dict[str, Any]:
  """Ahead-of-time compiles ``fn`` for ``args`` (timed on its own), then times the calls."""
  t0 = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  compile_s = time.perf_counter() - t0
  out = time_calls(lambda: compiled(*args), repeats=repeats)
  out["compile_s"] = compile_s
  cost = compiled.cost_analysis()
  if isinstance(cost, list):  # older JAX returned one dict per device
    cost = cost[0] if cost else {}
  out["flops"] = (cost or {}).get("flops")
  out["bytes_accessed"] = (cost or {}).get("bytes accessed")
  return out


def matmul_flops_per_s(n: int = 2048, *, repeats: int = 10) -> float:
  """Dense float32 matmul throughput of this machine (FLOP/s, best of ``repeats``), the peak that
  model FLOP rates are compared with (measure it in the same run)."""
  a = jax.random.normal(jax.random.key(0), (n, n), jax.numpy.float32)
  f = jax.jit(lambda a: a @ a).lower(a).compile()
  t = time_calls(lambda: f(a), repeats=repeats)
  return 2 * n**3 / t["min_s"]


def _train_step(
  spec: Any, *, batch: int, seed: int, policy: Any = None
) -> tuple[Callable, tuple, float]:
  """The HVAE train step function, its arguments and the model's init time (no compile)."""
  import optax
  from flax import nnx

  from mrflax.nn import HVAE

  t0 = time.perf_counter()
  model = HVAE(spec, policy=policy, rngs=nnx.Rngs(seed))
  init_s = time.perf_counter() - t0
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tx = optax.adamw(2e-4, b1=0.9, b2=0.9, eps=1e-8, weight_decay=0.01)
  opt_state = tx.init(params)
  shape = (batch, spec.image_size, spec.image_size, spec.image_channels)
  x = jax.random.uniform(jax.random.key(seed + 1), shape, minval=-1.0, maxval=1.0)
  x = jax.numpy.round((x + 1) * 127.5) / 127.5 - 1
  key = jax.random.key(seed + 2)

  def train_step(params, opt_state, x, key):
    def f(p):
      m = nnx.merge(graphdef, p, rest, copy=True)
      return m.loss(x, x, key)[0]

    loss, grads = jax.value_and_grad(f)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return train_step, (params, opt_state, x, key), init_s


def _flops(cost: Any) -> float | None:
  if isinstance(cost, list):
    cost = cost[0] if cost else {}
  return (cost or {}).get("flops")


def hvae_train_step(spec: Any, *, batch: int, seed: int = 0, policy: Any = None) -> dict[str, Any]:
  """An AOT-compiled HVAE train step (forward, backward, AdamW with VDVAE's settings).

  ``spec`` is an ``HVAESpec``, ``policy`` an ``ExecPolicy`` (``None``: the default policy).

  Returns ``dict(step=callable() -> loss, compile_s=..., init_s=..., flops=..., compiled=...)``;
  each ``step()`` call advances the parameters (buffers donated), on random 8-bit targets.
  ``flops`` is XLA's cost analysis of the compiled program, which counts a ``while`` (scan) body
  once: use :func:`unrolled_flops` for the model FLOPs of a scanned model.
  """
  train_step, args, init_s = _train_step(spec, batch=batch, seed=seed, policy=policy)
  t0 = time.perf_counter()
  compiled = jax.jit(train_step, donate_argnums=(0, 1)).lower(*args).compile()
  compile_s = time.perf_counter() - t0
  state = {"params": args[0], "opt": args[1]}
  x, key = args[2], args[3]

  def step():
    state["params"], state["opt"], loss = compiled(state["params"], state["opt"], x, key)
    return loss

  return dict(
    step=step,
    compile_s=compile_s,
    init_s=init_s,
    flops=_flops(compiled.cost_analysis()),
    compiled=compiled,
  )


def unrolled_flops(spec: Any, *, batch: int, policy: Any = None) -> float | None:
  """FLOPs of one train step of ``spec`` with every stack unrolled (traced and lowered, not
  compiled): the model's real operation count, where XLA counts a scanned body only once."""
  from mrflax.nn import ExecPolicy

  policy = policy or ExecPolicy()
  unrolled = policy.replace(exec_mode="unroll", exec_overrides=(), remat="none", scan_unroll=1)
  train_step, args, _ = _train_step(spec, batch=batch, seed=0, policy=unrolled)
  return _flops(jax.jit(train_step).lower(*args).cost_analysis())


def emit(result: dict[str, Any]) -> None:
  """Prints the result as one JSON object on the last line of output."""
  print(json.dumps(result, sort_keys=True), flush=True)
