"""Per-example preprocessing: VDVAE-exact normalisation, bit reduction, binarisation, padding.

All functions act on one numpy example (uint8 ``[h, w, c]``) on the host, inside the Grain
pipeline; nothing here runs on the accelerator.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

#: VDVAE's input normalisation ``(shift, scale)`` by dataset: input = (x + shift) * scale, one
#: scalar for all channels (VDVAE_REFERENCE.md §10). Datasets not listed use the symmetric map
#: to [-1, 1].
VDVAE_INPUT_NORMALIZATION: dict[str, tuple[float, float]] = {
  "cifar10": (-120.63838, 1.0 / 64.16736),
  "imagenet32": (-116.2373, 1.0 / 69.37404),
  "imagenet64": (-115.92961967, 1.0 / 69.37404),
}
_SYMMETRIC = (-127.5, 1.0 / 127.5)


def reduce_bits(x: np.ndarray, bits: int) -> np.ndarray:
  """Keeps the top ``bits`` bits of uint8 values: ``floor(x / 2^(8-bits)) * 2^(8-bits)``."""
  if not 1 <= bits <= 8:
    raise ValueError(f"bits must be in 1..8, got {bits}")
  step = 2 ** (8 - bits)
  return (np.asarray(x, np.uint8) // step) * step


def to_target(x: np.ndarray, *, bits: int = 8) -> np.ndarray:
  """Discretised-likelihood target in [-1, 1]: ``(reduce_bits(x) - 127.5) / 127.5``."""
  return ((reduce_bits(x, bits).astype(np.float32) - 127.5) / 127.5).astype(np.float32)


def normalize_input(x: np.ndarray, *, dataset: str) -> np.ndarray:
  """Network input: ``(x + shift) * scale`` with VDVAE's constants for ``dataset``."""
  shift, scale = VDVAE_INPUT_NORMALIZATION.get(dataset, _SYMMETRIC)
  return ((np.asarray(x, np.float32) + shift) * scale).astype(np.float32)


def binarize(x: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
  """Binary image in {0, 1}: dynamic (Bernoulli(x / 255), with ``rng``) or static (x > 127)."""
  p = np.asarray(x, np.float32) / 255.0
  if rng is None:
    return (p > 0.5).astype(np.float32)
  return (rng.random(p.shape, dtype=np.float32) < p).astype(np.float32)


def pad_to(x: np.ndarray, size: int, *, value: float = 0.0) -> np.ndarray:
  """Pads an ``[h, w, c]`` image symmetrically to ``[size, size, c]`` (28 -> 32 adds 2 per side)."""
  h, w = x.shape[:2]
  if h > size or w > size or (size - h) % 2 or (size - w) % 2:
    raise ValueError(f"cannot pad an image of size {h}x{w} symmetrically to {size}x{size}")
  ph, pw = (size - h) // 2, (size - w) // 2
  return np.pad(x, ((ph, ph), (pw, pw), (0, 0)), constant_values=value)


@dataclasses.dataclass(frozen=True)
class Preprocess:
  """Turns a stored example into the arrays a model consumes.

  Output: ``{"image": float32 [H, W, C] network input, "target": float32 [H, W, C],
  "label": int32}``. Targets are in [-1, 1] (discretised likelihoods) or {0, 1}
  (``binarize="dynamic" | "static"``, where the input is the binary image too).

  Attributes:
    dataset: dataset name (selects VDVAE's input normalisation where it has one).
    bits: bit depth of the target (8, or 5 as for FFHQ-256).
    binarize: ``"none"``, ``"dynamic"`` (a fresh Bernoulli draw per example and epoch) or
      ``"static"`` (threshold at 0.5).
    pad_to: optional square size to pad to (binarised MNIST: 28 -> 32).
  """

  dataset: str
  bits: int = 8
  binarize: str = "none"
  pad_to: int | None = None

  def __post_init__(self):
    if self.binarize not in ("none", "dynamic", "static"):
      raise ValueError(f"binarize must be 'none', 'dynamic' or 'static', got {self.binarize!r}")
    reduce_bits(np.zeros(1, np.uint8), self.bits)  # validates bits

  @property
  def is_random(self) -> bool:
    return self.binarize == "dynamic"

  def __call__(
    self, example: dict[str, Any], rng: np.random.Generator | None = None
  ) -> dict[str, np.ndarray]:
    image = np.asarray(example["image"])
    if image.ndim == 2:
      image = image[..., None]
    if self.binarize != "none":
      target = binarize(image, rng if self.binarize == "dynamic" else None)
      inp = target
    else:
      target = to_target(image, bits=self.bits)
      inp = normalize_input(reduce_bits(image, self.bits), dataset=self.dataset)
    if self.pad_to is not None:
      fill_target = 0.0 if self.binarize != "none" else -1.0
      fill_input = (
        0.0
        if self.binarize != "none"
        else float(normalize_input(np.zeros(1, np.uint8), dataset=self.dataset)[0])
      )
      inp = pad_to(inp, self.pad_to, value=fill_input)
      target = pad_to(target, self.pad_to, value=fill_target)
    return {"image": inp, "target": target, "label": np.asarray(example.get("label", 0), np.int32)}
