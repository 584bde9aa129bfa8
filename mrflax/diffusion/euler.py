r"""One step of the multi-resolution diffusion (THEORY.md §4.2-4.3), as pure functions.

For the HVAE reading of a top-down block with step size :math:`\Delta t`:

.. math::
  H_{i+1/2} = H_i + f(H_i)\,\Delta t + g(H_i)\,\Delta W_i, \qquad
  H_{i+1} = H_{i+1/2} + F(H_{i+1/2})\,\Delta t,

with :math:`\Delta W_i = \sqrt{\Delta t}\,\varepsilon_i`. :func:`hvae_block_fields` builds
:math:`f` and :math:`g` from a block's sub-network outputs.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float


def brownian_increment(
  eps: Float[Array, "*s"], *, dt: float | Float[Array, ""]
) -> Float[Array, "*s"]:
  r"""Brownian increment :math:`\Delta W = \sqrt{\Delta t}\,\varepsilon` from standard normals.

  Args:
    eps: standard-normal noise.
    dt: step size :math:`\Delta t > 0`.

  Returns:
    :math:`\sqrt{\Delta t}\,\varepsilon`.

  Examples:
    >>> import jax.numpy as jnp
    >>> brownian_increment(jnp.array([1.0, -2.0]), dt=0.25).tolist()
    [0.5, -1.0]
  """
  return jnp.sqrt(dt) * eps


def euler_step(
  h: Float[Array, "*s w"], *, drift: Float[Array, "*s w"], dt: float | Float[Array, ""]
) -> Float[Array, "*s w"]:
  r"""Deterministic forward-Euler step :math:`H + F(H)\,\Delta t` (``drift`` = :math:`F(H)`).

  Args:
    h: state.
    drift: drift evaluated at ``h``.
    dt: step size.

  Returns:
    The next state.

  Examples:
    >>> import jax.numpy as jnp
    >>> euler_step(jnp.ones(2), drift=jnp.array([2.0, -4.0]), dt=0.5).tolist()
    [2.0, -1.0]
  """
  return h + drift * dt


def euler_maruyama_step(
  h: Float[Array, "*s w"],
  *,
  drift: Float[Array, "*s w"],
  diffusion: Float[Array, "*s w z"],
  dw: Float[Array, "*s z"],
  dt: float | Float[Array, ""],
) -> Float[Array, "*s w"]:
  r"""Euler–Maruyama step :math:`H + f(H)\,\Delta t + g(H)\,\Delta W`.

  The diffusion is a matrix per site (``[..., w, z]``: state width by noise width), applied to
  the Brownian increment ``dw`` (``[..., z]``).

  Args:
    h: state ``[..., w]``.
    drift: :math:`f(H)`, ``[..., w]``.
    diffusion: :math:`g(H)`, ``[..., w, z]``.
    dw: Brownian increment :math:`\Delta W`, ``[..., z]``.
    dt: step size.

  Returns:
    The next state ``[..., w]``.

  Examples:
    >>> import jax.numpy as jnp
    >>> g = jnp.array([[1.0], [2.0]])  # w = 2, z = 1
    >>> euler_maruyama_step(jnp.zeros(2), drift=jnp.ones(2), diffusion=g, dw=jnp.array([0.5]),
    ...                     dt=0.1).tolist()
    [0.6, 1.1]
  """
  return h + drift * dt + jnp.einsum("...wz,...z->...w", diffusion, dw)


def hvae_block_fields(
  *,
  delta_p: Float[Array, "*s w"],
  mean: Float[Array, "*s z"],
  logstd: Float[Array, "*s z"],
  proj_matrix: Float[Array, "z w"],
  proj_bias: Float[Array, " w"],
  dt: float | Float[Array, ""],
) -> tuple[Float[Array, "*s w"], Float[Array, "*s w z"]]:
  r"""Drift and diffusion of the stochastic sub-step of an HVAE top-down block.

  .. math::
    f = \frac{\Delta_p + A\mu + a}{\Delta t}, \qquad
    g = \frac{A\,\mathrm{diag}(\sigma)}{\sqrt{\Delta t}}

  with :math:`A` the (1x1) latent projection (``proj_matrix[z, w]`` maps ``z -> w``, i.e.
  :math:`A = \text{proj\_matrix}^\top`), :math:`a` its bias, and :math:`(\mu, \sigma)` the
  posterior (or tempered prior) mean and standard deviation.

  Args:
    delta_p: the prior's state increment :math:`\Delta_p`.
    mean: latent mean :math:`\mu`.
    logstd: latent log standard deviation :math:`\log\sigma`.
    proj_matrix: projection weights ``[z, w]``.
    proj_bias: projection bias ``[w]``.
    dt: step size.

  Returns:
    ``(f, g)`` with ``g`` of shape ``[..., w, z]``.

  Examples:
    >>> import jax.numpy as jnp
    >>> f, g = hvae_block_fields(delta_p=jnp.zeros(2), mean=jnp.ones(1), logstd=jnp.zeros(1),
    ...                          proj_matrix=jnp.array([[1.0, 2.0]]), proj_bias=jnp.zeros(2),
    ...                          dt=0.25)
    >>> f.tolist(), g.tolist()
    ([4.0, 8.0], [[2.0], [4.0]])
  """
  a_mu = jnp.einsum("...z,zw->...w", mean, proj_matrix)
  f = (delta_p + a_mu + jnp.reshape(proj_bias, (1,) * (a_mu.ndim - 1) + (-1,))) / dt
  sigma = jnp.exp(logstd)
  a_mat = jnp.reshape(
    jnp.swapaxes(proj_matrix, 0, 1), (1,) * (sigma.ndim - 1) + a_mu.shape[-1:] + sigma.shape[-1:]
  )
  g = a_mat * sigma[..., None, :] / jnp.sqrt(dt)
  return f, g
