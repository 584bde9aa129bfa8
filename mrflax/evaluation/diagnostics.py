r"""State diagnostics of a top-down HVAE decoder (THEORY.md §5.4 and §6.3).

A decoder pass returns the states :math:`H_0, \dots, H_{N}` (:math:`H_i` enters top-down block
:math:`i`, taken after any nearest-upsampling jump to a new resolution; :math:`H_N` is the final
state), each of shape ``(b, h, w, c)`` for ``b`` images or samples. The functions here summarise
such a list of states:

* :func:`state_rms`, :func:`mean_image_rms`: the state-norm clock RMS_i (§5.4 D1);
* :func:`spearman`, :func:`spearman_within`: its rank correlation with depth per resolution;
* :func:`probe_features`, :func:`ridge_probe`, :func:`depth_probe`: the depth probe (§5.4 D2);
* :func:`state_spread`, :func:`exposure_ratio`, :func:`relative_increments`,
  :func:`nonfinite_fraction`, :func:`pairwise_distance`, :func:`haar_spectrum`: the point-mass
  diagnostics of §6.3.

They are pure JAX/NumPy: the caller collects the states (for :class:`mrflax.nn.HVAE`, with
``model.forward(x, key, return_states=True).states`` for a posterior pass and
``model.decoder(None, key, batch_size=n, temperature=t, return_states=True).states`` for a prior
pass). ``resolutions[i]`` is the side of :math:`H_i` (``[r for r, _ in spec.dec_pairs]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Real

from mrflax import wavelets

# ------------------------------------------------------------------------------------ state norms


def state_rms(states: Sequence[Float[ArrayLike, "b ..."]]) -> Float[Array, " blocks"]:
  r"""The state-norm clock: the RMS of every state, pooled over images (THEORY §5.4 D1).

  .. math::
    \mathrm{RMS}_i = \Big(\frac{1}{|H_i|} \sum_{n, p, c} H_i[n, p, c]^2\Big)^{1/2},

  the mean running over the images :math:`n`, pixels :math:`p` and channels :math:`c` of
  :math:`H_i`. Each entry is computed on its own (the states may differ in shape).

  >>> state_rms([jnp.full((2, 4, 4, 3), -2.0), jnp.array([[3.0], [4.0]])])
  Array([2.   , 3.535534], dtype=float32)
  """
  return jnp.stack([jnp.sqrt(jnp.mean(jnp.square(h))) for h in states])


def mean_image_rms(states: Sequence[Float[ArrayLike, "b ..."]]) -> Float[Array, " blocks"]:
  r"""The RMS of every state per image, averaged over the images.

  .. math::
    \overline{\mathrm{RMS}}_i = \frac1b \sum_{n=1}^b
      \Big(\frac{1}{|H_i[n]|} \sum_{p, c} H_i[n, p, c]^2\Big)^{1/2}
    \;\le\; \mathrm{RMS}_i \quad \text{(Jensen; equal when every image has the same norm).}

  >>> mean_image_rms([jnp.full((2, 4, 4, 3), -2.0), jnp.array([[3.0], [4.0]])])
  Array([2. , 3.5], dtype=float32)
  """
  return jnp.stack(
    [jnp.mean(jnp.sqrt(jnp.mean(h**2, axis=tuple(range(1, jnp.ndim(h)))))) for h in states]
  )


def state_spread(states: Sequence[Float[ArrayLike, "b ..."]]) -> Float[Array, " blocks"]:
  r"""The spread of every state: the across-sample variance, averaged over elements (§6.3).

  .. math::
    v_i = \frac{1}{|H_i[1]|} \sum_{p, c} \operatorname{Var}_n\big(H_i[n, p, c]\big),

  with the population variance (``ddof = 0``) over the ``b`` samples. A point mass has
  :math:`v_i = 0`.

  >>> state_spread([jnp.ones((2, 2, 2, 3)), jnp.array([[0.0, 2.0], [2.0, 6.0]])])
  Array([0. , 2.5], dtype=float32)
  """
  return jnp.stack([jnp.mean(jnp.var(h, axis=0)) for h in states])


def exposure_ratio(
  num: Real[ArrayLike, " blocks"], den: Real[ArrayLike, " blocks"]
) -> Float[np.ndarray, " blocks"]:
  r"""The elementwise ratio ``num / den`` in float64, NaN where ``den`` is not positive.

  With ``num`` the prior RMS at temperature :math:`\tau` and ``den`` the posterior RMS this is the
  exposure ratio :math:`\chi_i(\tau) = \mathrm{RMS}_i^{\mathrm{prior}}(\tau) /
  \mathrm{RMS}_i^{\mathrm{posterior}}` of §6.3; the same function gives the ratio trained / init of
  §5.4 D1 (NaN at the zero start state of an initial model).

  >>> exposure_ratio(np.array([1.0, 3.0, 2.0]), np.array([0.0, 2.0, 4.0]))
  array([nan, 1.5, 0.5])
  """
  num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
  return np.divide(num, den, out=np.full_like(num, np.nan), where=den > 0)


def relative_increments(
  states: Sequence[Float[ArrayLike, "b ..."]], resolutions: Sequence[int]
) -> Float[np.ndarray, " pairs"]:
  r"""Relative increments between consecutive states of one resolution (§6.3, mechanism M2).

  .. math::
    \delta_i = \frac{\lVert H_{i+1} - H_i \rVert}{\max(\lVert H_i \rVert, 10^{-12})},
    \qquad i = 0, \dots, \mathrm{len}(\text{states}) - 2,

  with the Frobenius norm over the whole batch; :math:`\delta_i` is NaN where
  ``resolutions[i + 1] != resolutions[i]`` (a jump: the states differ in shape). ``resolutions``
  has one entry per state.

  >>> hs = [jnp.full((1, 2, 2, 1), 2.0**i) for i in range(3)] + [jnp.ones((1, 4, 4, 1))]
  >>> relative_increments(hs, [2, 2, 2, 4])
  array([ 1.,  1., nan])
  """
  out = []
  for i in range(len(states) - 1):
    if resolutions[i + 1] != resolutions[i]:
      out.append(np.nan)
      continue
    a, b = states[i], states[i + 1]
    out.append(float(jnp.linalg.norm(b - a) / jnp.maximum(jnp.linalg.norm(a), 1e-12)))
  return np.array(out)


# ------------------------------------------------------------------------------ rank correlation


def _ranks(a: np.ndarray) -> np.ndarray:
  order = np.argsort(a, kind="stable")
  r = np.empty(len(a))
  r[order] = np.arange(len(a))
  return r


def spearman(a: Real[ArrayLike, " n"], b: Real[ArrayLike, " n"]) -> float:
  r"""The Spearman rank correlation of two sequences (no ties expected).

  With ranks :math:`r_k = \mathrm{rank}(a_k)` and :math:`s_k = \mathrm{rank}(b_k)` (ties broken
  by position) and :math:`\bar r, \bar s` their means,

  .. math::
    \rho = \frac{\sum_k (r_k - \bar r)(s_k - \bar s)}
                {\sqrt{\sum_k (r_k - \bar r)^2 \sum_k (s_k - \bar s)^2}} ,

  NaN when either sequence is constant in rank (fewer than 2 elements).

  >>> spearman(np.array([1, 2, 3, 4]), np.array([1.0, 10.0, 11.0, 50.0]))
  1.0
  >>> spearman(np.array([1, 2, 3, 4]), np.array([4.0, 3.0, 2.0, 1.0]))
  -1.0
  """
  ra, rb = _ranks(np.asarray(a)), _ranks(np.asarray(b))
  ra, rb = ra - ra.mean(), rb - rb.mean()
  den = np.sqrt((ra**2).sum() * (rb**2).sum())
  return float((ra * rb).sum() / den) if den > 0 else float("nan")


def spearman_within(
  values: Real[ArrayLike, " blocks"], resolutions: Sequence[int]
) -> dict[str, float]:
  r"""Spearman correlation of ``values[i]`` with the block index :math:`i` within each resolution.

  Returns ``{str(r): rho_r}`` for every resolution ``r`` (ascending) with at least 3 blocks:
  :math:`\rho_r = \rho\big((i)_{i \in I_r}, (\text{values}_i)_{i \in I_r}\big)`,
  :math:`I_r = \{i : \text{resolutions}_i = r\}` (:func:`spearman`).

  >>> spearman_within(np.array([5.0, 1.0, 2.0, 3.0, 9.0, 8.0, 7.0]), [1, 4, 4, 4, 8, 8, 8])
  {'4': 1.0, '8': -1.0}
  """
  res = np.asarray(resolutions)
  return {
    str(r): spearman(np.flatnonzero(res == r), np.asarray(values)[res == r])
    for r in sorted(set(resolutions))
    if (res == r).sum() >= 3
  }


# ------------------------------------------------------------------------------------ depth probe


def probe_features(h: Float[ArrayLike, "b h w c"]) -> Float[np.ndarray, "b 2*c"]:
  r"""The probe features :math:`\varphi(H) = (\text{per-channel spatial mean},
  \text{per-channel spatial RMS})` of every image (§5.4 D2), :math:`2c` numbers each.

  .. math::
    \varphi(H)[n] = \Big(\frac1{hw} \sum_p H[n, p, c]\Big)_{c}
      \,\Big\Vert\, \Big(\big(\tfrac1{hw} \textstyle\sum_p H[n, p, c]^2\big)^{1/2}\Big)_{c}.

  >>> probe_features(np.array([[[[1.0, -3.0]], [[-1.0, 3.0]]]]))  # b=1, h=2, w=1, c=2
  array([[0., 0., 1., 3.]])
  """
  h = np.asarray(h)
  return np.concatenate([h.mean(axis=(1, 2)), np.sqrt((h**2).mean(axis=(1, 2)))], axis=-1)


def ridge_probe(
  feats: Float[ArrayLike, "m f"],
  targets: Real[ArrayLike, " m"],
  train_mask: Bool[ArrayLike, " m"],
  *,
  lam: float = 1e-2,
) -> dict[str, float]:
  r"""Ridge regression from features to targets, scored on the held-out rows.

  The features are standardised with the training rows' mean and standard deviation
  (:math:`+10^{-8}`) and a constant column is appended, giving :math:`X`; with :math:`X_t, y_t`
  the rows where ``train_mask`` holds (:math:`m_t` of them),

  .. math::
    w = (X_t^\top X_t + \lambda m_t I)^{-1} X_t^\top y_t, \qquad
    R^2 = 1 - \frac{\sum (X_h w - y_h)^2}{\sum (y_h - \bar y_h)^2}, \qquad
    \mathrm{MAE} = \operatorname{mean} |X_h w - y_h|

  on the held-out rows :math:`h` (``~train_mask``); :math:`R^2` is NaN for constant held-out
  targets. Returns ``{"r2": R^2, "mae": MAE}``.

  >>> x = np.arange(20.0)[:, None]
  >>> ridge_probe(x, 3 * x[:, 0] + 1, np.arange(20) % 2 == 0, lam=0.0)
  {'r2': 1.0, 'mae': 0.0}
  """
  x, y = np.asarray(feats, np.float64), np.asarray(targets, np.float64)
  train_mask = np.asarray(train_mask)
  mu, sd = x[train_mask].mean(0), x[train_mask].std(0) + 1e-8
  x = (x - mu) / sd
  x = np.concatenate([x, np.ones((len(x), 1))], axis=1)
  xt, yt = x[train_mask], y[train_mask]
  w = np.linalg.solve(xt.T @ xt + lam * len(xt) * np.eye(x.shape[1]), xt.T @ yt)
  pred = x[~train_mask] @ w
  ytest = y[~train_mask]
  ss_res = float(((pred - ytest) ** 2).sum())
  ss_tot = float(((ytest - ytest.mean()) ** 2).sum())
  return {
    "r2": 1 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
    "mae": float(np.abs(pred - ytest).mean()),
  }


def depth_probe(
  states: Sequence[Float[ArrayLike, "b _ _ _"]], resolutions: Sequence[int], *, seed: int = 0
) -> dict[str, Any]:
  r"""The depth probe (§5.4 D2): predict the block index :math:`i` from :math:`\varphi(H_i)`.

  One half of the ``b`` images (a permutation drawn with ``numpy.random.default_rng(seed)``)
  fits a :func:`ridge_probe` from :func:`probe_features` of :math:`H_i[n]` to :math:`i`, the other
  half scores it, over the blocks :math:`I_r` of every resolution with at least 2 blocks
  (``"within"``) and, when every state has the same width :math:`c`, over all blocks
  (``"global"``). Control: the same probe with the targets permuted by the same generator
  (``"shuffled_r2"``). ``states[i]`` for ``i < len(resolutions)`` enter (a final state beyond
  them is ignored).

  Returns ``{"within": {str(r): {"r2", "mae", "shuffled_r2", "blocks"}}, "global": {"r2", "mae",
  "shuffled_r2"}}`` (``"global"`` only for equal widths).
  """
  n_img = states[0].shape[0]
  rng = np.random.default_rng(seed)
  half = np.zeros(n_img, bool)
  half[rng.permutation(n_img)[: n_img // 2]] = True
  out: dict[str, Any] = {"within": {}}
  res = np.asarray(resolutions)
  for r in sorted(set(resolutions)):
    idx = np.flatnonzero(res == r)
    if len(idx) < 2:
      continue
    feats = np.concatenate([probe_features(states[i]) for i in idx])
    target = np.repeat(idx.astype(np.float64), n_img)
    mask = np.tile(half, len(idx))
    shuffled = rng.permutation(target)
    out["within"][str(r)] = {
      **ridge_probe(feats, target, mask),
      "shuffled_r2": ridge_probe(feats, shuffled, mask)["r2"],
      "blocks": len(idx),
    }
  widths = {states[i].shape[-1] for i in range(len(resolutions))}
  if len(widths) == 1:  # global probe needs one feature size
    feats = np.concatenate([probe_features(states[i]) for i in range(len(resolutions))])
    target = np.repeat(np.arange(len(resolutions), dtype=np.float64), n_img)
    mask = np.tile(half, len(resolutions))
    out["global"] = {
      **ridge_probe(feats, target, mask),
      "shuffled_r2": ridge_probe(feats, rng.permutation(target), mask)["r2"],
    }
  return out


# --------------------------------------------------------------------------- samples (§6.3, V5)


def nonfinite_fraction(x: Float[ArrayLike, "b ..."]) -> float:
  r"""The fraction of samples with any non-finite value:
  :math:`\frac1b \#\{n : \exists j,\ x[n, j] \notin \mathbb R\}`.

  >>> nonfinite_fraction(jnp.array([[0.0, 1.0], [jnp.nan, 0.0], [0.0, jnp.inf], [2.0, 3.0]]))
  0.5
  """
  axes = tuple(range(1, jnp.ndim(x)))
  finite = np.asarray(jnp.all(jnp.isfinite(jnp.asarray(x)), axis=axes))
  return float(1 - finite.mean())


def pairwise_distance(x: Real[ArrayLike, "b ..."]) -> float:
  r"""The mean pairwise :math:`L^2` distance between samples (float64):
  :math:`\binom{b}{2}^{-1} \sum_{n < m} \lVert x_n - x_m \rVert_2`.

  >>> pairwise_distance(np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]]))  # (5 + 0 + 5) / 3
  3.33333...
  """
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
  return float(d[np.triu_indices(len(x), 1)].mean())


def haar_spectrum(x: Real[ArrayLike, "b n n c"]) -> Float[Array, " levels_plus_1"]:
  r"""The Haar spectrum (THEORY §2.5) of images around their own mean, averaged over images.

  With :math:`\tilde x_n = x_n - \operatorname{mean}(x_n)` (over pixels and channels) analysed
  over :math:`J = \log_2 n` levels and :math:`E_{n, j}` the energy of level :math:`j` of
  :math:`\tilde x_n` (approximation first, then the detail levels coarsest to finest),

  .. math::
    S_j = \frac{\bar E_j}{\sum_k \bar E_k}, \qquad \bar E_j = \frac1b \sum_n E_{n, j},

  so :math:`\sum_j S_j = 1` and the approximation entry is 0 (the mean is removed).

  >>> x = jnp.tile(jnp.array([[1.0, -1.0], [-1.0, 1.0]]), (2, 2))[None, :, :, None]
  >>> haar_spectrum(x)  # a 4x4 checkerboard: all energy in the finest details
  Array([0., 0., 1.], dtype=float32)
  """
  x = jnp.asarray(x, jnp.float32)
  x = x - jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  levels = int(np.log2(x.shape[1]))
  e = wavelets.band_energies(wavelets.haar_analysis(x, levels=levels, ndim=2))
  per = jnp.mean(e.per_level(), axis=0)
  return per / jnp.sum(per)
