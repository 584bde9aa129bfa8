"""Model specs: VDVAE's cifar10 / imagenet32 / imagenet64, small presets, parameter counting.

``get(name, **overrides)`` (``mrflax.nn.get_preset``) returns an
:class:`~mrflax.nn.hvae.spec.HVAESpec`; ``spec_param_count(spec)`` counts parameters from shapes
only (``nnx.eval_shape``), never allocating the model.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import nnx

from mrflax.nn.hvae.block import DecBlock
from mrflax.nn.hvae.model import HVAE
from mrflax.nn.hvae.spec import HVAESpec
from mrflax.nn.layers import Block

_PRESETS: dict[str, dict[str, Any]] = {
  "cifar10": dict(
    image_size=32,
    width=384,
    zdim=16,
    enc_blocks="32x11,32d2,16x6,16d2,8x6,8d2,4x3,4d4,1x3",
    dec_blocks="1x1,4m1,4x2,8m4,8x5,16m8,16x10,32m16,32x21",
  ),
  "imagenet32": dict(
    image_size=32,
    width=512,
    zdim=16,
    enc_blocks="32x15,32d2,16x9,16d2,8x8,8d2,4x6,4d4,1x6",
    dec_blocks="1x2,4m1,4x4,8m4,8x9,16m8,16x19,32m16,32x40",
  ),
  "imagenet64": dict(
    image_size=64,
    width=512,
    zdim=16,
    enc_blocks="64x11,64d2,32x20,32d2,16x9,16d2,8x8,8d2,4x7,4d4,1x5",
    dec_blocks="1x2,4m1,4x3,8m4,8x7,16m8,16x15,32m16,32x31,64m32,64x12",
  ),
  # tiny grey-level model for tests and doctests (8x8, width 16)
  "tiny8": dict(
    image_size=8,
    image_channels=1,
    width=16,
    zdim=4,
    enc_blocks="8x1,8d2,4x1,4d4,1x1",
    dec_blocks="1x1,4m1,4x1,8m4",
    likelihood="logistic",
  ),
  # smallest model (4x4 grey, width 8) for scan/unroll equivalence tests
  "micro4": dict(
    image_size=4,
    image_channels=1,
    width=8,
    zdim=2,
    enc_blocks="4x1,4d4,1x1",
    dec_blocks="1x1,4m1,4x2",
    likelihood="logistic",
  ),
  # tiny RGB model with a 2-mixture DMoL (8x8, width 16)
  "tiny8_rgb": dict(
    image_size=8,
    width=16,
    zdim=4,
    enc_blocks="8x1,8d2,4x1,4d4,1x1",
    dec_blocks="1x1,4m1,4x1,8m4",
    num_mixtures=2,
  ),
  # scikit-learn digits (8x8 grey levels) demo model
  "digits8": dict(
    image_size=8,
    image_channels=1,
    width=32,
    zdim=8,
    enc_blocks="8x2,8d2,4x2,4d4,1x2",
    dec_blocks="1x1,4m1,4x2,8m4,8x3",
    likelihood="logistic",
  ),
  # Fashion-MNIST / MNIST padded to 16x16? no: 28 -> 32 with the loss on the central 28x28
  "mnist32": dict(
    image_size=32,
    image_channels=1,
    width=64,
    zdim=8,
    enc_blocks="32x3,32d2,16x3,16d2,8x3,8d2,4x3,4d4,1x3",
    dec_blocks="1x1,4m1,4x2,8m4,8x3,16m8,16x4,32m16,32x6",
    likelihood="bernoulli",
    crop=2,
  ),
  "fashion32": dict(
    image_size=32,
    image_channels=1,
    width=64,
    zdim=8,
    enc_blocks="32x3,32d2,16x3,16d2,8x3,8d2,4x3,4d4,1x3",
    dec_blocks="1x1,4m1,4x2,8m4,8x3,16m8,16x4,32m16,32x6",
    likelihood="logistic",
    crop=2,
  ),
}


def names() -> tuple[str, ...]:
  """Names of the available presets.

  Examples:
    >>> "cifar10" in names()
    True
  """
  return tuple(_PRESETS)


def get(name: str, **overrides: Any) -> HVAESpec:
  """The spec of a named preset, with optional field overrides (e.g. ``share=2``).

  Args:
    name: one of :func:`names`.
    **overrides: :class:`~mrflax.nn.hvae.spec.HVAESpec` fields to replace (architecture only:
      execution settings belong to an :class:`~mrflax.nn.hvae.policy.ExecPolicy`).

  Returns:
    The validated spec.

  Examples:
    >>> get("cifar10").width
    384
    >>> get("tiny8", share="full").num_cells
    3
  """
  if name not in _PRESETS:
    raise ValueError(f"unknown preset {name!r}; available: {', '.join(_PRESETS)}")
  return HVAESpec(**{**_PRESETS[name], **overrides})


_VDVAE_KEYS = (
  "width",
  "zdim",
  "enc_blocks",
  "dec_blocks",
  "bottleneck_multiple",
  "custom_width_str",
  "no_bias_above",
  "num_mixtures",
  "image_size",
  "image_channels",
)


def from_vdvae_hparams(mapping: Mapping[str, Any], **overrides: Any) -> HVAESpec:
  """Builds a spec from a VDVAE hyperparameter mapping (``hps.py`` names).

  Reads ``width, zdim, enc_blocks, dec_blocks, bottleneck_multiple, custom_width_str,
  no_bias_above, num_mixtures, image_size, image_channels``; other keys (optimiser settings...)
  are ignored. ``dataset == "ffhq_256"`` selects VDVAE's 5-bit likelihood.

  Args:
    mapping: VDVAE hyperparameters (dict-like).
    **overrides: further spec fields.

  Returns:
    The spec.

  Examples:
    >>> hp = dict(width=16, zdim=4, enc_blocks="8x1,8d2,4x1,4d4,1x1",
    ...           dec_blocks="1x1,4m1,4x1,8m4", image_size=8, image_channels=3, lr=2e-4)
    >>> from_vdvae_hparams(hp).num_applications
    4
  """
  missing = [
    k for k in ("width", "zdim", "enc_blocks", "dec_blocks", "image_size") if k not in mapping
  ]
  if missing:
    raise ValueError(f"VDVAE hyperparameters missing: {missing}")
  kw = {k: mapping[k] for k in _VDVAE_KEYS if k in mapping and mapping[k] is not None}
  if kw.get("custom_width_str") is None:
    kw.pop("custom_width_str", None)
  if mapping.get("dataset") == "ffhq_256":
    kw["bits"] = 5
  return HVAESpec(**{**kw, **overrides})


@dataclasses.dataclass(frozen=True)
class ParamCount:
  """Parameter accounting of a spec.

  Attributes:
    total: distinct parameters.
    encoder: encoder parameters.
    decoder: decoder parameters (cells, start states, gain/bias, output head).
    decoder_cells: parameters of the decoder blocks (the distinct cells, plus the per-application
      parts under a component mask).
    num_applications: number of top-down block applications ``N_app``.
    num_cells: number of distinct decoder cells.
  """

  total: int
  encoder: int
  decoder: int
  decoder_cells: int
  num_applications: int
  num_cells: int


def _size(state) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(state)))


@functools.lru_cache(maxsize=256)
def _shape_count(kind: str, **kw: Any) -> int:
  """Parameters of one module, from ``nnx.eval_shape`` (cached per distinct configuration)."""
  ctor = {"block": Block, "dec": DecBlock}[kind]
  mod = nnx.eval_shape(lambda: ctor(**kw, rngs=nnx.Rngs(0)))
  return _size(nnx.state(mod, nnx.Param))


def spec_param_count(spec: HVAESpec) -> ParamCount:
  """Counts parameters from shapes only (``nnx.eval_shape``; nothing is allocated).

  Every distinct module configuration (encoder block, decoder cell) is shape-evaluated once and
  the counts are summed over the spec's structure; stem, start states, gain/bias and the output
  head are counted from their shapes. (Shape-evaluating a whole 100M-parameter model at once
  takes minutes on CPU because of per-variable tracing overhead in NNX; the test suite checks
  that this sum equals ``nnx.eval_shape`` of the whole model.)

  Args:
    spec: model spec.

  Returns:
    A :class:`ParamCount`.

  Examples:
    >>> spec_param_count(get("cifar10")).total
    39145700
  """
  film = 2 * spec.time_frequencies if spec.time_embedding else 0
  enc = 9 * spec.image_channels * spec.width + spec.width
  for res, down in spec.enc_pairs:
    w = spec.width_at(res)
    enc += _shape_count(
      "block",
      in_features=w,
      mid_features=spec.mid_at(res),
      out_features=w,
      residual=True,
      use_3x3=res > 2,
      down_rate=down,
    )

  def dec_count(r: int, components: tuple[str, ...]) -> int:
    return _shape_count(
      "dec",
      res=min(r, 3),  # only r > 2 matters for shapes
      width=spec.width_at(r),
      zdim=spec.zdim,
      num_applications=1,
      bottleneck_multiple=spec.bottleneck_multiple,
      film_features=film,
      components=components,
      shared_sigma=spec.shared_sigma,
    )

  cells = sum(dec_count(r, spec.shared_parts) for r in spec.cell_resolutions)
  if spec.own_parts:  # a component mask: the unshared parts exist once per application
    cells += sum(dec_count(r, spec.own_parts) for r, _ in spec.dec_pairs)
  dec = cells + sum(r * r * spec.width_at(r) for r in spec.bias_resolutions)
  dec += 2 * spec.width + spec.width * spec.out_channels + spec.out_channels
  return ParamCount(
    total=enc + dec,
    encoder=enc,
    decoder=dec,
    decoder_cells=cells,
    num_applications=spec.num_applications,
    num_cells=spec.num_cells,
  )


def spec_param_count_full(spec: HVAESpec) -> ParamCount:
  """As :func:`spec_param_count`, by shape-evaluating the whole model (slow for big specs).

  Examples:
    >>> spec_param_count_full(get("tiny8")) == spec_param_count(get("tiny8"))
    True
  """
  model = nnx.eval_shape(lambda: HVAE(spec, rngs=nnx.Rngs(0)))
  enc = _size(nnx.state(model.encoder, nnx.Param))
  dec = _size(nnx.state(model.decoder, nnx.Param))
  cells = _size(nnx.state(model.decoder.dec_blocks, nnx.Param))
  if model.decoder.dec_own is not None:
    cells += _size(nnx.state(model.decoder.dec_own, nnx.Param))
  return ParamCount(
    total=enc + dec,
    encoder=enc,
    decoder=dec,
    decoder_cells=cells,
    num_applications=spec.num_applications,
    num_cells=spec.num_cells,
  )
