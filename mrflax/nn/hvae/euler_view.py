r"""Reading a VDVAE decoder block as one two-step Euler step (THEORY.md §4.2).

For a :class:`~mrflax.nn.hvae.block.DecBlock` at state :math:`H` (and encoder activation :math:`e_r`
in posterior mode) and any :math:`\Delta t > 0`:

.. math::
  f = (\Delta_p + A\mu + a)/\Delta t, \quad g = A\,\mathrm{diag}(\sigma)/\sqrt{\Delta t}, \quad
  F(H) = R(H)/\Delta t,

with :math:`(\mu, \sigma) = (\mu_q, \sigma_q)` (posterior) or :math:`(\mu_p, \tau\sigma_p)`
(prior at temperature :math:`\tau`) and :math:`R(H) = \text{resnet}(H) - H`. In explicit
step-size mode (``step_size="explicit"``) the block's own :math:`\Delta t = 1/N` is built into
:math:`\mu, A, a, \Delta_p, R`, and with ``dt`` equal to it the fields :math:`f, g, F` are the
:math:`\Delta t`-free networks :math:`\tilde\delta_p + \tilde A m + \tilde a`,
:math:`\tilde A\,\mathrm{diag}\,\sigma`, :math:`\tilde R`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

from jaxtyping import Array, Float

from mrflax.diffusion import hvae_block_fields
from mrflax.nn.hvae.block import DecBlock


@dataclasses.dataclass(frozen=True)
class BlockSDE:
  """A decoder block read as ``(drift, diffusion, residual drift)`` at a given state.

  Attributes:
    drift: :math:`f(H)`, ``[b, r, r, w]``.
    diffusion: :math:`g(H)`, ``[b, r, r, w, z]``.
    residual_drift: :math:`F`, a function of the intermediate state.
    dt: the step size used.
  """

  drift: Array
  diffusion: Array
  residual_drift: Callable[[Array], Array]
  dt: float


def decblock_as_sde(
  block: DecBlock,
  h: Float[Array, "b r r w"],
  acts: Float[Array, "b r r w"] | None = None,
  *,
  temperature: float = 1.0,
  dt: float,
) -> BlockSDE:
  """Reads a decoder block as a two-step Euler step of an SDE (posterior iff ``acts``).

  Args:
    block: the decoder block.
    h: the block's input state :math:`H_i`.
    acts: encoder activation :math:`e_r` (posterior mode) or None (prior mode).
    temperature: prior temperature :math:`\\tau` (prior mode).
    dt: step size :math:`\\Delta t > 0`.

  Returns:
    A :class:`BlockSDE`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> blk = DecBlock(res=1, width=4, zdim=2, num_applications=2, rngs=nnx.Rngs(0))
    >>> sde = decblock_as_sde(blk, jnp.zeros((1, 1, 1, 4)), dt=0.5)
    >>> sde.drift.shape, sde.diffusion.shape
    ((1, 1, 1, 4), (1, 1, 1, 4, 2))
  """
  if not dt > 0:
    raise ValueError(f"dt must be > 0, got {dt}")
  if not temperature > 0:
    raise ValueError(f"temperature must be > 0, got {temperature}")
  p = block.parts(h, acts)
  if acts is not None:
    mean, logstd = p["q_mean"], p["q_logstd"]
  else:
    mean, logstd = p["p_mean"], p["p_logstd"] + math.log(temperature)
  proj_matrix, proj_bias = block.projection()  # [z, w], [w]; explicit mode: scaled by dt
  f, g = hvae_block_fields(
    delta_p=p["h_prior"],
    mean=mean,
    logstd=logstd,
    proj_matrix=proj_matrix,
    proj_bias=proj_bias,
    dt=dt,
  )

  def residual_drift(x: Array) -> Array:
    return (block.residual_step(x) - x) / dt

  return BlockSDE(drift=f, diffusion=g, residual_drift=residual_drift, dt=dt)


__all__ = ["BlockSDE", "decblock_as_sde"]
