"""Host-side outputs of a run: JSON-lines metrics, TensorBoard event files, a progress line.

Metrics go to ``<workdir>/metrics.jsonl`` (one JSON object per record) and, as scalar summaries,
to a TensorBoard event file in ``<workdir>`` (``tensorboard --logdir <workdir>``), written with
the ``tensorboard`` package's event-file writer and protos: no TensorFlow needed. That package is
optional (``pip install 'mrflax[tensorboard]'``); without it only the JSON-lines file is written.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import sys
import time
from typing import Any

import numpy as np
from absl import logging

from mrflax._optional import import_optional, is_available


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
  """Appends records to ``<workdir>/<name>.jsonl`` and to a TensorBoard event file (process 0).

  Args:
    workdir: the run directory.
    name: base name of the JSON-lines file.
    enabled: write anything at all (``False`` on every process but 0).
    tensorboard: also write scalar summaries to an event file in ``workdir``: ``True`` requires
      the ``tensorboard`` package (an ImportError naming ``mrflax[tensorboard]`` otherwise),
      ``None`` (the default) writes them where it is installed, ``False`` never.
    start_step: the step a resumed run starts from. TensorBoard then drops the scalars an
      earlier, interrupted run logged after that step (a ``SessionLog.START`` event at
      ``start_step + 1``: TensorBoard purges from the step of that event on), so a
      resumed run's curves do not hold two values per step. The JSON-lines file keeps every
      record (readers should take the last record of a step).

  Examples:
    >>> import json, tempfile
    >>> w = MetricWriter(tempfile.mkdtemp())
    >>> w.write(10, {"loss": 2.5})
    >>> w.write(10, {"nats_per_dim": 3.0}, prefix="eval/")
    >>> w.close()
    >>> [sorted(json.loads(r)) for r in w.path.read_text().splitlines()]
    [['loss', 'step', 'time'], ['eval/nats_per_dim', 'step', 'time']]
  """

  def __init__(
    self,
    workdir: str | os.PathLike,
    name: str = "metrics",
    *,
    enabled: bool = True,
    tensorboard: bool | None = None,
    start_step: int | None = None,
  ):
    self.path = pathlib.Path(workdir) / f"{name}.jsonl"
    self.enabled = enabled
    self._events = None
    if not enabled:
      return
    self.path.parent.mkdir(parents=True, exist_ok=True)
    if tensorboard is None:
      tensorboard = is_available("tensorboard")
      if not tensorboard:
        logging.info("tensorboard is not installed: metrics go to %s only", self.path)
    if tensorboard:
      writer = import_optional(
        "tensorboard.summary.writer.event_file_writer",
        extra="tensorboard",
        purpose="MetricWriter(tensorboard=True)",
      )
      self._events = writer.EventFileWriter(os.fspath(self.path.parent))
      if start_step:
        from tensorboard.compat.proto import event_pb2

        start = event_pb2.SessionLog(status=event_pb2.SessionLog.START)
        self._events.add_event(
          event_pb2.Event(wall_time=time.time(), step=int(start_step) + 1, session_log=start)
        )

  @property
  def event_dir(self) -> pathlib.Path:
    """The directory holding the TensorBoard event file(s)."""
    return self.path.parent

  def write(self, step: int, metrics: dict[str, Any], *, prefix: str = "") -> None:
    """Writes one record; keys (and TensorBoard tags) get ``prefix`` (e.g. ``"eval/"``).

    Every scalar becomes a TensorBoard scalar; arrays go to the JSON-lines file only.
    """
    if not self.enabled:
      return
    now = time.time()
    values = {f"{prefix}{k}": v for k, v in to_python(metrics).items()}
    record = {"step": int(step), "time": now, **values}
    with self.path.open("a") as f:
      f.write(json.dumps(record) + "\n")
    if self._events is not None:
      from tensorboard.compat.proto import event_pb2, summary_pb2

      scalars = [
        summary_pb2.Summary.Value(tag=k, simple_value=float(v))
        for k, v in values.items()
        if _is_scalar(v)
      ]
      if scalars:
        summary = summary_pb2.Summary(value=scalars)
        self._events.add_event(event_pb2.Event(wall_time=now, step=int(step), summary=summary))
        self._events.flush()

  def close(self) -> None:
    """Flushes and closes the event file (further writes go to the JSON-lines file only)."""
    if self._events is not None:
      self._events.close()
      self._events = None


def _is_scalar(v: Any) -> bool:
  if isinstance(v, bool):
    return False
  if isinstance(v, (int, float)):
    return True
  return isinstance(v, str) and v in ("nan", "inf", "-inf")  # to_python's non-finite floats


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
