"""The HVAE model API: posterior and prior passes, the ELBO loss, sampling, reconstructions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, ArrayLike, Float, Key

from mrflax.nn.hvae.decoder import Decoder, DecoderOutput
from mrflax.nn.hvae.encoder import Encoder
from mrflax.nn.hvae.policy import ExecPolicy
from mrflax.nn.hvae.spec import HVAESpec


class HVAE(nnx.Module):
  """The hierarchical VAE: :class:`Encoder` + :class:`Decoder` + likelihood.

  ``spec`` fixes the architecture (the parameter tree and the maths), ``policy`` how it runs
  (default :class:`ExecPolicy()`; resolved once here, e.g. ``conv_backward="auto"`` by the
  backend). The likelihood is looked up in :data:`mrflax.likelihoods.LIKELIHOODS`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from mrflax.nn import get_preset
    >>> model = HVAE(get_preset("tiny8"), rngs=nnx.Rngs(0))
    >>> x = jnp.zeros((2, 8, 8, 1))
    >>> loss, metrics = model.loss(x, x, jax.random.key(0))
    >>> metrics["kl_per_block"].shape
    (4,)
  """

  def __init__(self, spec: HVAESpec, *, policy: ExecPolicy | None = None, rngs: nnx.Rngs):
    policy = (policy or ExecPolicy()).resolved()
    self.spec = spec
    self.policy = policy
    self.encoder = Encoder(spec, policy=policy, rngs=rngs)
    self.decoder = Decoder(spec, policy=policy, rngs=rngs)

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
    return s.likelihood_family.nll(
      out, target, crop=s.crop, bits=s.bits, num_mixtures=s.num_mixtures
    )

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
    return s.likelihood_family.sample(
      key, out, num_mixtures=s.num_mixtures, image_channels=s.image_channels
    )

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
