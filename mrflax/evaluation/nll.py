r"""Negative ELBO and importance-weighted bounds over a whole split, every example counted once.

For an HVAE with data dimension :math:`D` (after any crop), per image

.. math::
  -\mathrm{ELBO}(x) = -\log p(x \mid z) + \sum_i \mathrm{KL}_i ,\qquad
  \text{bits/dim} = \frac{-\mathrm{ELBO}}{D \ln 2},

and the importance-weighted bound (Burda et al., 2016) with :math:`K` posterior samples

.. math::
  \log p(x) \ge \mathcal L_K(x) = \mathbb E\Big[\log \frac1K \sum_{k=1}^K w_k\Big],\qquad
  \log w_k = \log p(x \mid z_k) + \sum_i \big[\log p(z_{i,k} \mid z_{<i,k})
             - \log q(z_{i,k} \mid x, z_{<i,k})\big],

with :math:`\mathcal L_1 = \mathrm{ELBO} \le \mathcal L_K \le \mathcal L_{K'}` for
:math:`K \le K'`. Batches come padded with a ``mask`` (:func:`mrflax.data.eval_batches`); only the
rows with ``mask = 1`` enter the averages (padding rows are dropped, even if they are NaN).
Given a ``mesh``, every batch is sharded over its ``data`` axis before the (jitted) function
sees it; a mesh that spans several processes takes each process's rows of every batch and gives
every process the whole split's result.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jaxtyping import Array, ArrayLike, Float, Key

from mrflax import sharding as _sharding


def hvae_terms(model: Any, batch: dict[str, ArrayLike], key: Array) -> dict[str, Array]:
  """Per-image terms of a posterior pass: distortion and per-block KL, both in nats/dim.

  Returns ``{"distortion": [b], "kl": [b, N]}`` for an :class:`mrflax.nn.HVAE`-like model (one
  with ``forward``, ``nll`` and ``spec.data_dims``).
  """
  out = model.forward(batch["image"], key)
  distortion = model.nll(out.out, batch["target"])
  kl = jnp.stack([jnp.sum(k, axis=-1) for k in out.kl], axis=-1) / model.spec.data_dims
  return {"distortion": distortion, "kl": kl}


def hvae_log_weights(
  model: Any,
  batch: dict[str, ArrayLike],
  key: Key[Array, ""],
  *,
  num_samples: int,
  chunk: int | None = None,
) -> Float[Array, "b k"]:
  r"""Log importance weights of ``num_samples`` posterior samples per image, in nats per image.

  .. math::
    \log w_k = -D\,d_k + \sum_i \big[\log p(z_{i,k} \mid z_{<i,k})
               - \log q(z_{i,k} \mid x, z_{<i,k})\big],

  where :math:`d_k` is ``model.nll`` (nats/dim) of sample :math:`k` and :math:`D` =
  ``model.spec.data_dims``; the per-block log-ratios are the decoder's ``log_ratio``. The encoder
  runs once; the top-down pass is vmapped over the samples, ``chunk`` at a time (``lax.map``
  with ``batch_size=chunk``: peak memory of ``chunk`` posterior passes instead of ``K``).
  Sample ``k`` uses the key ``fold_in(key, k)`` whatever ``chunk`` is, so chunking changes only
  the float rounding (XLA sees a different batch size), not the samples; sample 0 is the
  posterior pass of :func:`hvae_terms` with ``fold_in(key, 0)``.

  Args:
    model: an :class:`mrflax.nn.HVAE`-like model (``encode``, ``decoder``, ``nll``, ``spec``).
    batch: ``{"image": inputs, "target": targets}``.
    key: PRNG key.
    num_samples: ``K >= 1``.
    chunk: samples per vmapped call (``None``: all ``K`` at once).

  Returns:
    ``[b, K]`` log weights (nats per image).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from mrflax.nn import HVAE, get_preset
    >>> model = HVAE(get_preset("micro4"), rngs=nnx.Rngs(0))
    >>> x = jnp.zeros((2, 4, 4, 1))
    >>> hvae_log_weights(model, {"image": x, "target": x}, jax.random.key(0),
    ...                  num_samples=3, chunk=2).shape
    (2, 3)
  """
  _check_samples(num_samples, chunk)
  x, target = batch["image"], batch["target"]
  dims = model.spec.data_dims
  acts = model.encode(x)

  def one(k):
    out = model.decoder(acts, k)
    log_ratio = sum(jnp.asarray(r, jnp.float32) for r in out.log_ratio)
    return -dims * model.nll(out.out, target).astype(jnp.float32) + log_ratio

  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(num_samples))
  if chunk is None or chunk >= num_samples:
    log_w = jax.vmap(one)(keys)
  else:
    log_w = jax.lax.map(one, keys, batch_size=chunk)
  return log_w.T


def kl_per_resolution(
  kl_per_block: Sequence[float] | np.ndarray, resolutions: Sequence[int]
) -> dict[int, float]:
  r"""Sums per-block KLs by the resolution of their block: :math:`R_r = \sum_{i: r_i = r} KL_i`.

  Args:
    kl_per_block: one KL per top-down block (any unit; the sums keep it).
    resolutions: the resolution of every block (``[r for r, _ in spec.dec_pairs]``).

  Returns:
    ``{resolution: summed KL}``, resolutions ascending.

  Examples:
    >>> kl_per_resolution([0.1, 0.2, 0.3, 0.4], [1, 4, 4, 8])
    {1: 0.1, 4: 0.5, 8: 0.4}
  """
  kl = np.asarray(kl_per_block, np.float64)
  res = [int(r) for r in resolutions]
  if kl.ndim != 1 or len(res) != len(kl):
    raise ValueError(f"got {kl.shape} per-block KLs but {len(res)} block resolutions")
  return {
    r: float(np.sum(kl[[i for i, ri in enumerate(res) if ri == r]])) for r in sorted(set(res))
  }


# ------------------------------------------------------------------------------------- results
@dataclasses.dataclass
class ElboResult:
  """Split averages (masked), in nats per dimension unless stated.

  Attributes:
    nats_per_dim, bits_per_dim: the negative ELBO.
    nats_per_image: ``nats_per_dim * data_dims`` (the figure for binarised MNIST).
    distortion, rate: its two parts (nats/dim).
    kl_per_block: mean KL of every top-down block (nats/dim), shape ``[N]``.
    num_examples: real examples evaluated.
    kl_per_resolution: the per-block KLs summed by block resolution (nats/dim); empty when the
      resolutions were not given. ``to_dict`` adds the same in bits/dim
      (``bits_per_resolution``).
  """

  nats_per_dim: float
  bits_per_dim: float
  nats_per_image: float
  distortion: float
  rate: float
  kl_per_block: np.ndarray
  num_examples: int
  kl_per_resolution: dict[int, float] = dataclasses.field(default_factory=dict)

  def to_dict(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d["kl_per_block"] = [float(v) for v in self.kl_per_block]
    d["kl_per_resolution"] = {str(r): v for r, v in self.kl_per_resolution.items()}
    d["bits_per_resolution"] = {
      str(r): v / math.log(2.0) for r, v in self.kl_per_resolution.items()
    }
    return d


@dataclasses.dataclass
class IwResult:
  """The importance-weighted bound over a split (masked averages).

  Attributes:
    nats_per_dim, bits_per_dim, nats_per_image: :math:`-\\mathcal L_K` per dimension, in bits
      per dimension and per image.
    elbo_nats_per_dim: the plain Monte-Carlo negative ELBO from the same samples
      (:math:`-\\frac1K \\sum_k \\log w_k / D`); minus ``nats_per_dim`` it is the IW gain.
    ess: mean effective sample size :math:`(\\sum_k w_k)^2 / \\sum_k w_k^2` (1 to ``K``).
    num_samples: ``K``.
    chunk: samples per vmapped call (``None``: all at once).
    num_examples: real examples evaluated.
  """

  nats_per_dim: float
  bits_per_dim: float
  nats_per_image: float
  elbo_nats_per_dim: float
  ess: float
  num_samples: int
  chunk: int | None
  num_examples: int

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------ the loops
def _real_rows(
  fn: Callable[[dict[str, Any], Array], Any],
  batches: Iterable[dict[str, ArrayLike]],
  key: Array,
  mesh: Any,
) -> Iterator[Any]:
  """Calls ``fn(batch, fold_in(key, i))`` on every batch; yields its outputs' real rows.

  With a ``mesh`` whose devices span several processes, each process passes its rows of every
  global batch (:func:`mrflax.data.eval_batches` with ``rows``); the global batch (mask
  included) is assembled over the mesh, and the outputs and the mask are gathered on every
  process, so every process yields the real rows of the whole global batch, in order.
  """
  for i, batch in enumerate(batches):
    if "mask" not in batch:
      raise ValueError("evaluation batches need a 'mask' entry (see mrflax.data.eval_batches)")
    batch_key = jax.random.fold_in(key, i)
    if mesh is not None and not _spans_one_process(mesh):
      feed = _sharding.shard_batch(dict(batch), mesh)  # this process's rows -> global arrays
      mask = feed.pop("mask")
      _sharding.check_batch_divisible(mask.shape[0], mesh)
      out, mask = multihost_utils.process_allgather((fn(feed, batch_key), mask), tiled=True)
      keep = np.asarray(mask) > 0
    else:
      keep = np.asarray(batch["mask"]) > 0
      feed = {k: v for k, v in batch.items() if k != "mask"}
      if mesh is not None:
        _sharding.check_batch_divisible(len(keep), mesh)
        feed = _sharding.shard_batch(feed, mesh)
      out = jax.device_get(fn(feed, batch_key))
    yield jax.tree.map(lambda v, keep=keep: np.asarray(v, np.float64)[keep], out)


def _spans_one_process(mesh: Any) -> bool:
  return len({d.process_index for d in np.asarray(mesh.devices).flat}) == 1


def evaluate_elbo(
  terms_fn: Callable[[dict[str, Any], Array], dict[str, Array]],
  batches: Iterable[dict[str, ArrayLike]],
  *,
  key: Array,
  data_dims: int,
  resolutions: Sequence[int] | None = None,
  mesh: Any = None,
) -> ElboResult:
  """Averages :func:`hvae_terms`-style outputs over masked batches.

  Args:
    terms_fn: ``terms_fn(batch, key) -> {"distortion": [b], "kl": [b, N]}`` (jit it yourself;
      one compilation serves every batch since all batches have the same shape).
    batches: batches with a ``mask`` entry (1 for real examples).
    key: base key; batch ``i`` uses ``fold_in(key, i)``.
    data_dims: dimensions per image, for nats/image.
    resolutions: the resolution of every block, for ``kl_per_resolution``.
    mesh: shard each batch over this mesh's ``data`` axis (batch size divisible by its size).
      A mesh over several processes' devices: every process calls this with its rows of each
      batch (:func:`mrflax.data.eval_batches` with ``rows=``
      :func:`mrflax.sharding.process_rows`) and gets the result of the whole split, equal to
      the single-process one (same batches, same per-batch keys).

  Returns:
    :class:`ElboResult`.

  Examples:
    >>> import jax, numpy as np
    >>> batches = [{"mask": np.array([1.0, 0.0])}]
    >>> fn = lambda b, k: {"distortion": np.array([2.0, np.nan]), "kl": np.ones((2, 2))}
    >>> r = evaluate_elbo(fn, batches, key=jax.random.key(0), data_dims=4, resolutions=[1, 2])
    >>> r.nats_per_dim, r.kl_per_resolution
    (4.0, {1: 1.0, 2: 1.0})
  """
  total_d = 0.0
  total_kl = None
  count = 0
  for out in _real_rows(terms_fn, batches, key, mesh):
    total_d += float(np.sum(out["distortion"]))
    kl = np.sum(out["kl"].reshape(len(out["distortion"]), -1), axis=0)
    total_kl = kl if total_kl is None else total_kl + kl
    count += len(out["distortion"])
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
    num_examples=count,
    kl_per_resolution=(
      kl_per_resolution(kl_per_block, resolutions) if resolutions is not None else {}
    ),
  )


def evaluate_iw(
  log_weights_fn: Callable[[dict[str, Any], Array], Array],
  batches: Iterable[dict[str, ArrayLike]],
  *,
  key: Array,
  data_dims: int,
  chunk: int | None = None,
  mesh: Any = None,
) -> IwResult:
  r"""The importance-weighted bound :math:`\mathcal L_K` averaged over masked batches.

  Per image :math:`\log \frac1K \sum_k w_k` is formed in float64 on the host from the
  ``[b, K]`` log weights (:func:`hvae_log_weights`), then averaged over the real examples.

  Args:
    log_weights_fn: ``log_weights_fn(batch, key) -> [b, K]`` log weights in nats per image
      (jit it yourself, e.g. around :func:`hvae_log_weights`).
    batches: batches with a ``mask`` entry (1 for real examples).
    key: base key; batch ``i`` uses ``fold_in(key, i)``.
    data_dims: dimensions per image.
    chunk: the ``chunk`` the log weights were computed with (recorded in the result).
    mesh: shard each batch over this mesh's ``data`` axis (batch size divisible by its size);
      over several processes as in :func:`evaluate_elbo`.

  Returns:
    :class:`IwResult`.

  Examples:
    >>> import jax, numpy as np
    >>> lw = np.log([[1.0, 3.0], [np.nan, np.nan]])  # the second row is padding
    >>> r = evaluate_iw(lambda b, k: lw, [{"mask": np.array([1.0, 0.0])}],
    ...                 key=jax.random.key(0), data_dims=1)
    >>> round(r.nats_per_image, 4), r.num_samples, round(r.ess, 4)  # -log((1 + 3) / 2)
    (-0.6931, 2, 1.6)
  """
  total = 0.0
  total_elbo = 0.0
  total_ess = 0.0
  count = 0
  num_samples = None
  for log_w in _real_rows(log_weights_fn, batches, key, mesh):
    if log_w.ndim != 2:
      raise ValueError(f"log weights must have shape [b, K], got {log_w.shape}")
    if num_samples is None:
      num_samples = log_w.shape[1]
    m = np.max(log_w, axis=1, keepdims=True)
    w = np.exp(log_w - m)
    total += float(np.sum(m[:, 0] + np.log(np.mean(w, axis=1))))
    total_elbo += float(np.sum(log_w))
    total_ess += float(np.sum(np.sum(w, axis=1) ** 2 / np.sum(w**2, axis=1)))
    count += log_w.shape[0]
  if count == 0:
    raise ValueError("evaluate_iw got no examples")
  nats_per_image = -total / count
  return IwResult(
    nats_per_dim=nats_per_image / data_dims,
    bits_per_dim=nats_per_image / data_dims / math.log(2.0),
    nats_per_image=nats_per_image,
    elbo_nats_per_dim=-total_elbo / (count * num_samples) / data_dims,
    ess=total_ess / count,
    num_samples=int(num_samples),
    chunk=chunk,
    num_examples=count,
  )


def _check_samples(num_samples: int, chunk: int | None) -> None:
  if not isinstance(num_samples, int) or num_samples < 1:
    raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
  if chunk is not None and (not isinstance(chunk, int) or chunk < 1):
    raise ValueError(f"chunk must be None or an integer >= 1, got {chunk!r}")
