"""Host-side outputs of a run: JSON-lines metrics, a progress line with steps/s and ETA."""

from __future__ import annotations

import json
import math
import os
import pathlib
import sys
import time
from typing import Any

import numpy as np


def to_python(tree: Any) -> Any:
  """Numpy/JAX scalars and arrays to JSON-friendly Python values (nested dicts and lists)."""
  if isinstance(tree, dict):
    return {str(k): to_python(v) for k, v in tree.items()}
  if isinstance(tree, (list, tuple)):
    return [to_python(v) for v in tree]
  arr = np.asarray(tree)
  if arr.ndim == 0:
    value = arr.item()
    if isinstance(value, float) and not math.isfinite(value):
      return str(value)  # JSON has no NaN/inf
    return value
  return to_python(arr.tolist())


class MetricWriter:
  """Appends one JSON object per record to ``<workdir>/<name>.jsonl`` (process 0 only)."""

  def __init__(self, workdir: str | os.PathLike, name: str = "metrics", *, enabled: bool = True):
    self.path = pathlib.Path(workdir) / f"{name}.jsonl"
    self.enabled = enabled
    if enabled:
      self.path.parent.mkdir(parents=True, exist_ok=True)

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    if not self.enabled:
      return
    record = {"step": int(step), "time": time.time(), **to_python(metrics)}
    with self.path.open("a") as f:
      f.write(json.dumps(record) + "\n")


class Progress:
  """A progress line: step, rate (steps/s), ETA and chosen metrics.

  On a terminal the line is redrawn in place; otherwise (CI, files) one line per update.
  """

  def __init__(self, total: int, *, start: int = 0, stream=None, width: int = 24):
    self.total = total
    self.start_step = start
    self.stream = stream or sys.stdout
    self.width = width
    self.t0 = time.perf_counter()
    self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

  def rate(self, step: int) -> float:
    elapsed = time.perf_counter() - self.t0
    return (step - self.start_step) / elapsed if elapsed > 0 else 0.0

  def line(self, step: int, metrics: dict[str, float]) -> str:
    rate = self.rate(step)
    eta = (self.total - step) / rate if rate > 0 else float("inf")
    frac = step / max(self.total, 1)
    bar = "#" * int(frac * self.width) + "." * (self.width - int(frac * self.width))
    shown = " ".join(f"{k}={_fmt(v)}" for k, v in metrics.items())
    return f"[{bar}] {step}/{self.total} {rate:.2f} steps/s ETA {_duration(eta)} {shown}"

  def update(self, step: int, metrics: dict[str, float]) -> None:
    text = self.line(step, metrics)
    if self.tty:
      self.stream.write("\r" + text + "\x1b[K")
      if step >= self.total:
        self.stream.write("\n")
    else:
      self.stream.write(text + "\n")
    self.stream.flush()


def _fmt(v: float) -> str:
  v = float(v)
  if not math.isfinite(v):
    return str(v)
  if v == int(v) and abs(v) < 1e6:
    return str(int(v))
  return f"{v:.4g}"


def _duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
