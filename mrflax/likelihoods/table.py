r"""One table of the image likelihoods an HVAE head can use: ``{name: Likelihood}``.

Every entry has the same call signatures, so a model dispatches with one lookup instead of a
chain of ``if likelihood == ...``:

* ``nll(out, target, *, crop, bits, num_mixtures)``: per-image negative log-likelihood in nats per
  (cropped) dimension, ``[b]``; the loss is taken on the central crop (``crop`` pixels removed per
  side, 0 = none);
* ``sample(key, out, *, num_mixtures, image_channels)``: images drawn from the head
  (``[-1, 1]`` for DMoL / logistic, ``{0, 1}`` for Bernoulli);
* ``out_channels(*, image_channels, num_mixtures)``: channels of the head.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from jaxtyping import Array, Float, Key

from mrflax.likelihoods.bernoulli import bernoulli_nll, bernoulli_sample, central_crop
from mrflax.likelihoods.dmol import dmol_nll, dmol_sample, num_dmol_channels
from mrflax.likelihoods.logistic import discretized_logistic_nll, discretized_logistic_sample


@dataclasses.dataclass(frozen=True)
class Likelihood:
  """A likelihood family of an image head.

  Attributes:
    nll: ``(out, target, *, crop, bits, num_mixtures) -> [b]`` nats per cropped dimension.
    sample: ``(key, out, *, num_mixtures, image_channels) -> images``.
    out_channels: ``(*, image_channels, num_mixtures) -> int``.
    uses_mixtures: whether ``num_mixtures`` matters.
    uses_bits: whether ``bits`` (the target bit depth) matters.
  """

  nll: Callable[..., Array]
  sample: Callable[..., Array]
  out_channels: Callable[..., int]
  uses_mixtures: bool = False
  uses_bits: bool = True


def _dmol_nll(
  out: Float[Array, "b h w k"], target: Float[Array, "b h w c"], *, crop, bits, num_mixtures
) -> Float[Array, " b"]:
  o, t = central_crop(out, crop=crop), central_crop(target, crop=crop)
  return dmol_nll(o, t, num_mixtures=num_mixtures, bits=bits)


def _bernoulli_nll(
  out: Float[Array, "b h w k"], target: Float[Array, "b h w c"], *, crop, bits, num_mixtures
) -> Float[Array, " b"]:
  del bits, num_mixtures
  return bernoulli_nll(out, target, crop=crop)


def _logistic_nll(
  out: Float[Array, "b h w k"], target: Float[Array, "b h w c"], *, crop, bits, num_mixtures
) -> Float[Array, " b"]:
  del num_mixtures
  o = central_crop(out, crop=crop)
  return discretized_logistic_nll(o, central_crop(target, crop=crop), bits=bits)


def _dmol_sample(key: Key[Array, ""], out: Array, *, num_mixtures, image_channels) -> Array:
  del image_channels
  return dmol_sample(key, out, num_mixtures=num_mixtures)


def _bernoulli_sample(key: Key[Array, ""], out: Array, *, num_mixtures, image_channels) -> Array:
  del num_mixtures, image_channels
  return bernoulli_sample(key, out)


def _logistic_sample(key: Key[Array, ""], out: Array, *, num_mixtures, image_channels) -> Array:
  del num_mixtures
  return discretized_logistic_sample(key, out, channels=image_channels)


LIKELIHOODS: dict[str, Likelihood] = {
  "dmol": Likelihood(
    nll=_dmol_nll,
    sample=_dmol_sample,
    out_channels=lambda *, image_channels, num_mixtures: num_dmol_channels(
      num_mixtures=num_mixtures
    ),
    uses_mixtures=True,
  ),
  "bernoulli": Likelihood(
    nll=_bernoulli_nll,
    sample=_bernoulli_sample,
    out_channels=lambda *, image_channels, num_mixtures: image_channels,
    uses_bits=False,
  ),
  "logistic": Likelihood(
    nll=_logistic_nll,
    sample=_logistic_sample,
    out_channels=lambda *, image_channels, num_mixtures: 2 * image_channels,
  ),
}
"""The likelihoods by name: VDVAE's DMoL (RGB), Bernoulli (binary), discretised logistic.

Examples:
  >>> import jax.numpy as jnp
  >>> sorted(LIKELIHOODS)
  ['bernoulli', 'dmol', 'logistic']
  >>> LIKELIHOODS["logistic"].out_channels(image_channels=1, num_mixtures=10)
  2
  >>> x = jnp.zeros((2, 4, 4, 1))
  >>> LIKELIHOODS["bernoulli"].nll(x, x, crop=1, bits=8, num_mixtures=1).shape
  (2,)
"""
