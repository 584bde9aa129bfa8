r"""U-Nets for denoising and analysis (THEORY.md §3).

A depth-J U-Net: :math:`U_j(v) = \mathrm{Dec}_j(h_j, \mathrm{Up}(U_{j-1}(\mathrm{Down}(h_j))))`,
:math:`h_j = \mathrm{Enc}_j(v)`. With average pooling (``Down = P``) and nearest upsampling
(``Up = ι``) the coarse-path tensor :math:`c_j` has no detail content (Lemma 1); :class:`UNet`
returns the per-level skip tensors :math:`h_j` and coarse-path tensors :math:`c_j` so their Haar
band energies can be measured with :mod:`mrflax.wavelets`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import chex
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from mrflax._pytree import pytree_dataclass
from mrflax.nn.layers import FiLM, conv, gelu, sinusoidal_embedding
from mrflax.wavelets import detail, embed, project

POOLINGS = ("avg", "max", "conv")
SKIP_MODES = ("full", "detail", "approx", "none")
"""What the skip carries (THEORY.md §3.3 U2): ``h``, ``Q h``, ``ι P h`` or zeros."""


def transform_skip(h: Float[Array, "b h w c"], mode: str) -> Float[Array, "b h w c"]:
  r"""The U2 skip variants: full :math:`h`, detail-only :math:`Qh = h - \iota P h`,
  approximation-only :math:`\iota P h`, or none (zeros).

  Args:
    h: skip tensor at level :math:`j` (even sides).
    mode: one of :data:`SKIP_MODES`.

  Returns:
    The transformed skip, same shape.

  Examples:
    >>> import jax.numpy as jnp
    >>> h = jnp.arange(4.0).reshape(1, 2, 2, 1)
    >>> (transform_skip(h, "detail") + transform_skip(h, "approx") == h).all().item()
    True
  """
  if mode == "full":
    return h
  if mode == "detail":
    return detail(h, ndim=2)
  if mode == "approx":
    return embed(project(h, ndim=2), ndim=2)
  if mode == "none":
    return jnp.zeros_like(h)
  raise ValueError(f"skip mode must be one of {SKIP_MODES}, got {mode!r}")


def haar_unet(
  x: Float[Array, "b h w c"], *, levels: int, kappa: Sequence[float] | None = None
) -> Float[Array, "b h w c"]:
  r"""The parameter-free Haar U-Net of THEORY.md §3.2 Corollary 4.

  :math:`\mathrm{Enc}_j = \mathrm{id}`, :math:`U_0 = \mathrm{id}`, Down = average pooling,
  Up = nearest upsampling, :math:`\mathrm{Dec}_j(h, c) = c + \kappa_j Q h`. With all
  :math:`\kappa_j = 1` it is the identity; in general it is linear Haar shrinkage
  :math:`U_J x = \iota^{J} x^{(0)} + \sum_j \kappa_j \iota^{J-j} q^{(j)}`.

  Args:
    x: images ``[b, h, w, c]`` with sides divisible by ``2**levels``.
    levels: depth ``J``.
    kappa: ``J`` shrinkage factors, coarsest level (``j = 1``) first; default all ones.

  Returns:
    ``U_J x``, same shape as ``x``.

  Examples:
    >>> import jax.numpy as jnp
    >>> x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    >>> bool(jnp.allclose(haar_unet(x, levels=2), x))
    True
  """
  kappa = (1.0,) * levels if kappa is None else tuple(kappa)
  if len(kappa) != levels:
    raise ValueError(f"need {levels} shrinkage factors, got {len(kappa)}")

  def u(v, j):
    if j == 0:
      return v
    h = v
    c = embed(u(project(h, ndim=2), j - 1), ndim=2)
    return c + kappa[j - 1] * detail(h, ndim=2)

  return u(x, levels)


class ResBlock(nnx.Module):
  """``x + conv3(gelu(FiLM(conv3(gelu(x)))))`` with an optional zero-initialised FiLM."""

  def __init__(self, width: int, *, emb_features: int = 0, rngs: nnx.Rngs):
    self.c1 = conv(width, width, kernel_size=3, rngs=rngs)
    self.c2 = conv(width, width, kernel_size=3, rngs=rngs)
    self.film = FiLM(in_features=emb_features, features=width, rngs=rngs) if emb_features else None

  def __call__(self, x: Array, emb: Array | None = None) -> Array:
    h = self.c1(gelu(x))
    if self.film is not None:
      h = self.film(h, emb)
    return x + self.c2(gelu(h))


@pytree_dataclass
@dataclasses.dataclass(frozen=True)
class UNetFeatures:
  """Per-level tensors of a U-Net pass, finest level first.

  Attributes:
    skips: :math:`h_j`, the encoder output (skip tensor) at each level.
    coarse: :math:`c_j`, the coarse-path tensor entering :math:`\\mathrm{Dec}_j`.
    down: :math:`\\mathrm{Down}(h_j)` before the width change.
  """

  skips: tuple[Array, ...]
  coarse: tuple[Array, ...]
  down: tuple[Array, ...]


class UNet(nnx.Module):
  r"""A configurable U-Net (NHWC).

  Levels: ``widths[j]`` is the width at level ``j`` (finest first); ``len(widths) - 1``
  downsamplings, the last width is the bottleneck's. Down: ``avg`` (average pooling, the Haar
  projection), ``max`` (2x2 max pooling) or ``conv`` (strided 2x2 convolution); Up: nearest
  upsampling followed by a 1x1 convolution (which keeps :math:`c_j` piecewise constant). Dec:
  1x1 conv of ``concat([c, h])`` (or of ``c`` alone without skips), then a residual block.
  Optional noise-level conditioning: sinusoidal features of the noise level through zero-init FiLM
  in every residual block. ``skip_mode`` (THEORY.md §3.3 U2) chooses what the skips carry:
  ``"full"`` :math:`h_j`, ``"detail"`` :math:`Q h_j`, ``"approx"`` :math:`\iota P h_j` or
  ``"none"`` (zeros); it can be overridden per call (test-time replacement, protocol (a)) for
  every level or per level. ``skips=False`` removes the skip inputs from the architecture.

  Examples:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> net = UNet(in_features=1, out_features=1, widths=(8, 16), rngs=nnx.Rngs(0))
    >>> y, feats = net(jnp.zeros((2, 8, 8, 1)), return_features=True)
    >>> y.shape, feats.skips[0].shape, feats.coarse[0].shape
    ((2, 8, 8, 1), (2, 8, 8, 8), (2, 8, 8, 8))
  """

  def __init__(
    self,
    *,
    in_features: int,
    out_features: int,
    widths: Sequence[int],
    pooling: str = "avg",
    skips: bool = True,
    skip_mode: str = "full",
    noise_conditioning: bool = False,
    emb_frequencies: int = 8,
    rngs: nnx.Rngs,
  ):
    if pooling not in POOLINGS:
      raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if skip_mode not in SKIP_MODES:
      raise ValueError(f"skip_mode must be one of {SKIP_MODES}, got {skip_mode!r}")
    widths = tuple(int(w) for w in widths)
    if len(widths) < 2 or min(widths) < 1:
      raise ValueError(f"widths needs >= 2 positive entries (levels + bottleneck), got {widths}")
    self.in_features = in_features
    self.widths = widths
    self.pooling = pooling
    self.skips = skips
    self.skip_mode = skip_mode
    self.emb_frequencies = emb_frequencies if noise_conditioning else 0
    e = 2 * self.emb_frequencies
    n = len(widths) - 1
    self.stem = conv(in_features, widths[0], kernel_size=3, rngs=rngs)
    self.enc = nnx.List([ResBlock(widths[j], emb_features=e, rngs=rngs) for j in range(n)])
    if pooling == "conv":
      self.down = nnx.List(
        [
          nnx.Conv(
            widths[j],
            widths[j + 1],
            kernel_size=(2, 2),
            strides=(2, 2),
            padding="VALID",
            kernel_init=nnx.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
            rngs=rngs,
          )
          for j in range(n)
        ]
      )
    else:
      self.down = nnx.List(
        [conv(widths[j], widths[j + 1], kernel_size=1, rngs=rngs) for j in range(n)]
      )
    self.mid = ResBlock(widths[n], emb_features=e, rngs=rngs)
    self.up = nnx.List([conv(widths[j + 1], widths[j], kernel_size=1, rngs=rngs) for j in range(n)])
    k_in = 2 if skips else 1
    self.merge = nnx.List(
      [conv(k_in * widths[j], widths[j], kernel_size=1, rngs=rngs) for j in range(n)]
    )
    self.dec = nnx.List([ResBlock(widths[j], emb_features=e, rngs=rngs) for j in range(n)])
    self.head = conv(widths[0], out_features, kernel_size=3, rngs=rngs)

  def _pool(self, h: Array, j: int) -> tuple[Array, Array]:
    if self.pooling == "avg":
      d = project(h, ndim=2)
      return d, self.down[j](d)
    if self.pooling == "max":
      d = jnp.maximum(
        jnp.maximum(h[:, 0::2, 0::2], h[:, 1::2, 0::2]),
        jnp.maximum(h[:, 0::2, 1::2], h[:, 1::2, 1::2]),
      )
      return d, self.down[j](d)
    d = self.down[j](h)
    return d, d

  def __call__(
    self,
    x: Float[Array, "b h w c"],
    noise_level: Float[Array, " b"] | None = None,
    *,
    return_features: bool = False,
    skip_mode: str | Sequence[str] | None = None,
  ) -> Array | tuple[Array, UNetFeatures]:
    """Applies the U-Net; with ``return_features`` also the per-level tensors.

    Args:
      x: images ``[b, h, w, c]`` with sides divisible by ``2**levels``.
      noise_level: ``[b]`` noise levels (required iff the net is noise-conditioned).
      return_features: also return :class:`UNetFeatures` (``skips`` are the untransformed
        :math:`h_j`).
      skip_mode: override the skip variant for this call: one mode, or one per level (finest
        first).
    """
    n = len(self.widths) - 1
    c = self.in_features
    want = f"expected NHWC images [batch, height, width, {c}] (in_features={c})"
    chex.assert_rank(x, 4, custom_message=want, exception_type=ValueError)
    chex.assert_shape(x, (None, None, None, c), custom_message=want, exception_type=ValueError)
    if x.shape[1] % 2**n or x.shape[2] % 2**n:
      raise ValueError(
        f"expected NHWC images with sides divisible by 2**{n} = {2**n} ({n} poolings of "
        f"widths={self.widths}), got shape {x.shape}: pad or crop the images"
      )
    emb = None
    if self.emb_frequencies:
      if noise_level is None:
        raise ValueError("a noise-conditioned U-Net needs noise_level of shape [batch]")
      chex.assert_shape(
        noise_level,
        (x.shape[0],),
        custom_message=f"a noise-conditioned U-Net needs noise_level of shape [batch] = "
        f"[{x.shape[0]}]",
        exception_type=ValueError,
      )
      emb = sinusoidal_embedding(noise_level, num_frequencies=self.emb_frequencies)
    elif noise_level is not None:
      raise ValueError(
        "this U-Net is not noise-conditioned (noise_conditioning=False), so noise_level would "
        "be ignored: pass None, or build it with noise_conditioning=True"
      )
    modes = self.skip_mode if skip_mode is None else skip_mode
    modes = (modes,) * n if isinstance(modes, str) else tuple(modes)
    if len(modes) != n or any(m not in SKIP_MODES for m in modes):
      raise ValueError(f"skip_mode must be one of {SKIP_MODES} or {n} of them, got {skip_mode!r}")
    v = self.stem(x)
    skips, downs = [], []
    for j in range(n):
      h = self.enc[j](v, emb)
      skips.append(h)
      d, v = self._pool(h, j)
      downs.append(d)
    v = self.mid(v, emb)
    coarse = [None] * n
    for j in reversed(range(n)):
      c = self.up[j](embed(v, ndim=2))
      coarse[j] = c
      inp = jnp.concatenate([c, transform_skip(skips[j], modes[j])], axis=-1) if self.skips else c
      v = self.dec[j](self.merge[j](inp), emb)
    y = self.head(v)
    if return_features:
      return y, UNetFeatures(skips=tuple(skips), coarse=tuple(coarse), down=tuple(downs))
    return y
