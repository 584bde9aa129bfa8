"""The VDVAE-exact hierarchical VAE in Flax NNX, with weight sharing over time steps.

Specification: VDVAE_REFERENCE.md (§1-7) and THEORY.md §4-5. Modules: :class:`Encoder`
(bottom-up, activations per resolution), :class:`DecBlock` (posterior, prior with zero-initialised
last layer, latent projection, residual), :class:`Decoder` (learned start states, nearest-upsampling
mixing, output head) and :class:`HVAE`. The model is described by a frozen :class:`HVAESpec`.

Weight sharing (THEORY.md §5.3): with ``share=k`` consecutive groups of ``k`` applications at a
resolution use one cell (``"full"``: one cell per resolution); initial scalings use the number of
applications ``N_app``, not of distinct cells. Each resolution's applications run through
:func:`mrflax.nn.scan.run_program` in the execution mode chosen per resolution.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, ArrayLike, Float, Key

from mrflax import likelihoods as lk
from mrflax._pytree import pytree_dataclass
from mrflax.nn import blockstr
from mrflax.nn.layers import (
  CONV_BACKWARDS,
  Block,
  check_conv_options,
  conv,
  sinusoidal_embedding,
)
from mrflax.nn.scan import REMAT_POLICIES, check_mode, run_program
from mrflax.wavelets import embed

LIKELIHOODS = ("dmol", "bernoulli", "logistic")
COMPONENTS = ("posterior", "prior", "z_proj", "residual")
"""Sub-networks of a decoder block (THEORY.md §5.3 item 2), VDVAE's ``enc/prior/z_proj/resnet``."""
_COMPONENT_ATTRS = {"posterior": "enc", "prior": "prior", "z_proj": "z_proj", "residual": "resnet"}
STEP_SIZES = ("absorbed", "explicit")


