"""Grain input pipelines over random-access sources: sharded per process, seeded, resumable.

Training: ``source[process_index::process_count] -> shuffle(seed) -> repeat -> preprocess
(per-example RNG for dynamic binarisation) -> batch(per-process batch, drop_remainder)``. The
iterator's position is part of its state (``get_state`` / ``set_state``), so a checkpoint restores
the exact next batch.

Evaluation: every example exactly once, in order, padded to whole batches with a ``mask``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grain
import jax
import numpy as np

from mrflax.data.preprocess import Preprocess


def _process_info(process_index: int | None, process_count: int | None) -> tuple[int, int]:
  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  if not 0 <= index < count:
    raise ValueError(f"process_index {index} out of range for process_count {count}")
  return index, count


def per_process_batch(global_batch: int, process_count: int) -> int:
  """The share of a global batch one process loads; must divide evenly."""
  if global_batch <= 0 or global_batch % process_count:
    raise ValueError(
      f"global batch size {global_batch} must be a positive multiple of the number of "
      f"processes ({process_count})"
    )
  return global_batch // process_count


def train_dataset(
  source: Sequence[Any],
  *,
  global_batch: int,
  seed: int,
  preprocess: Preprocess | Callable[..., dict],
  process_index: int | None = None,
  process_count: int | None = None,
) -> grain.IterDataset:
  """An endless, shuffled, batched training stream for this process.

  Args:
    source: random-access examples (``len`` and ``__getitem__``), e.g. from
      :func:`mrflax.data.open_source`.
    global_batch: batch size summed over all processes.
    seed: shuffle (and dynamic-binarisation) seed; the same seed gives the same stream.
    preprocess: a :class:`~mrflax.data.Preprocess` (or any ``f(example[, rng]) -> dict``).
    process_index, process_count: this process's share (default: from JAX).

  Returns:
    A ``grain.IterDataset`` of dicts of numpy arrays with a leading per-process batch axis;
    ``iter(ds)`` is checkpointable.
  """
  index, count = _process_info(process_index, process_count)
  batch = per_process_batch(global_batch, count)
  ds = grain.MapDataset.source(source)[index::count]
  if len(ds) < batch:
    raise ValueError(
      f"this process's share of the data ({len(ds)} examples) is smaller than its batch ({batch})"
    )
  ds = ds.shuffle(seed=seed).repeat()
  if getattr(preprocess, "is_random", False):
    ds = ds.random_map(lambda ex, rng: preprocess(ex, rng), seed=seed + 1)
  else:
    ds = ds.map(preprocess)
  return ds.batch(batch, drop_remainder=True).to_iter_dataset()


def eval_batches(
  source: Sequence[Any],
  *,
  batch_size: int,
  preprocess: Preprocess | Callable[..., dict],
  seed: int = 0,
  process_index: int | None = None,
  process_count: int | None = None,
  rows: tuple[int, int] | None = None,
) -> Iterator[dict[str, np.ndarray]]:
  """Every example of this process's share exactly once, in batches padded with a ``mask``.

  The last batch is completed by repeating its first example with ``mask = 0``, so all batches
  have one shape (one compilation) and every real example counts once. Dynamic binarisation uses
  a fixed per-example RNG (``seed``), so evaluations are repeatable.

  Two ways to share the examples among processes:

  * by default, process ``i`` of ``n`` evaluates ``source[i::n]`` on its own;
  * with ``rows=(start, stop)`` (e.g. :func:`mrflax.sharding.process_rows`), the batches are
    the single-process ones, ``batch_size`` being the *global* batch: every example of
    ``source`` in order, with the same per-example RNG, and only rows ``start:stop`` of each
    batch (and of its ``mask``) are loaded and yielded. Every process gets the same number of
    batches; together they form the batches of a one-process evaluation, so an evaluation over
    a mesh that spans the processes gives the single-process result. ``process_index`` and
    ``process_count`` are then not used.
  """
  if rows is None:
    index, count = _process_info(process_index, process_count)
    first, last = 0, batch_size
  else:
    index, count = 0, 1
    first, last = rows
    if not 0 <= first < last <= batch_size:
      raise ValueError(f"rows {rows} are not a non-empty range within a batch of {batch_size}")
  ds = grain.MapDataset.source(source)[index::count]
  if getattr(preprocess, "is_random", False):
    ds = ds.random_map(lambda ex, rng: preprocess(ex, rng), seed=seed)
  else:
    ds = ds.map(preprocess)
  n = len(ds)
  for start in range(0, n, batch_size):
    real = min(start + batch_size, n) - start  # real examples in this (global) batch
    pad = None
    items = []
    for r in range(first, last):
      if r < real:
        items.append(ds[start + r])
      else:
        pad = ds[start] if pad is None else pad
        items.append(pad)
    mask = (np.arange(first, last) < real).astype(np.float32)
    out = {k: np.stack([it[k] for it in items]) for k in items[0]}
    out["mask"] = mask
    yield out


def array_source(images: np.ndarray, labels: np.ndarray | None = None) -> list[dict[str, Any]]:
  """An in-memory source (list of ``{"image", "label"}`` dicts) for tests and notebooks."""
  images = np.asarray(images)
  labels = np.zeros(len(images), np.int64) if labels is None else np.asarray(labels)
  return [{"image": images[i], "label": labels[i]} for i in range(len(images))]
