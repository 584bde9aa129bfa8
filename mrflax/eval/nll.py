r"""Negative ELBO over a whole evaluation split, every example counted exactly once.

For an HVAE with data dimension :math:`D` (after any crop), per image

.. math::
  -\mathrm{ELBO}(x) = -\log p(x \mid z) + \sum_i \mathrm{KL}_i ,\qquad
  \text{bits/dim} = \frac{-\mathrm{ELBO}}{D \ln 2}.

Batches come padded with a ``mask`` (:func:`mrflax.data.eval_batches`); the averages use it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array


def hvae_terms(model: Any, batch: dict[str, Array], key: Array) -> dict[str, Array]:
  """Per-image terms of a posterior pass: distortion and per-block KL, both in nats/dim.

  Returns ``{"distortion": [b], "kl": [b, N]}`` for an :class:`mrflax.nn.HVAE`-like model (one
  with ``forward``, ``nll`` and ``spec.data_dims``).
  """
  out = model.forward(batch["image"], key)
  distortion = model.nll(out.out, batch["target"])
  kl = jnp.stack([jnp.sum(k, axis=-1) for k in out.kl], axis=-1) / model.spec.data_dims
  return {"distortion": distortion, "kl": kl}


@dataclasses.dataclass
class ElboResult:
  """Test-set averages (masked), in nats per dimension unless stated.

  Attributes:
    nats_per_dim, bits_per_dim: the negative ELBO.
    nats_per_image: ``nats_per_dim * data_dims`` (the figure for binarised MNIST).
    distortion, rate: its two parts (nats/dim).
    kl_per_block: mean KL of every top-down block (nats/dim), shape ``[N]``.
    num_examples: real examples evaluated.
  """

  nats_per_dim: float
  bits_per_dim: float
  nats_per_image: float
  distortion: float
  rate: float
  kl_per_block: np.ndarray
  num_examples: int

  def to_dict(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d["kl_per_block"] = [float(v) for v in self.kl_per_block]
    return d


def evaluate_elbo(
  terms_fn,
  batches: Iterable[dict[str, np.ndarray]],
  *,
  key: Array,
  data_dims: int,
) -> ElboResult:
  """Averages :func:`hvae_terms`-style outputs over masked batches.

  Args:
    terms_fn: ``terms_fn(batch, key) -> {"distortion": [b], "kl": [b, N]}`` (jit it yourself;
      one compilation serves every batch since all batches have the same shape).
    batches: batches with a ``mask`` entry (1 for real examples).
    key: base key; batch ``i`` uses ``fold_in(key, i)``.
    data_dims: dimensions per image, for nats/image.

  Returns:
    :class:`ElboResult`.
  """
  total_d = 0.0
  total_kl = None
  count = 0.0
  for i, batch in enumerate(batches):
    mask = np.asarray(batch["mask"], np.float64)
    feed = {k: v for k, v in batch.items() if k != "mask"}
    out = jax.device_get(terms_fn(feed, jax.random.fold_in(key, i)))
    total_d += float(np.sum(np.asarray(out["distortion"], np.float64) * mask))
    kl = np.sum(np.asarray(out["kl"], np.float64) * mask[:, None], axis=0)
    total_kl = kl if total_kl is None else total_kl + kl
    count += float(mask.sum())
  if count == 0:
    raise ValueError("evaluate_elbo got no examples")
  kl_per_block = total_kl / count
  distortion = total_d / count
  rate = float(np.sum(kl_per_block))
  nats = distortion + rate
  return ElboResult(
    nats_per_dim=nats,
    bits_per_dim=nats / math.log(2.0),
    nats_per_image=nats * data_dims,
    distortion=distortion,
    rate=rate,
    kl_per_block=kl_per_block,
    num_examples=int(count),
  )
