"""VDVAE's top-down decoder: learned start states, mixing, the blocks, gain/bias, output head."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Key

from mrflax._pytree import pytree_dataclass
from mrflax.nn.hvae.block import ComposedBlock, DecBlock
from mrflax.nn.hvae.policy import ExecPolicy
from mrflax.nn.hvae.spec import HVAESpec
from mrflax.nn.layers import conv, sinusoidal_embedding
from mrflax.nn.scan import run_program
from mrflax.wavelets import embed


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
  application ``i``'s own ones (composed by :class:`ComposedBlock`). Each resolution's
  applications run through :func:`mrflax.nn.scan.run_program` in the policy's mode there.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from mrflax.nn import get_preset
    >>> dec = Decoder(get_preset("tiny8"), rngs=nnx.Rngs(0))
    >>> dec(None, jax.random.key(0), batch_size=2).out.shape  # logistic: mean, log-scale
    (2, 8, 8, 2)
  """

  def __init__(self, spec: HVAESpec, *, policy: ExecPolicy | None = None, rngs: nnx.Rngs):
    policy = (policy or ExecPolicy()).resolved()
    policy.check(spec)
    self.spec = spec
    self.policy = policy
    film = 2 * spec.time_frequencies if spec.time_embedding else 0
    kw = dict(
      zdim=spec.zdim,
      num_applications=spec.num_applications,
      bottleneck_multiple=spec.bottleneck_multiple,
      film_features=film,
      step_size=spec.step_size,
      shared_sigma=spec.shared_sigma,
      rngs=rngs,
      **policy.conv_kw(),
    )
    self.dec_blocks = nnx.List(
      [
        DecBlock(res=r, width=spec.width_at(r), components=spec.shared_parts, **kw)
        for r in spec.cell_resolutions
      ]
    )
    self.dec_own = (
      nnx.List(
        [
          DecBlock(res=r, width=spec.width_at(r), components=spec.own_parts, **kw)
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
    self.out_conv = conv(
      spec.width, spec.out_channels, kernel_size=1, rngs=rngs, **policy.conv_kw()
    )

  def _times(self) -> np.ndarray:
    s = self.spec
    n = s.num_applications
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
    s, p = self.spec, self.policy
    n = s.num_applications
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
        if isinstance(cell, tuple):  # run_program's (cell, per_step module) under a mask
          cell = ComposedBlock(*cell)
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
        mode=p.mode_at(res),
        unroll=p.scan_unroll,
        remat=p.remat_at(res),
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
