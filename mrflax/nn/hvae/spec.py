r"""The architecture of a (possibly weight-shared) VDVAE-style HVAE: :class:`HVAESpec`.

Only fields that change the parameter tree or the maths live here; how the model is executed
(scan or unroll, rematerialisation, convolution VJP, precision) is an
:class:`~mrflax.nn.hvae.policy.ExecPolicy`. The derived structure (parsed block strings,
segments, the cell of every application, the resolution of every cell) is computed once, in
``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import chex

from mrflax import likelihoods as lk
from mrflax.nn import blockstr

COMPONENTS = ("posterior", "prior", "z_proj", "residual")
"""Sub-networks of a decoder block (THEORY.md §5.3 item 2), VDVAE's ``enc/prior/z_proj/resnet``."""
STEP_SIZES = ("absorbed", "explicit")

Segment = tuple[int, int | None, int, int]
"""``(res, extra, start, stop)``: a maximal run of blocks at one resolution."""


def _segments(pairs, *, encoder: bool) -> tuple[Segment, ...]:
  """Maximal runs of blocks at one resolution.

  Decoder: a mixin (``m``) block starts a run. Encoder: a pooling (``d``) block is a run of its
  own (its output has another resolution).
  """
  segs: list[list] = []
  for i, (res, extra) in enumerate(pairs):
    prev_open = segs and segs[-1][0] == res and (not encoder or segs[-1][1] is None)
    if prev_open and extra is None:
      segs[-1][3] = i + 1
    else:
      segs.append([res, extra, i, i + 1])
  return tuple((r, e, a, b) for r, e, a, b in segs)