@dataclasses.dataclass(frozen=True, kw_only=True)
class HVAESpec:
  r"""Model specification of a (possibly weight-shared) VDVAE-style HVAE.

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
    likelihood: ``"dmol"`` (RGB), ``"bernoulli"`` (binary) or ``"logistic"`` (grey levels).
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
    exec_mode: default execution mode, ``"unroll"``, ``"scan"`` or ``"remat"``.
    exec_overrides: per-resolution modes, ``((res, mode), ...)`` (resolutions with blocks, once
      each).
    scan_unroll: ``lax.scan``'s ``unroll`` in scan modes (some resolution must run as a scan).
    remat: rematerialisation policy of every resolution's stack (encoder and decoder):
      ``"none"``, ``"block"`` (each application under ``jax.checkpoint``) or ``"resolution"``
      (the whole stack of a resolution under one ``jax.checkpoint``).
    remat_overrides: per-resolution policies, ``((res, policy), ...)`` (resolutions with blocks,
      once each).
    conv_backward: ``"xla"`` or ``"custom"`` (:mod:`mrflax.nn.conv_ops`: same numbers, a backward
      pass that XLA:CPU runs fast inside any loop: 7-8x faster backward in a scanned stack,
      5.4x faster train steps of the digits model inside ``fit``'s ``steps_per_call`` scan;
      the default) or ``"auto"`` (custom for the stacks that run as a scan, XLA's own for
      unrolled stacks, stem and head).
    conv_precision: ``lax`` precision of every convolution (``None``, ``"default"``, ``"high"``,
      ``"highest"``).
    compute_dtype: precision policy. ``None``: compute in the parameter dtype (float32).
      ``"bfloat16"``: convolutions and the nonlinearities between them run in bf16, while the
      parameters, the residual state, the KL, the likelihood and every ``exp``/softplus stay in
      float32 (sub-network outputs are cast back before use).
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
  exec_mode: str = "unroll"
  exec_overrides: tuple[tuple[int, str], ...] = ()
  scan_unroll: int = 1
  remat: str = "none"
  remat_overrides: tuple[tuple[int, str], ...] = ()
  conv_backward: str = "custom"
  conv_precision: str | None = None
  compute_dtype: str | None = None

  def __post_init__(self):
    self._check_fields()
    comps = tuple(self.share_components)
    object.__setattr__(self, "share_components", tuple(c for c in COMPONENTS if c in comps))
    self._check_structure()
    self._check_no_ignored_settings()

  def _check_fields(self) -> None:
    """Each field on its own: types, ranges and names."""
    if self.image_size < 1 or self.image_size & (self.image_size - 1):
      raise ValueError(f"image_size must be a power of two, got {self.image_size!r}")
    for name in (
      "image_channels",
      "width",
      "zdim",
      "num_mixtures",
      "scan_unroll",
      "time_frequencies",
    ):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    if self.likelihood not in LIKELIHOODS:
      raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
    if self.likelihood == "dmol" and self.image_channels != 3:
      raise ValueError(
        f"the DMoL likelihood needs 3 image channels (RGB), got image_channels="
        f"{self.image_channels}: use likelihood='logistic' or 'bernoulli' for other channels"
      )
    if not isinstance(self.bits, int) or not 1 <= self.bits <= 16:
      raise ValueError(f"bits must be an integer in [1, 16], got {self.bits!r}")
    if not 0 <= 2 * self.crop < self.image_size:
      raise ValueError(f"crop={self.crop} does not fit image_size={self.image_size}")
    check_mode(self.exec_mode)
    for _, m in self.exec_overrides:
      check_mode(m)
    for r in (self.remat, *(r for _, r in self.remat_overrides)):
      if r not in REMAT_POLICIES:
        raise ValueError(f"remat must be one of {REMAT_POLICIES}, got {r!r}")
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
    if self.conv_backward not in (*CONV_BACKWARDS, "auto"):
      raise ValueError(
        f"conv_backward must be one of {(*CONV_BACKWARDS, 'auto')}, got {self.conv_backward!r}"
      )
    check_conv_options(
      conv_backward="xla" if self.conv_backward == "auto" else self.conv_backward,
      precision=self.conv_precision,
      dtype=self.compute_dtype,
    )
    if not 0 < self.bottleneck_multiple <= 4:
      raise ValueError(f"bottleneck_multiple must be in (0, 4], got {self.bottleneck_multiple}")

  def _check_structure(self) -> None:
    """The block strings, the widths and weight sharing fit together."""
    enc = blockstr.parse_block_string(self.enc_blocks, kind="encoder", image_size=self.image_size)
    dec = blockstr.parse_block_string(self.dec_blocks, kind="decoder", image_size=self.image_size)
    widths = blockstr.parse_width_string(self.custom_width_str, width=self.width)
    cur = self.image_size  # the encoder's state resolution, block by block
    act_res = {cur}
    for i, (res, down) in enumerate(enc):
      if res != cur:
        raise ValueError(
          f"encoder block {i} is at resolution {res} but the state there has resolution {cur}"
        )
      if down is not None:
        cur = res // down
      act_res.add(cur)
    seen: set[int] = set()
    for i, (res, mixin) in enumerate(dec):
      if res not in act_res:
        raise ValueError(
          f"decoder block {i} at resolution {res} has no encoder activation there "
          f"(encoder resolutions {sorted(act_res)})"
        )
      if mixin is not None and mixin not in seen:
        raise ValueError(f"decoder block {i} mixes in resolution {mixin}, not produced before it")
      seen.add(res)
    if dec[-1][0] != self.image_size:
      raise ValueError(
        f"the last decoder block must be at the image resolution {self.image_size}, "
        f"got {dec[-1][0]}"
      )
    unknown = sorted(set(widths) - act_res)
    if unknown:
      raise ValueError(
        f"custom_width_str {self.custom_width_str!r} sets the width at resolution {unknown[0]}, "
        f"where the model has no state (its resolutions are {sorted(act_res)}); remove it"
      )
    if blockstr.width_at(widths, self.image_size, width=self.width) != self.width:
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
    if self.likelihood != "dmol" and self.num_mixtures != default["num_mixtures"]:
      raise ValueError(
        f"num_mixtures={self.num_mixtures} has no effect with likelihood={self.likelihood!r} "
        f"(only the DMoL has mixtures): use likelihood='dmol' or leave num_mixtures at its "
        f"default {default['num_mixtures']}"
      )
    if self.likelihood == "bernoulli" and self.bits != default["bits"]:
      raise ValueError(
        f"bits={self.bits} has no effect with the Bernoulli likelihood (binary targets): use "
        f"likelihood='logistic' or 'dmol', or leave bits at its default {default['bits']}"
      )
    # resolutions where blocks run: the only ones exec_overrides / remat_overrides can address
    block_res = sorted(
      {r for r, _ in self.enc_pairs} | {r for r, _ in self.dec_pairs}, reverse=True
    )
    for name in ("exec_overrides", "remat_overrides"):
      seen: set[int] = set()
      for res, _ in getattr(self, name):
        if res not in block_res:
          raise ValueError(
            f"{name} names resolution {res}, where no encoder or decoder block runs "
            f"(resolutions with blocks: {block_res}); remove it"
          )
        if res in seen:
          raise ValueError(f"{name} names resolution {res} twice; keep one entry")
        seen.add(res)
    if self.scan_unroll != 1 and all(self.mode_at(r) == "unroll" for r in block_res):
      raise ValueError(
        f"scan_unroll={self.scan_unroll} has no effect: every resolution runs unrolled "
        f"(exec_mode={self.exec_mode!r}, exec_overrides={self.exec_overrides!r}); set "
        f"exec_mode='scan' (or a scan override) or leave scan_unroll=1"
      )

  # ---- derived structure ----------------------------------------------------------------------
  @property
  def enc_pairs(self) -> tuple[tuple[int, int | None], ...]:
    """Encoder ``(res, down)`` pairs."""
    return blockstr.parse_block_string(self.enc_blocks, kind="encoder")

  @property
  def dec_pairs(self) -> tuple[tuple[int, int | None], ...]:
    """Decoder ``(res, mixin)`` pairs, one per application."""
    return blockstr.parse_block_string(self.dec_blocks, kind="decoder")

  def width_at(self, res: int) -> int:
    """Width at a resolution (``custom_width_str`` or ``width``)."""
    return blockstr.width_at(
      blockstr.parse_width_string(self.custom_width_str, width=self.width), res, width=self.width
    )

  def mid_at(self, res: int) -> int:
    """Bottleneck width ``int(w_res * bottleneck_multiple)``."""
    return int(self.width_at(res) * self.bottleneck_multiple)

  def mode_at(self, res: int) -> str:
    """Execution mode at a resolution."""
    return dict(self.exec_overrides).get(res, self.exec_mode)

  def remat_at(self, res: int) -> str:
    """Rematerialisation policy at a resolution."""
    return dict(self.remat_overrides).get(res, self.remat)

  @property
  def n_applications(self) -> int:
    """Number of top-down block applications ``N_app`` (= stochastic layers)."""
    return len(self.dec_pairs)

  @property
  def dec_segments(self) -> tuple[tuple[int, int | None, int, int], ...]:
    """Maximal runs ``(res, mixin, start, stop)`` of applications at one resolution, mixin first."""
    segs = []
    for i, (res, mixin) in enumerate(self.dec_pairs):
      if segs and segs[-1][0] == res and mixin is None:
        segs[-1][3] = i + 1
      else:
        segs.append([res, mixin, i, i + 1])
    return tuple(tuple(s) for s in segs)

  @property
  def dec_program(self) -> tuple[int, ...]:
    """Cell index of every application (``range(N)`` when unshared)."""
    ids, base = [], 0
    for _, _, start, stop in self.dec_segments:
      n = stop - start
      k = n if self.share == "full" else self.share
      ids.extend(base + j // k for j in range(n))
      base += -(-n // k)
    return tuple(ids)

  @property
  def n_cells(self) -> int:
    """Number of distinct decoder cells."""
    return max(self.dec_program) + 1

  @property
  def shared_parts(self) -> tuple[str, ...]:
    """Components held by the distinct cells (all of them when unshared)."""
    return self.share_components if self.share != 1 else COMPONENTS

  @property
  def own_parts(self) -> tuple[str, ...]:
    """Components that exist once per application (empty unless a component mask is set)."""
    return tuple(c for c in COMPONENTS if c not in self.shared_parts)

  def conv_kw(self, res: int | None = None) -> dict[str, Any]:
    """Keyword arguments of the convolutions of a resolution's stack (``None``: stem and head).

    Resolves ``conv_backward="auto"``: ``"custom"`` where the stack runs as a scan.
    """
    backward = self.conv_backward
    if backward == "auto":
      backward = "custom" if res is not None and self.mode_at(res) != "unroll" else "xla"
    return dict(conv_backward=backward, precision=self.conv_precision, dtype=self.compute_dtype)

  @property
  def bias_resolutions(self) -> tuple[int, ...]:
    """Decoder resolutions with a learned start state, ascending."""
    return tuple(sorted({r for r, _ in self.dec_pairs if r <= self.no_bias_above}))

  @property
  def out_channels(self) -> int:
    """Channels of the likelihood head."""
    if self.likelihood == "dmol":
      return lk.num_dmol_channels(num_mixtures=self.num_mixtures)
    if self.likelihood == "bernoulli":
      return self.image_channels
    return 2 * self.image_channels

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
      >>> from mrflax.nn import presets
      >>> presets.get("tiny8").check_images(jnp.zeros((2, 8, 8, 1)))
      >>> presets.get("tiny8").check_images(jnp.zeros((2, 7, 7, 1)))
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


# ------------------------------------------------------------------------------------------------
# Encoder
# ------------------------------------------------------------------------------------------------


def pad_channels(t: Float[Array, "b h w c"], width: int) -> Float[Array, "b h w w2"]:
  """Zero-pads the channel axis up to ``width`` (existing channels first).

  Examples:
    >>> import jax.numpy as jnp
    >>> pad_channels(jnp.ones((1, 1, 1, 2)), 3)[0, 0, 0].tolist()
    [1.0, 1.0, 0.0]
  """
  c = t.shape[-1]
  if c > width:
    raise ValueError(f"cannot pad {c} channels down to {width}")
  return t if c == width else jnp.pad(t, ((0, 0), (0, 0), (0, 0), (0, width - c)))


class Encoder(nnx.Module):
  """VDVAE's bottom-up encoder: a 3x3 stem, then the encoder blocks (VDVAE_REFERENCE.md §4).

  ``acts[r]`` is the state after the last block whose output resolution is ``r``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from mrflax.nn import presets
    >>> enc = Encoder(presets.get("tiny8"), rngs=nnx.Rngs(0))
    >>> sorted((r, a.shape) for r, a in enc(jnp.zeros((2, 8, 8, 1))).items())
    [(1, (2, 1, 1, 16)), (4, (2, 4, 4, 16)), (8, (2, 8, 8, 16))]
  """

  def __init__(self, spec: HVAESpec, *, rngs: nnx.Rngs):
    self.spec = spec
    pairs = spec.enc_pairs
    scale = math.sqrt(1.0 / len(pairs))
    self.in_conv = conv(spec.image_channels, spec.width, kernel_size=3, rngs=rngs, **spec.conv_kw())
    self.enc_blocks = nnx.List(
      [
        Block(
          in_features=spec.width_at(res),
          mid_features=spec.mid_at(res),
          out_features=spec.width_at(res),
          residual=True,
          use_3x3=res > 2,
          down_rate=down,
          last_scale=scale,
          rngs=rngs,
          **spec.conv_kw(res),
        )
        for res, down in pairs
      ]
    )

  def _segments(self):
    segs = []
    for i, (res, down) in enumerate(self.spec.enc_pairs):
      if down is None and segs and segs[-1][0] == res and segs[-1][1] is None:
        segs[-1][3] = i + 1
      else:
        segs.append([res, down, i, i + 1])
    return segs

  def __call__(self, x: Float[ArrayLike, "b h w c"]) -> dict[int, Float[Array, "b _r _r _w"]]:
    s = self.spec
    s.check_images(x)
    x = jnp.asarray(x)
    x = self.in_conv(x).astype(x.dtype)  # the residual state keeps the input's dtype
    acts = {s.image_size: x}
    for res, down, start, stop in self._segments():
      x, _ = run_program(
        self.enc_blocks,
        list(range(start, stop)),
        lambda blk, c, _: (blk(c), None),
        x,
        None,
        mode=s.mode_at(res),
        unroll=s.scan_unroll,
        remat=s.remat_at(res),
      )
      r = res if down is None else res // down
      x = pad_channels(x, s.width_at(r))
      acts[r] = x
    return acts


# ------------------------------------------------------------------------------------------------
# Decoder
# ------------------------------------------------------------------------------------------------


class BlockStep(NamedTuple):
  r"""One decoder block's results (a pytree).

  Attributes:
    x: the next state ``[b, r, r, w]``.
    z: the latent used ``[b, r, r, zdim]``.
    kl: analytic KL summed over pixels, per latent channel ``[b, zdim]`` (zeros in prior mode).
    log_ratio: :math:`\log p(z) - \log q(z)` summed over the latents ``[b]`` (zeros in prior
      mode); the importance weight of the block's latent.
  """

  x: Array
  z: Array
  kl: Array
  log_ratio: Array


class DecBlock(nnx.Module):
  r"""One VDVAE top-down block: posterior ``enc``, ``prior``, ``z_proj``, ``resnet`` (§5).

  Update in posterior mode (prior mode: no ``enc``, ``z = p_mean + t e^{p_logstd} eps``)::

    q_mean, q_logstd = enc([x, acts]);  p_mean, p_logstd, h_prior = prior(x)
    x = x + h_prior;  z = q_mean + exp(q_logstd) * eps;  x = x + z_proj(z);  x = resnet(x)

  With ``step_size="explicit"`` (THEORY.md §4.3) the network outputs are read as
  :math:`\Delta t`-free fields: means :math:`\sqrt{\Delta t}\,m`, prior increment
  :math:`\Delta t\,\tilde\delta_p`, latent projection :math:`\sqrt{\Delta t}\,\tilde A z +
  \Delta t\,\tilde a` and residual :math:`x + \Delta t\,\tilde R(x)`, with
  :math:`\Delta t = 1/n_{blocks}`; the :math:`\sqrt{1/N}` init scalings are then dropped (the
  explicit factors take their place). With ``shared_sigma`` the posterior outputs a mean only
  and uses the prior's standard deviation.

  A block may hold only some sub-networks (``components``): weight sharing with a component
  mask joins a shared cell with an application's own parts (see :class:`Decoder`).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> blk = DecBlock(res=4, width=8, zdim=2, n_blocks=3, rngs=nnx.Rngs(0))
    >>> x, z, kl, log_ratio = blk(jnp.zeros((1, 4, 4, 8)), jnp.ones((1, 4, 4, 8)),
    ...                           jax.random.key(0))
    >>> x.shape, z.shape, kl.shape, log_ratio.shape
    ((1, 4, 4, 8), (1, 4, 4, 2), (1, 2), (1,))
  """

  def __init__(
    self,
    *,
    res: int,
    width: int,
    zdim: int,
    n_blocks: int,
    bottleneck_multiple: float = 0.25,
    film_features: int = 0,
    components: Sequence[str] = COMPONENTS,
    step_size: str = "absorbed",
    shared_sigma: bool = False,
    conv_backward: str = "xla",
    precision: str | None = None,
    dtype: str | None = None,
    rngs: nnx.Rngs,
  ):
    if step_size not in STEP_SIZES:
      raise ValueError(f"step_size must be one of {STEP_SIZES}, got {step_size!r}")
    if n_blocks < 1:
      raise ValueError(f"n_blocks must be >= 1, got {n_blocks}")
    unknown = [c for c in components if c not in COMPONENTS]
    if unknown:
      raise ValueError(f"unknown decoder block components {unknown}; known: {COMPONENTS}")
    mid = int(width * bottleneck_multiple)
    use_3x3 = res > 2
    scale = math.sqrt(1.0 / n_blocks) if step_size == "absorbed" else 1.0
    kw = dict(
      use_3x3=use_3x3,
      film_features=film_features,
      rngs=rngs,
      conv_backward=conv_backward,
      precision=precision,
      dtype=dtype,
    )
    self.zdim = zdim
    self.width = width
    self.step_size = step_size
    self.dt = 1.0 / n_blocks
    self.shared_sigma = shared_sigma
    self.enc = (
      Block(
        in_features=2 * width,
        mid_features=mid,
        out_features=zdim if shared_sigma else 2 * zdim,
        residual=False,
        **kw,
      )
      if "posterior" in components
      else None
    )
    self.prior = (
      Block(
        in_features=width,
        mid_features=mid,
        out_features=2 * zdim + width,
        residual=False,
        zero_last=True,
        **kw,
      )
      if "prior" in components
      else None
    )
    self.z_proj = (
      conv(
        zdim,
        width,
        kernel_size=1,
        scale=scale,
        rngs=rngs,
        conv_backward=conv_backward,
        precision=precision,
        dtype=dtype,
      )
      if "z_proj" in components
      else None
    )
    self.resnet = (
      Block(
        in_features=width,
        mid_features=mid,
        out_features=width,
        residual=True,
        last_scale=scale,
        **kw,
      )
      if "residual" in components
      else None
    )

  @property
  def explicit(self) -> bool:
    return self.step_size == "explicit"

  def parts(
    self,
    x: Float[Array, "b r r w"],
    acts: Float[Array, "b r r w"] | None = None,
    emb: Float[Array, " e"] | None = None,
  ) -> dict[str, Array]:
    r"""The sub-network outputs at state ``x``: prior (and posterior if ``acts`` is given).

    In explicit step-size mode the means and the prior increment come out already scaled by
    :math:`\sqrt{\Delta t}` and :math:`\Delta t`: they are the quantities of the update.

    Returns:
      dict with ``p_mean, p_logstd, h_prior`` and, if ``acts`` is given, ``q_mean, q_logstd``.
    """
    z = self.zdim
    feats = self.prior(x, emb).astype(x.dtype)  # under a bf16 policy: back to the state dtype
    p_mean, p_logstd, h_prior = feats[..., :z], feats[..., z : 2 * z], feats[..., 2 * z :]
    root_dt = math.sqrt(self.dt)
    if self.explicit:
      p_mean, h_prior = root_dt * p_mean, self.dt * h_prior
    out = dict(p_mean=p_mean, p_logstd=p_logstd, h_prior=h_prior)
    if acts is not None:
      q = self.enc(jnp.concatenate([x, acts], axis=-1), emb).astype(x.dtype)
      q_mean = q[..., :z] * root_dt if self.explicit else q[..., :z]
      out.update(q_mean=q_mean, q_logstd=p_logstd if self.shared_sigma else q[..., z:])
    return out

  def projection(self) -> tuple[Float[Array, "z w"], Float[Array, " w"]]:
    r"""The latent projection :math:`z \mapsto A z + a` of the update as ``(A, a)``.

    Explicit mode: :math:`A = \sqrt{\Delta t}\,\tilde A`, :math:`a = \Delta t\,\tilde a`.
    """
    a_mat, a_vec = self.z_proj.kernel[...][0, 0], self.z_proj.bias[...]
    if self.explicit:
      return math.sqrt(self.dt) * a_mat, self.dt * a_vec
    return a_mat, a_vec

  def project_latent(self, z: Float[Array, "b r r z"]) -> Float[Array, "b r r w"]:
    """:math:`A z + a` (the state increment of the latent)."""
    y = self.z_proj(z).astype(z.dtype)
    if self.explicit:
      root_dt = math.sqrt(self.dt)
      y = root_dt * y + (self.dt - root_dt) * self.z_proj.bias[...].reshape(1, 1, 1, -1)
    return y

  def residual_step(
    self, x: Float[Array, "b r r w"], emb: Float[Array, " e"] | None = None
  ) -> Float[Array, "b r r w"]:
    r"""The deterministic sub-step :math:`x + R(x)` (explicit mode: :math:`x + \Delta t\,\tilde
    R(x)`)."""
    return self.resnet(x, emb, residual_scale=self.dt if self.explicit else None)

  def step_from_eps(
    self,
    x: Float[Array, "b r r w"],
    acts: Float[Array, "b r r w"] | None,
    eps: Float[Array, "b r r z"],
    *,
    temperature: float | Float[Array, ""] = 1.0,
    z_given: Float[Array, "b r r z"] | None = None,
    use_given: bool | Array = False,
    emb: Float[Array, " e"] | None = None,
  ) -> BlockStep:
    r"""The block update with given standard-normal noise ``eps``.

    Posterior mode iff ``acts`` is not None. Returns a :class:`BlockStep` ``(x, z, kl,
    log_ratio)``: ``kl`` is the analytic KL summed over pixels per latent channel and
    ``log_ratio`` the single-sample :math:`\log p(z) - \log q(z)` summed over the block's
    latents (both zeros in prior mode).
    """
    p = self.parts(x, acts, emb)
    x = x + p["h_prior"]
    b = x.shape[0]
    if acts is not None:
      z = jnp.exp(p["q_logstd"]) * eps + p["q_mean"]
      kl = lk.gaussian_kl(p["q_mean"], p["q_logstd"], p["p_mean"], p["p_logstd"])
      kl = jnp.sum(kl, axis=(1, 2))
    else:
      z = jnp.exp(p["p_logstd"] + jnp.log(temperature)) * eps + p["p_mean"]
      kl = jnp.zeros((b, self.zdim), x.dtype)
    if z_given is not None:
      z = jnp.where(use_given, z_given, z)
    if acts is not None:
      log_ratio = lk.gaussian_log_prob(z, p["p_mean"], p["p_logstd"]) - lk.gaussian_log_prob(
        z, p["q_mean"], p["q_logstd"]
      )
      log_ratio = jnp.sum(log_ratio, axis=(1, 2, 3))
    else:
      log_ratio = jnp.zeros((b,), x.dtype)
    x = x + self.project_latent(z)
    x = self.residual_step(x, emb)
    return BlockStep(x, z, kl, log_ratio)

  def __call__(
    self,
    x: Float[Array, "b r r w"],
    acts: Float[Array, "b r r w"] | None,
    key: Key[Array, ""],
    *,
    temperature: float | Float[Array, ""] = 1.0,
    z_given: Float[Array, "b r r z"] | None = None,
    use_given: bool | Array = False,
    emb: Float[Array, " e"] | None = None,
  ) -> BlockStep:
    eps = jax.random.normal(key, (*x.shape[:-1], self.zdim), x.dtype)
    return self.step_from_eps(
      x, acts, eps, temperature=temperature, z_given=z_given, use_given=use_given, emb=emb
    )


class JoinedBlock:
  """A decoder block assembled from a shared cell and one application's own sub-networks.

  Weight sharing with a component mask (``HVAESpec.share_components``): the distinct cells hold
  the shared sub-networks, every application holds the rest; this view exposes the union with
  the :class:`DecBlock` methods. Settings (``zdim``, ``dt``, ...) come from the shared cell.
  """

  def __init__(self, shared: DecBlock, own: DecBlock):
    self._shared = shared
    self._own = own

  def __getattr__(self, name: str):
    if name.startswith("_"):
      raise AttributeError(name)
    if name in _COMPONENT_ATTRS.values():
      v = getattr(self._shared, name)
      return v if v is not None else getattr(self._own, name)
    return getattr(self._shared, name)

  explicit = DecBlock.explicit
  parts = DecBlock.parts
  projection = DecBlock.projection
  project_latent = DecBlock.project_latent
  residual_step = DecBlock.residual_step
  step_from_eps = DecBlock.step_from_eps
  __call__ = DecBlock.__call__


@pytree_dataclass
@dataclasses.dataclass(frozen=True)
class DecoderOutput:
  r"""Decoder results.

  Attributes:
    out: likelihood parameters ``[b, H, W, out_channels]``.
    kl: per application, KL summed over pixels per latent channel, ``[b, zdim]`` (zeros in prior
      mode).
    latents: per application, the latents ``[b, r, r, zdim]``.
    log_ratio: per application, :math:`\log p(z_i \mid z_{<i}) - \log q(z_i \mid x, z_{<i})`
      summed over the block's latents, ``[b]`` (zeros in prior mode). Their sum plus
      :math:`\log p(x \mid z)` is one importance weight of the IWAE bound.
    states: with ``return_states=True``, per application the state :math:`H_i` entering the
      block (after any resolution jump), ``[b, r, r, w]``; plus the final state at the image
      resolution as the last entry (so ``N + 1`` entries). ``None`` otherwise.
  """

  out: Array
  kl: tuple[Array, ...]
  latents: tuple[Array, ...]
  log_ratio: tuple[Array, ...]
  states: tuple[Array, ...] | None = None


def _concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


def _temperatures(temperature, n: int) -> Array:
  t = temperature
  if isinstance(t, (list, tuple)) or (hasattr(t, "ndim") and t.ndim == 1):
    if len(t) != n:
      raise ValueError(f"a per-block temperature needs {n} values, got {len(t)}")
  if _concrete(t):
    arr = np.asarray(t, dtype=np.float64)
    if arr.ndim > 1 or not np.all(arr > 0) or not np.all(np.isfinite(arr)):
      raise ValueError(f"temperatures must be finite and > 0, got {temperature!r}")
  return jnp.broadcast_to(jnp.asarray(t, jnp.float32), (n,))


class Decoder(nnx.Module):
  """VDVAE's top-down decoder with learned start states, mixing, gain/bias and output head.

  Cells (``dec_blocks`` in the state dict) are the distinct :class:`DecBlock` s; application
  ``i`` uses ``dec_blocks[spec.dec_program[i]]`` (``= i`` when unshared). With a component mask
  (``spec.own_parts`` non-empty) the cells hold the shared sub-networks and ``dec_own[i]`` holds
  application ``i``'s own ones (joined by :class:`JoinedBlock`).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from mrflax.nn import presets
    >>> dec = Decoder(presets.get("tiny8"), rngs=nnx.Rngs(0))
    >>> dec(None, jax.random.key(0), batch_size=2).out.shape  # logistic: mean, log-scale
    (2, 8, 8, 2)
  """

  def __init__(self, spec: HVAESpec, *, rngs: nnx.Rngs):
    self.spec = spec
    n_app = spec.n_applications
    film = 2 * spec.time_frequencies if spec.time_embedding else 0
    cell_res: dict[int, int] = {}
    for i, c in enumerate(spec.dec_program):
      cell_res.setdefault(c, spec.dec_pairs[i][0])
    kw = dict(
      zdim=spec.zdim,
      n_blocks=n_app,
      bottleneck_multiple=spec.bottleneck_multiple,
      film_features=film,
      step_size=spec.step_size,
      shared_sigma=spec.shared_sigma,
      rngs=rngs,
    )
    self.dec_blocks = nnx.List(
      [
        DecBlock(
          res=(r := cell_res[c]),
          width=spec.width_at(r),
          components=spec.shared_parts,
          **kw,
          **spec.conv_kw(r),
        )
        for c in range(spec.n_cells)
      ]
    )
    self.dec_own = (
      nnx.List(
        [
          DecBlock(
            res=r, width=spec.width_at(r), components=spec.own_parts, **kw, **spec.conv_kw(r)
          )
          for r, _ in spec.dec_pairs
        ]
      )
      if spec.own_parts
      else None
    )
    self.bias_xs = nnx.List(
      [nnx.Param(jnp.zeros((1, r, r, spec.width_at(r)))) for r in spec.bias_resolutions]
    )
    self.gain = nnx.Param(jnp.ones((spec.width,)))
    self.bias = nnx.Param(jnp.zeros((spec.width,)))
    self.out_conv = conv(spec.width, spec.out_channels, kernel_size=1, rngs=rngs, **spec.conv_kw())

  def _times(self) -> np.ndarray:
    s = self.spec
    n = s.n_applications
    t = (np.arange(n) + 0.5) / n
    if s.time_local:
      for _, _, start, stop in s.dec_segments:
        t[start:stop] = (np.arange(stop - start) + 0.5) / (stop - start)
    return t

  def __call__(
    self,
    acts: dict[int, Array] | None,
    key: Key[Array, ""],
    *,
    batch_size: int | None = None,
    temperature: Any = 1.0,
    latents: Sequence[Array] | None = None,
    return_states: bool = False,
  ) -> DecoderOutput:
    """Runs the top-down pass.

    Args:
      acts: encoder activations (posterior mode) or ``None`` (prior mode).
      key: PRNG key (split into one key per application).
      batch_size: batch size in prior mode without ``latents``.
      temperature: prior temperature, scalar or one per application (prior mode).
      latents: latents for the first ``k`` applications (the rest sampled).
      return_states: also return the state entering every block (diagnostics, THEORY.md §5.4
        and §6.3).

    Returns:
      A :class:`DecoderOutput`.
    """
    s = self.spec
    n = s.n_applications
    pairs = s.dec_pairs
    latents = tuple(latents) if latents is not None else ()
    if len(latents) > n:
      raise ValueError(f"got {len(latents)} latents for {n} decoder blocks")
    if acts is not None:
      b = acts[s.image_size].shape[0]
    elif latents:
      b = latents[0].shape[0]
    elif batch_size is not None:
      if not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
      b = int(batch_size)
    else:
      raise ValueError("prior mode needs batch_size or latents")
    for i, z in enumerate(latents):
      r = pairs[i][0]
      if z.shape != (b, r, r, s.zdim):
        raise ValueError(f"latent {i} must have shape {(b, r, r, s.zdim)}, got {z.shape}")
    temps = _temperatures(temperature, n)
    keys = jax.random.split(key, n)
    emb_all = (
      sinusoidal_embedding(
        jnp.asarray(self._times(), jnp.float32),
        num_frequencies=s.time_frequencies,
        max_frequency=n / 2,
      )
      if s.time_embedding
      else None
    )
    xs = {r: self.bias_xs[i][...] for i, r in enumerate(s.bias_resolutions)}
    kls: list[Array] = []
    zs: list[Array] = []
    lrs: list[Array] = []
    states: list[Array] = []
    for seg, (res, mixin, start, stop) in enumerate(s.dec_segments):
      w = s.width_at(res)
      x = xs.get(res)
      x = jnp.zeros((b, res, res, w)) if x is None else jnp.broadcast_to(x, (b, *x.shape[1:]))
      if seg == 0 and s.start_noise > 0:  # a Gaussian start instead of a point mass (§6.4 b)
        eps0 = jax.random.normal(jax.random.fold_in(key, n), x.shape, x.dtype)
        x = x + s.start_noise * eps0
      if mixin is not None:
        x = x + embed(xs[mixin][..., :w], levels=int(math.log2(res // mixin)), ndim=2)
      a = None if acts is None else acts[res]
      m = stop - start
      given = [latents[i] if i < len(latents) else None for i in range(start, stop)]
      use = jnp.asarray([g is not None for g in given])
      zg = jnp.stack([g if g is not None else jnp.zeros((b, res, res, s.zdim)) for g in given])
      inputs = dict(key=keys[start:stop], t=temps[start:stop], zg=zg, use=use)
      if emb_all is not None:
        inputs["emb"] = emb_all[start:stop]

      def step(cell, carry, inp, a=a):
        if isinstance(cell, tuple):
          cell = JoinedBlock(*cell)
        x, z, kl, lr = cell(
          carry,
          a,
          inp["key"],
          temperature=inp["t"],
          z_given=inp["zg"],
          use_given=inp["use"],
          emb=inp.get("emb"),
        )
        return x, (z, kl, lr, carry if return_states else None)

      x, (z, kl, lr, h_in) = run_program(
        self.dec_blocks,
        s.dec_program[start:stop],
        step,
        x,
        inputs,
        mode=s.mode_at(res),
        unroll=s.scan_unroll,
        remat=s.remat_at(res),
        per_step=None if self.dec_own is None else list(self.dec_own)[start:stop],
      )
      xs[res] = x
      zs.extend(z[j] for j in range(m))
      kls.extend(kl[j] for j in range(m))
      lrs.extend(lr[j] for j in range(m))
      if return_states:
        states.extend(h_in[j] for j in range(m))
    h = xs[s.image_size] * self.gain[...].reshape(1, 1, 1, -1) + self.bias[...].reshape(1, 1, 1, -1)
    return DecoderOutput(
      out=self.out_conv(h).astype(h.dtype),
      kl=tuple(kls),
      latents=tuple(zs),
      log_ratio=tuple(lrs),
      states=(*states, xs[s.image_size]) if return_states else None,
    )


# ------------------------------------------------------------------------------------------------
# HVAE
# ------------------------------------------------------------------------------------------------


class HVAE(nnx.Module):
  """The hierarchical VAE: :class:`Encoder` + :class:`Decoder` + likelihood.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from mrflax.nn import presets
    >>> model = HVAE(presets.get("tiny8"), rngs=nnx.Rngs(0))
    >>> x = jnp.zeros((2, 8, 8, 1))
    >>> loss, metrics = model.loss(x, x, jax.random.key(0))
    >>> metrics["kl_per_block"].shape
    (4,)
  """

  def __init__(self, spec: HVAESpec, *, rngs: nnx.Rngs):
    self.spec = spec
    self.encoder = Encoder(spec, rngs=rngs)
    self.decoder = Decoder(spec, rngs=rngs)

  def encode(self, x: Float[ArrayLike, "b h w c"]) -> dict[int, Array]:
    """Encoder activations per resolution (``x`` is the normalised input)."""
    return self.encoder(x)

  def forward(
    self, x: Float[ArrayLike, "b h w c"], key: Key[Array, ""], *, return_states: bool = False
  ) -> DecoderOutput:
    """Posterior pass: encoder, then the decoder with posterior latents."""
    return self.decoder(self.encoder(x), key, return_states=return_states)

  def nll(self, out: Float[Array, "b h w k"], target: Float[ArrayLike, "b h w c"]) -> Array:
    """Per-image distortion in nats/dim under the spec's likelihood (``[b]``)."""
    s = self.spec
    side = s.image_size
    chex.assert_shape(
      out,
      (None, side, side, s.out_channels),
      custom_message=f"expected likelihood parameters [batch, {side}, {side}, {s.out_channels}] "
      f"(the decoder output of this spec)",
      exception_type=ValueError,
    )
    s.check_images(target, name="targets")
    target = jnp.asarray(target)
    chex.assert_equal_shape_prefix(
      [out, target],
      1,
      custom_message="expected as many targets as likelihood parameters (batch sizes differ)",
      exception_type=ValueError,
    )
    if s.likelihood == "dmol":
      o = lk.central_crop(out, crop=s.crop)
      t = lk.central_crop(target, crop=s.crop)
      return lk.dmol_nll(o, t, num_mixtures=s.num_mixtures, bits=s.bits)
    if s.likelihood == "bernoulli":
      return lk.bernoulli_nll(out, target, crop=s.crop)
    o = lk.central_crop(out, crop=s.crop)
    return lk.discretized_logistic_nll(o, lk.central_crop(target, crop=s.crop), bits=s.bits)

  def loss(
    self, x: Float[ArrayLike, "b h w c"], target: Float[ArrayLike, "b h w c"], key: Key[Array, ""]
  ) -> tuple[Float[Array, ""], dict[str, Array]]:
    r"""Negative ELBO in nats per dimension, batch mean, with its terms.

    .. math::
      \mathcal L = \frac{1}{D}\Big[-\log p(x \mid z) + \sum_i \mathrm{KL}_i\Big],
      \quad D = H W C \text{ (after the crop)}.

    Returns:
      ``(loss, metrics)`` with ``distortion`` and ``rate`` (batch means, nats/dim),
      ``kl_per_block`` (``[N]``, nats/dim) and ``elbo_per_image`` (``[b]``, nats/dim).
    """
    self.spec.check_images(x)
    self.spec.check_images(target, name="targets")
    chex.assert_equal_shape(
      [x, target],
      custom_message="expected images and targets of the same shape",
      exception_type=ValueError,
    )
    dec = self.forward(x, key)
    distortion = self.nll(dec.out, target)
    kl_blocks = jnp.stack([jnp.sum(k, axis=-1) for k in dec.kl], axis=-1) / self.spec.data_dims
    rate = jnp.sum(kl_blocks, axis=-1)
    per_image = distortion + rate
    metrics = dict(
      distortion=jnp.mean(distortion),
      rate=jnp.mean(rate),
      kl_per_block=jnp.mean(kl_blocks, axis=0),
      elbo_per_image=per_image,
    )
    return jnp.mean(per_image), metrics

  def decode(
    self,
    key: Key[Array, ""],
    *,
    batch_size: int | None = None,
    latents: Sequence[Array] | None = None,
    temperature: Any = 1.0,
  ) -> Float[Array, "b h w k"]:
    """Prior pass: likelihood parameters, with the first ``len(latents)`` latents given."""
    return self.decoder(
      None, key, batch_size=batch_size, latents=latents, temperature=temperature
    ).out

  def sample_likelihood(self, key: Key[Array, ""], out: Float[Array, "b h w k"]) -> Array:
    """Draws images from the likelihood head (``[-1, 1]`` for DMoL/logistic, {0,1} Bernoulli)."""
    s = self.spec
    if s.likelihood == "dmol":
      return lk.dmol_sample(key, out, num_mixtures=s.num_mixtures)
    if s.likelihood == "bernoulli":
      return lk.bernoulli_sample(key, out)
    return lk.discretized_logistic_sample(key, out, channels=s.image_channels)

  def sample(
    self,
    key: Key[Array, ""],
    *,
    batch_size: int | None = None,
    temperature: Any = 1.0,
    latents: Sequence[Array] | None = None,
  ) -> Float[Array, "b h w c"]:
    """Unconditional samples at a temperature (scalar or one per block)."""
    k1, k2 = jax.random.split(key)
    out = self.decode(k1, batch_size=batch_size, latents=latents, temperature=temperature)
    return self.sample_likelihood(k2, out)

  def posterior_latents(self, x: Float[ArrayLike, "b h w c"], key: Key[Array, ""]) -> tuple:
    """Posterior samples of all latents, one ``[b, r, r, zdim]`` array per block."""
    return self.forward(x, key).latents

  def reconstruct(
    self,
    x: Float[ArrayLike, "b h w c"],
    key: Key[Array, ""],
    *,
    num_posterior: int | None = None,
    temperature: Any = 1.0,
  ) -> Float[Array, "b h w c"]:
    """Images decoded from the first ``num_posterior`` posterior latents (all if None).

    The remaining latents are sampled from the prior at ``temperature``.
    """
    self.spec.check_images(x)
    k1, k2 = jax.random.split(key)
    zs = self.posterior_latents(x, k1)
    k = len(zs) if num_posterior is None else num_posterior
    if not 0 <= k <= len(zs):
      raise ValueError(f"num_posterior must be in [0, {len(zs)}], got {k}")
    return self.sample(k2, batch_size=x.shape[0], latents=zs[:k], temperature=temperature)
