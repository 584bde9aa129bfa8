r"""One VDVAE top-down block (VDVAE_REFERENCE.md §5) and its composition from shared parts.

:class:`UpdateRule` is the block's update (posterior / prior, latent projection, residual) written
against four sub-networks ``enc``, ``prior``, ``z_proj``, ``resnet``; :class:`DecBlock` is the
module that owns them, and :class:`ComposedBlock` applies the same rule to sub-networks held by
two blocks (a shared cell and one application's own parts, weight sharing with a component mask).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float, Key

from mrflax import likelihoods as lk
from mrflax.nn.hvae.spec import COMPONENTS, STEP_SIZES
from mrflax.nn.layers import Block, conv

COMPONENT_ATTRS = {"posterior": "enc", "prior": "prior", "z_proj": "z_proj", "residual": "resnet"}
"""The attribute (VDVAE's state-dict name) of every component."""


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


class UpdateRule:
  r"""The update of a top-down block, from its four sub-networks and its settings.

  Needs the attributes ``enc``, ``prior``, ``z_proj``, ``resnet`` (sub-networks) and ``zdim``,
  ``dt``, ``step_size``, ``shared_sigma`` (settings): :class:`DecBlock` owns them,
  :class:`ComposedBlock` refers to those of two blocks.
  """

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
    """The block update with fresh noise drawn from ``key`` (see :meth:`step_from_eps`)."""
    eps = jax.random.normal(key, (*x.shape[:-1], self.zdim), x.dtype)
    return self.step_from_eps(
      x, acts, eps, temperature=temperature, z_given=z_given, use_given=use_given, emb=emb
    )


class DecBlock(UpdateRule, nnx.Module):
  r"""One VDVAE top-down block: posterior ``enc``, ``prior``, ``z_proj``, ``resnet`` (§5).

  Update in posterior mode (prior mode: no ``enc``, ``z = p_mean + t e^{p_logstd} eps``)::

    q_mean, q_logstd = enc([x, acts]);  p_mean, p_logstd, h_prior = prior(x)
    x = x + h_prior;  z = q_mean + exp(q_logstd) * eps;  x = x + z_proj(z);  x = resnet(x)

  With ``step_size="explicit"`` (THEORY.md §4.3) the network outputs are read as
  :math:`\Delta t`-free fields: means :math:`\sqrt{\Delta t}\,m`, prior increment
  :math:`\Delta t\,\tilde\delta_p`, latent projection :math:`\sqrt{\Delta t}\,\tilde A z +
  \Delta t\,\tilde a` and residual :math:`x + \Delta t\,\tilde R(x)`, with
  :math:`\Delta t = 1/N_{app}` (``num_applications``: the applications over all resolutions);
  the :math:`\sqrt{1/N}` init scalings are then dropped (the explicit factors take their place).
  With ``shared_sigma`` the posterior outputs a mean only and uses the prior's standard
  deviation.

  A block may hold only some sub-networks (``components``): weight sharing with a component
  mask joins a shared cell with an application's own parts in a :class:`ComposedBlock`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> blk = DecBlock(res=4, width=8, zdim=2, num_applications=3, rngs=nnx.Rngs(0))
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
    num_applications: int,
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
    if num_applications < 1:
      raise ValueError(f"num_applications must be >= 1, got {num_applications}")
    unknown = [c for c in components if c not in COMPONENTS]
    if unknown:
      raise ValueError(f"unknown decoder block components {unknown}; known: {COMPONENTS}")
    mid = int(width * bottleneck_multiple)
    use_3x3 = res > 2
    scale = math.sqrt(1.0 / num_applications) if step_size == "absorbed" else 1.0
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
    self.dt = 1.0 / num_applications
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


class ComposedBlock(UpdateRule):
  """A decoder block made of a shared cell's sub-networks and one application's own ones.

  Weight sharing with a component mask (``HVAESpec.share_components``): the distinct cells hold
  the shared sub-networks, every application holds the rest. This object holds references to
  both blocks' sub-networks (each component from exactly one of them) and runs the
  :class:`UpdateRule` on them; its settings (``zdim``, ``dt``, ...) are the shared cell's.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> kw = dict(res=1, width=4, zdim=2, num_applications=2, rngs=nnx.Rngs(0))
    >>> shared = DecBlock(components=("prior", "residual"), **kw)
    >>> own = DecBlock(components=("posterior", "z_proj"), **kw)
    >>> blk = ComposedBlock(shared, own)
    >>> blk.prior is shared.prior and blk.enc is own.enc
    True
    >>> blk(jnp.zeros((1, 1, 1, 4)), None, jax.random.key(0)).x.shape
    (1, 1, 1, 4)
  """

  def __init__(self, shared: DecBlock, own: DecBlock):
    for name in COMPONENT_ATTRS.values():
      a, b = getattr(shared, name), getattr(own, name)
      if (a is None) == (b is None):
        raise ValueError(f"component {name!r} must be in exactly one of the two blocks")
      setattr(self, name, a if a is not None else b)
    self.zdim = shared.zdim
    self.width = shared.width
    self.step_size = shared.step_size
    self.dt = shared.dt
    self.shared_sigma = shared.shared_sigma
