"""Shared benchmark helpers: compile time apart from run time, medians, paired-ratio intervals,
machine facts."""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np


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


def paired_rounds(
  fa: Callable[[], Any], fb: Callable[[], Any], *, rounds: int, warmup_rounds: int = 0
) -> dict[str, list]:
  """Times two callables in ``warmup_rounds + rounds`` rounds of one call each, order alternated.

  Round ``i`` (warm-up rounds included) calls ``fa`` then ``fb`` when ``i`` is even and ``fb``
  then ``fa`` when it is odd, so that a cost of going first or second (caches, frequency
  ramps, the other program's leftovers) falls on both equally and cancels in the geometric mean
  of the per-round ratios. The first ``warmup_rounds`` rounds are timed and thrown away. Python's
  garbage collector is switched off while timing (as :mod:`timeit` does), after one collection.

  Returns ``dict(a=[...], b=[...], a_first=[...])``: per kept round the wall times of ``fa`` and
  ``fb`` (seconds, blocking on their outputs) and whether ``fa`` ran first.
  """
  if rounds < 1 or warmup_rounds < 0:
    raise ValueError(f"need rounds >= 1 and warmup_rounds >= 0, got {rounds}, {warmup_rounds}")
  out: dict[str, list] = {"a": [], "b": [], "a_first": []}
  was_enabled = gc.isenabled()
  gc.collect()
  gc.disable()
  try:
    for i in range(warmup_rounds + rounds):
      a_first = i % 2 == 0
      t = {}
      for name in ("a", "b") if a_first else ("b", "a"):
        f = fa if name == "a" else fb
        t0 = time.perf_counter()
        jax.block_until_ready(f())
        t[name] = time.perf_counter() - t0
      if i >= warmup_rounds:
        out["a"].append(t["a"])
        out["b"].append(t["b"])
        out["a_first"].append(a_first)
  finally:
    if was_enabled:
      gc.enable()
  return out


def student_t_cdf(t: float, df: int) -> float:
  """``P(T <= t)`` for Student's t with an integer number of degrees of freedom ``df >= 1``.

  The closed-form finite series of Abramowitz & Stegun 26.7.3 (odd ``df``) and 26.7.4 (even
  ``df``), in terms of ``theta = atan(|t| / sqrt(df))``: exact up to rounding, no SciPy needed.
  """
  if df < 1 or int(df) != df:
    raise ValueError(f"df must be a positive integer, got {df}")
  df = int(df)
  theta = math.atan(abs(t) / math.sqrt(df))
  s, c = math.sin(theta), math.cos(theta)
  term = total = 1.0
  if df % 2:  # A(t|df) = 2/pi (theta + sin cos (1 + 2/3 cos^2 + 2.4/3.5 cos^4 + ...))
    for k in range(1, (df - 3) // 2 + 1):
      term *= c * c * (2 * k) / (2 * k + 1)
      total += term
    a = 2 / math.pi * (theta + (s * c * total if df > 1 else 0.0))
  else:  # A(t|df) = sin (1 + 1/2 cos^2 + 1.3/2.4 cos^4 + ...)
    for k in range(1, (df - 2) // 2 + 1):
      term *= c * c * (2 * k - 1) / (2 * k)
      total += term
    a = s * total
  return 0.5 + math.copysign(0.5 * a, t)  # A = P(|T| <= |t|)


def _student_t_pdf(t: float, df: int) -> float:
  log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
  return math.exp(log_c - (df + 1) / 2 * math.log1p(t * t / df))


def student_t_quantile(p: float, df: int) -> float:
  """The ``p`` quantile of Student's t with ``df`` degrees of freedom, e.g.
  ``student_t_quantile(0.975, 10) = 2.2281...``: Newton's method on :func:`student_t_cdf` from
  the normal quantile (which lies below it), bisection where a step leaves the bracket."""
  if not 0 < p < 1:
    raise ValueError(f"p must be in (0, 1), got {p}")
  if p < 0.5:
    return -student_t_quantile(1 - p, df)
  lo, hi = 0.0, 1.0
  while student_t_cdf(hi, df) < p:
    lo, hi = hi, 2 * hi
  t = min(max(statistics.NormalDist().inv_cdf(p), lo), hi)
  for _ in range(200):
    f = student_t_cdf(t, df) - p
    lo, hi = (t, hi) if f < 0 else (lo, t)
    new = t - f / _student_t_pdf(t, df)
    if not lo <= new <= hi:
      new = 0.5 * (lo + hi)
    if abs(new - t) <= 1e-13 * max(1.0, t):
      return new
    t = new
  return t


def ratio_stats(
  num: list[float],
  den: list[float],
  *,
  confidence: float = 0.95,
  bootstrap: int = 2000,
  seed: int = 0,
) -> dict[str, Any]:
  """Statistics of the per-round ratios ``r[i] = num[i] / den[i]`` of paired timings.

  The typical ratio is the geometric mean ``exp(mean(log r))``: timing noise is multiplicative,
  and log-ratios make ``a / b`` and ``b / a`` symmetric. Its confidence interval is the
  Student-t interval of the mean log-ratio, exponentiated:
  ``exp(m ± t_{(1+confidence)/2, n-1} · s / sqrt(n))`` with ``m``, ``s`` the mean and sample
  standard deviation of ``log r`` (t quantile from :func:`student_t_quantile`, no SciPy). It
  assumes the rounds' log-ratios are independent draws around one value; pairing each round
  cancels load that drifts slowly, and noise that does not drift widens the interval instead of
  biasing it.

  The median of the ratios gets a percentile-bootstrap interval (``bootstrap`` resamples of the
  rounds with ``numpy.random.default_rng(seed)``: reproducible); ``bootstrap=0`` skips it.

  Returns ``dict(n, median, geomean, ci_low, ci_high, median_ci_low, median_ci_high, log_sd,
  confidence)``; ``ci_*`` bound the geometric mean, ``median_ci_*`` (``None`` when skipped)
  the median. Identical ``num`` and ``den`` give exactly ``[1, 1]``.
  """
  if len(num) != len(den):
    raise ValueError(f"num and den differ in length: {len(num)} vs {len(den)}")
  pair = np.asarray([num, den], dtype=np.float64)
  if pair.shape[1] < 2 or not np.all(np.isfinite(pair)) or np.any(pair <= 0):
    raise ValueError(f"need >= 2 rounds of finite positive times, got {pair.tolist()}")
  r = pair[0] / pair[1]
  if not 0 < confidence < 1:
    raise ValueError(f"confidence must be in (0, 1), got {confidence}")
  n = int(r.size)
  logs = np.log(r)
  m, s = float(logs.mean()), float(logs.std(ddof=1))
  half = student_t_quantile((1 + confidence) / 2, n - 1) * s / math.sqrt(n)
  out: dict[str, Any] = dict(
    n=n,
    median=float(np.median(r)),
    geomean=math.exp(m),
    ci_low=math.exp(m - half),
    ci_high=math.exp(m + half),
    median_ci_low=None,
    median_ci_high=None,
    log_sd=s,
    confidence=confidence,
  )
  if bootstrap:
    idx = np.random.default_rng(seed).integers(0, n, size=(bootstrap, n))
    meds = np.median(r[idx], axis=1)
    tail = 100 * (1 - confidence) / 2
    out["median_ci_low"] = float(np.percentile(meds, tail))
    out["median_ci_high"] = float(np.percentile(meds, 100 - tail))
  return out


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
