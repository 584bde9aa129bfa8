"""Pictures a user wants after a run: image grids and per-block KL plots (PNG)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from jaxtyping import ArrayLike, Float, Int
from PIL import Image

from mrflax._optional import import_optional


def rescale_to_uint8(x: ArrayLike, *, low: float = -1.0, high: float = 1.0) -> np.ndarray:
  """Maps ``[low, high]`` linearly to uint8 ``[0, 255]``, rounding to the nearest level (clipped).

  For pictures of any real-valued array. Not the VDVAE quantisation of model samples, which
  truncates: that is :func:`mrflax.likelihoods.to_uint8` (the two differ by one level at
  about half of the inputs).

  >>> rescale_to_uint8(np.array([-1.0, 0.0, 1.0, 2.0])).tolist()
  [0, 128, 255, 255]
  """
  x = (np.asarray(x, np.float32) - low) / (high - low)
  return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def save_grid(
  rows: Sequence[np.ndarray], path: str | os.PathLike, *, scale: int = 1, pad: int = 1
) -> None:
  """Saves rows of uint8 images ``[n, h, w, c]`` (c = 1 or 3) as one PNG grid.

  Rows may have different lengths; short rows are filled with white. ``scale`` upsamples by
  pixel repetition (useful for 8x8 digits).
  """
  rows = [np.asarray(r) for r in rows]
  h, w, c = rows[0].shape[1:]
  ncol = max(len(r) for r in rows)
  grid = np.full(((h + pad) * len(rows) + pad, (w + pad) * ncol + pad, c), 255, np.uint8)
  for i, row in enumerate(rows):
    for j, im in enumerate(row):
      y, x = pad + i * (h + pad), pad + j * (w + pad)
      grid[y : y + h, x : x + w] = im
  if scale > 1:
    grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
  Image.fromarray(grid[..., 0] if c == 1 else grid).save(path)


def save_kl_plot(
  kl_per_block: Sequence[float] | Float[ArrayLike, " n"],
  resolutions: Sequence[int] | Int[ArrayLike, " n"],
  path: str | os.PathLike,
  *,
  title: str = "",
) -> None:
  """A bar chart of the KL of every top-down block (nats/dim), coloured by resolution."""
  matplotlib = import_optional("matplotlib", extra="plots", purpose="save_kl_plot")
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  kl = np.asarray(kl_per_block, np.float64)
  res = np.asarray(resolutions)
  fig, ax = plt.subplots(figsize=(max(5.0, 0.18 * len(kl) + 2), 3.0), dpi=100)
  for r in sorted(set(res.tolist())):
    idx = np.nonzero(res == r)[0]
    ax.bar(idx, kl[idx], label=f"{r}x{r}")
  ax.set_xlabel("top-down block")
  ax.set_ylabel("KL (nats/dim)")
  ax.set_title(title or f"KL per block (total {kl.sum():.4f} nats/dim)")
  ax.legend(fontsize=7, ncol=min(6, len(set(res.tolist()))))
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
