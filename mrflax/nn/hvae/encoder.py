"""VDVAE's bottom-up encoder (VDVAE_REFERENCE.md §4): a 3x3 stem, then the encoder blocks."""

from __future__ import annotations

import math

import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, ArrayLike, Float

from mrflax.nn.hvae.policy import ExecPolicy
from mrflax.nn.hvae.spec import HVAESpec
from mrflax.nn.layers import Block, conv
from mrflax.nn.scan import run_program


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

  ``acts[r]`` is the state after the last block whose output resolution is ``r``. Each run of
  blocks at one resolution (``spec.enc_segments``) goes through
  :func:`mrflax.nn.scan.run_program` in the policy's mode at that resolution.

  Examples:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from mrflax.nn import get_preset
    >>> enc = Encoder(get_preset("tiny8"), rngs=nnx.Rngs(0))
    >>> sorted((r, a.shape) for r, a in enc(jnp.zeros((2, 8, 8, 1))).items())
    [(1, (2, 1, 1, 16)), (4, (2, 4, 4, 16)), (8, (2, 8, 8, 16))]
  """

  def __init__(self, spec: HVAESpec, *, policy: ExecPolicy | None = None, rngs: nnx.Rngs):
    policy = (policy or ExecPolicy()).resolved()
    policy.check(spec)
    self.spec = spec
    self.policy = policy
    ckw = policy.conv_kw()
    scale = math.sqrt(1.0 / len(spec.enc_pairs))
    self.in_conv = conv(spec.image_channels, spec.width, kernel_size=3, rngs=rngs, **ckw)
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
          **ckw,
        )
        for res, down in spec.enc_pairs
      ]
    )

  def __call__(self, x: Float[ArrayLike, "b h w c"]) -> dict[int, Float[Array, "b _r _r _w"]]:
    s, p = self.spec, self.policy
    s.check_images(x)
    x = jnp.asarray(x)
    x = self.in_conv(x).astype(x.dtype)  # the residual state keeps the input's dtype
    acts = {s.image_size: x}
    for res, down, start, stop in s.enc_segments:
      x, _ = run_program(
        self.enc_blocks,
        list(range(start, stop)),
        lambda blk, c, _: (blk(c), None),
        x,
        None,
        mode=p.mode_at(res),
        unroll=p.scan_unroll,
        remat=p.remat_at(res),
      )
      r = res if down is None else res // down
      x = pad_channels(x, s.width_at(r))
      acts[r] = x
    return acts