@dataclasses.dataclass(frozen=True, kw_only=True)
class HVAESpec:
  r"""Architecture of a (possibly weight-shared) VDVAE-style HVAE.

  Construction validates every field and how the fields fit together; a setting the model would
  ignore (``share_components`` with ``share=1``, ``time_local`` without ``time_embedding``, ...)
  is an error, not a silent no-op.

  Attributes:
    image_size: side length of the square images (a power of two).
    image_channels: channels of the images (3 for the DMoL).
    width: width at the image resolution (stem, gain/bias, output head).
    zdim: latent channels per pixel.
    enc_blocks: encoder block string (``x`` and ``d`` tokens).
    dec_blocks: decoder block string (``x`` and ``m`` tokens).
    bottleneck_multiple: bottleneck width factor (mid = int(w * multiple)).
    custom_width_str: ``"r:w,..."`` per-resolution widths (resolutions of the model, once each).
    no_bias_above: resolutions above this start from zeros instead of a learned state.
    likelihood: a name of :data:`mrflax.likelihoods.LIKELIHOODS`: ``"dmol"`` (RGB),
      ``"bernoulli"`` (binary) or ``"logistic"`` (grey levels).
    num_mixtures: DMoL mixtures (DMoL only).
    bits: bit depth of DMoL / logistic targets (8, or 5 = VDVAE's low-bit mode; not Bernoulli).
    crop: pixels per side excluded from the likelihood (e.g. 2 for MNIST padded to 32).
    share: sharing group size ``k`` (1 = unshared VDVAE) or ``"full"``.
    share_components: which sub-networks of a decoder block are shared when ``share != 1``
      (subset of :data:`COMPONENTS`); the others exist once per application.
    step_size: ``"absorbed"`` (VDVAE: the step size is hidden in the weights) or ``"explicit"``
      (THEORY.md §4.3: means times :math:`\sqrt{\Delta t}`, prior increment, latent bias and
      residual times :math:`\Delta t`, latent projection times :math:`\sqrt{\Delta t}`, with
      :math:`\Delta t = 1/N_{app}`; the number of applications can then change at fixed
      parameters).
    shared_sigma: the posterior outputs a mean only and uses the prior's standard deviation
      (the variance-mismatch KL term vanishes).
    start_noise: :math:`\zeta`; if > 0 the top-down pass starts from
      :math:`\bar H + \zeta\varepsilon_0`, :math:`\varepsilon_0 \sim N(0, I)` drawn in both
      passes and not inferred (THEORY.md §6.4 variant (b): a Gaussian start instead of the point
      mass; the ELBO stays a valid bound, with no extra KL term).
    time_embedding: feed sinusoidal time features via zero-initialised FiLM to every sub-network.
    time_frequencies: number of frequencies ``K`` of the time embedding (with ``time_embedding``).
    time_local: time within the resolution, ``(j + 1/2)/n_r``, instead of global ``(i + 1/2)/N``
      (with ``time_embedding``).

  Derived (computed once at construction): ``enc_pairs``, ``dec_pairs``, ``enc_segments``,
  ``dec_segments``, ``dec_program``, ``cell_resolutions``, ``block_resolutions``,
  ``bias_resolutions``, ``num_applications``, ``num_cells``.
  """

  image_size: int
  image_channels: int = 3
  width: int
  zdim: int
  enc_blocks: str
  dec_blocks: str
  bottleneck_multiple: float = 0.25
  custom_width_str: str = ""
  no_bias_above: int = 64
  likelihood: str = "dmol"
  num_mixtures: int = 10
  bits: int = 8
  crop: int = 0
  share: int | str = 1
  share_components: tuple[str, ...] = COMPONENTS
  step_size: str = "absorbed"
  shared_sigma: bool = False
  start_noise: float = 0.0
  time_embedding: bool = False
  time_frequencies: int = 16
  time_local: bool = False

  def __post_init__(self):
    self._check_fields()
    comps = tuple(self.share_components)
    object.__setattr__(self, "share_components", tuple(c for c in COMPONENTS if c in comps))
    self._derive()
    self._check_structure()
    self._check_no_ignored_settings()

  def _set(self, name: str, value: Any) -> None:
    object.__setattr__(self, name, value)

  def _derive(self) -> None:
    """The structure implied by the block strings, parsed once."""
    size = self.image_size
    enc = blockstr.parse_block_string(self.enc_blocks, kind="encoder", image_size=size)
    dec = blockstr.parse_block_string(self.dec_blocks, kind="decoder", image_size=size)
    self._set("enc_pairs", enc)
    self._set("dec_pairs", dec)
    self._set("_widths", blockstr.parse_width_string(self.custom_width_str, width=self.width))
    self._set("enc_segments", _segments(enc, encoder=True))
    self._set("dec_segments", _segments(dec, encoder=False))
    ids, base = [], 0
    for _, _, start, stop in self.dec_segments:
      n = stop - start
      k = n if self.share == "full" else self.share
      ids.extend(base + j // k for j in range(n))
      base += -(-n // k)
    self._set("dec_program", tuple(ids))
    cell_res: dict[int, int] = {}
    for i, c in enumerate(ids):
      cell_res.setdefault(c, dec[i][0])
    self._set("cell_resolutions", tuple(cell_res[c] for c in range(len(cell_res))))
    self._set("block_resolutions", tuple(sorted({r for r, _ in enc} | {r for r, _ in dec})[::-1]))
    self._set("bias_resolutions", tuple(sorted({r for r, _ in dec if r <= self.no_bias_above})))

  def _check_fields(self) -> None:
    """Each field on its own: types, ranges and names."""
    if self.image_size < 1 or self.image_size & (self.image_size - 1):
      raise ValueError(f"image_size must be a power of two, got {self.image_size!r}")
    for name in ("image_channels", "width", "zdim", "num_mixtures", "time_frequencies"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    if self.likelihood not in lk.LIKELIHOODS:
      raise ValueError(
        f"likelihood must be one of {tuple(lk.LIKELIHOODS)}, got {self.likelihood!r}"
      )
    if self.likelihood == "dmol" and self.image_channels != 3:
      raise ValueError(
        f"the DMoL likelihood needs 3 image channels (RGB), got image_channels="
        f"{self.image_channels}: use likelihood='logistic' or 'bernoulli' for other channels"
      )
    if not isinstance(self.bits, int) or not 1 <= self.bits <= 16:
      raise ValueError(f"bits must be an integer in [1, 16], got {self.bits!r}")
    if not 0 <= 2 * self.crop < self.image_size:
      raise ValueError(f"crop={self.crop} does not fit image_size={self.image_size}")
    if not (self.share == "full" or (isinstance(self.share, int) and self.share >= 1)):
      raise ValueError(f"share must be a positive int or 'full', got {self.share!r}")
    comps = self.share_components
    if (
      isinstance(comps, str)
      or not comps
      or any(c not in COMPONENTS for c in comps)
      or len(set(comps)) != len(tuple(comps))
    ):
      raise ValueError(
        f"share_components must be a non-empty subset of {COMPONENTS}, "
        f"got {self.share_components!r}"
      )
    if not (self.start_noise >= 0 and math.isfinite(self.start_noise)):
      raise ValueError(f"start_noise must be finite and >= 0, got {self.start_noise}")
    if self.step_size not in STEP_SIZES:
      raise ValueError(f"step_size must be one of {STEP_SIZES}, got {self.step_size!r}")
    if not 0 < self.bottleneck_multiple <= 4:
      raise ValueError(f"bottleneck_multiple must be in (0, 4], got {self.bottleneck_multiple}")

  def _check_structure(self) -> None:
    """The block strings, the widths and weight sharing fit together."""
    cur = self.image_size  # the encoder's state resolution, block by block
    act_res = {cur}
    for i, (res, down) in enumerate(self.enc_pairs):
      if res != cur:
        raise ValueError(
          f"encoder block {i} is at resolution {res} but the state there has resolution {cur}"
        )
      if down is not None:
        cur = res // down
      act_res.add(cur)
    seen: set[int] = set()
    for i, (res, mixin) in enumerate(self.dec_pairs):
      if res not in act_res:
        raise ValueError(
          f"decoder block {i} at resolution {res} has no encoder activation there "
          f"(encoder resolutions {sorted(act_res)})"
        )
      if mixin is not None and mixin not in seen:
        raise ValueError(f"decoder block {i} mixes in resolution {mixin}, not produced before it")
      seen.add(res)
    if self.dec_pairs[-1][0] != self.image_size:
      raise ValueError(
        f"the last decoder block must be at the image resolution {self.image_size}, "
        f"got {self.dec_pairs[-1][0]}"
      )
    unknown = sorted(set(self._widths) - act_res)
    if unknown:
      raise ValueError(
        f"custom_width_str {self.custom_width_str!r} sets the width at resolution {unknown[0]}, "
        f"where the model has no state (its resolutions are {sorted(act_res)}); remove it"
      )
    if self.width_at(self.image_size) != self.width:
      raise ValueError(
        f"custom_width_str must not change the width at the image resolution {self.image_size} "
        f"(it is width={self.width}): set width instead"
      )
    rs = sorted(act_res)
    for a, b in itertools.pairwise(rs):
      if self.width_at(a) < self.width_at(b):
        raise ValueError(
          f"widths must not decrease towards low resolution: w({a}) = {self.width_at(a)} < "
          f"w({b}) = {self.width_at(b)}"
        )
    for r in rs:
      if self.mid_at(r) < 1:
        raise ValueError(
          f"bottleneck_multiple={self.bottleneck_multiple} leaves no bottleneck channels at "
          f"resolution {r} (int({self.width_at(r)} * {self.bottleneck_multiple}) = 0): "
          f"raise it to at least {1 / self.width_at(r):.3g}"
        )
    if self.share != 1:
      done: set[int] = set()
      for seg in self.dec_segments:
        if seg[0] in done:
          raise ValueError(
            f"weight sharing needs each resolution's decoder blocks to be contiguous with an "
            f"'m' block only first; resolution {seg[0]} appears in two segments"
          )
        done.add(seg[0])

  def _check_no_ignored_settings(self) -> None:
    """Rejects settings that the model would silently ignore."""
    default = {f.name: f.default for f in dataclasses.fields(self)}
    if self.share == 1 and set(self.share_components) != set(COMPONENTS):
      raise ValueError(
        f"share_components={self.share_components!r} has no effect with share=1 (no weight "
        f"sharing): set share to a group size k > 1 or 'full', or leave share_components at "
        f"its default (all of {COMPONENTS})"
      )
    if not self.time_embedding:
      for name in ("time_frequencies", "time_local"):
        if getattr(self, name) != default[name]:
          raise ValueError(
            f"{name}={getattr(self, name)!r} has no effect without time_embedding=True: "
            f"set time_embedding=True or leave {name} at its default {default[name]!r}"
          )
    family = lk.LIKELIHOODS[self.likelihood]
    if not family.uses_mixtures and self.num_mixtures != default["num_mixtures"]:
      raise ValueError(
        f"num_mixtures={self.num_mixtures} has no effect with likelihood={self.likelihood!r} "
        f"(only the DMoL has mixtures): use likelihood='dmol' or leave num_mixtures at its "
        f"default {default['num_mixtures']}"
      )
    if not family.uses_bits and self.bits != default["bits"]:
      raise ValueError(
        f"bits={self.bits} has no effect with the Bernoulli likelihood (binary targets): use "
        f"likelihood='logistic' or 'dmol', or leave bits at its default {default['bits']}"
      )

  # ---- derived structure ----------------------------------------------------------------------
  def width_at(self, res: int) -> int:
    """Width at a resolution (``custom_width_str`` or ``width``)."""
    return blockstr.width_at(self._widths, res, width=self.width)

  def mid_at(self, res: int) -> int:
    """Bottleneck width ``int(w_res * bottleneck_multiple)``."""
    return int(self.width_at(res) * self.bottleneck_multiple)

  @property
  def num_applications(self) -> int:
    """Number of top-down block applications ``N_app`` (= stochastic layers)."""
    return len(self.dec_pairs)

  @property
  def num_cells(self) -> int:
    """Number of distinct decoder cells."""
    return len(self.cell_resolutions)

  @property
  def shared_parts(self) -> tuple[str, ...]:
    """Components held by the distinct cells (all of them when unshared)."""
    return self.share_components if self.share != 1 else COMPONENTS

  @property
  def own_parts(self) -> tuple[str, ...]:
    """Components that exist once per application (empty unless a component mask is set)."""
    return tuple(c for c in COMPONENTS if c not in self.shared_parts)

  @property
  def likelihood_family(self) -> lk.Likelihood:
    """The :class:`~mrflax.likelihoods.Likelihood` of :attr:`likelihood`."""
    return lk.LIKELIHOODS[self.likelihood]

  @property
  def out_channels(self) -> int:
    """Channels of the likelihood head."""
    return self.likelihood_family.out_channels(
      image_channels=self.image_channels, num_mixtures=self.num_mixtures
    )

  @property
  def data_dims(self) -> int:
    """Data dimensions per image used for nats/dim (after the crop)."""
    side = self.image_size - 2 * self.crop
    return side * side * self.image_channels

  def check_images(self, x: Any, *, name: str = "images") -> None:
    """Raises a ValueError unless ``x`` is a float batch ``[b, image_size, image_size, C]``.

    The check is on static shapes (``chex``), so it also runs under ``jit``, ``vmap``, ``grad``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from mrflax.nn import get_preset
      >>> get_preset("tiny8").check_images(jnp.zeros((2, 8, 8, 1)))
      >>> get_preset("tiny8").check_images(jnp.zeros((2, 7, 7, 1)))
      Traceback (most recent call last):
      ...
      ValueError: ... [expected images [batch, 8, 8, 1] (HVAESpec image_size=8, image_channels=1)]
    """
    side, c = self.image_size, self.image_channels
    want = f"expected {name} [batch, {side}, {side}, {c}] (HVAESpec image_size={side}, "
    want += f"image_channels={c})"
    chex.assert_rank(x, 4, custom_message=want, exception_type=ValueError)
    chex.assert_shape(x, (None, side, side, c), custom_message=want, exception_type=ValueError)
    chex.assert_type(
      x,
      float,
      custom_message=f"expected floating-point {name} (preprocessed, not raw pixels)",
      exception_type=ValueError,
    )

  def replace(self, **kw) -> HVAESpec:
    """A copy with some fields replaced (validated again)."""
    return dataclasses.replace(self, **kw)
