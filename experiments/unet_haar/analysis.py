r"""U1 and U2 measurements of trained U-Nets on a fixed test subset, and their summaries.

The two compiled functions (:func:`predict`, :func:`features`) are built once, at import; the
model's ``GraphDef`` is a static argument, so every seed of an architecture shares one
compilation per skip variant.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mrflax import wavelets as W
from mrflax.nn.unet import transform_skip

ABLATIONS = ("detail", "approx", "none")  # U2 skip replacements (full = baseline)


def dyadic_levels(side: int) -> int:
  """How many times ``side`` halves exactly (28 -> 2, 32 -> 5, 8 -> 3)."""
  n = 0
  while side % 2 == 0:
    side //= 2
    n += 1
  return n


def skip_variants(n_levels: int, per_level: bool) -> dict[str, tuple[str, ...]]:
  """U2 (a) variants: name -> skip mode per level (finest first). Level names use THEORY's j
  (the finest skip is j = n_levels, the coarsest j = 1)."""
  out = {"full": ("full",) * n_levels}
  for mode in ABLATIONS:
    out[f"all:{mode}"] = (mode,) * n_levels
  if per_level and n_levels > 1:
    for i in range(n_levels):
      for mode in ABLATIONS:
        modes = ["full"] * n_levels
        modes[i] = mode
        out[f"j{n_levels - i}:{mode}"] = tuple(modes)
  return out


def _energy_ratio(num, den):
  """Per-example ``|num|^2 / |den|^2`` (mean-convention L² norms; the ratio is convention-free)."""
  return W.l2_inner(num, num, ndim=2) / W.l2_inner(den, den, ndim=2)


@functools.partial(jax.jit, static_argnames=("graphdef", "cond", "modes"))
def predict(graphdef, params, rest, z, sigma, x, *, cond: bool, modes=None):
  """Output and per-example MSE of the net ``(graphdef, params, rest)`` for a skip variant."""
  model = nnx.merge(graphdef, params, rest, copy=True)
  y = model(z, sigma if cond else None, skip_mode=modes)
  return y, jnp.mean(jnp.square(y - x), axis=(1, 2, 3))


@functools.partial(jax.jit, static_argnames=("graphdef", "cond", "pooling", "spectrum_levels"))
def features(graphdef, params, rest, z, sigma, x, *, cond: bool, pooling: str, spectrum_levels):
  """U1 per example: band energies of skips and coarse path, downsampler leak, Haar spectra."""
  model = nnx.merge(graphdef, params, rest, copy=True)
  y, f = model(z, sigma if cond else None, return_features=True)
  skip_w, coarse_w, leak = [], [], []
  for j, (h, c, d) in enumerate(zip(f.skips, f.coarse, f.down, strict=True)):
    # Down(ιP h): for avg and max pooling it is P h (all four children equal); for the strided
    # conv it is the conv applied to the piecewise-constant ιP h.
    ph = W.project(h, ndim=2)
    down_approx = model.down[j](W.embed(ph, ndim=2)) if pooling == "conv" else ph
    skip_w.append(_energy_ratio(transform_skip(h, "detail"), h))
    coarse_w.append(_energy_ratio(transform_skip(c, "detail"), c))
    leak.append(_energy_ratio(d - down_approx, d))

  def bands(v):  # energy per Haar level [approx, coarsest detail, ..., finest detail]
    return W.band_energies(W.haar_analysis(v, levels=spectrum_levels, ndim=2)).per_level()

  centre = lambda v: v - jnp.mean(v, axis=(1, 2, 3), keepdims=True)
  return dict(
    skip_w=jnp.stack(skip_w, -1),
    coarse_w=jnp.stack(coarse_w, -1),
    leak=jnp.stack(leak, -1),
    e_target=bands(centre(x)),
    e_output=bands(centre(y)),
    e_error=bands(y - x),
  )


def _batched(fn, n: int, bs: int, *arrays):
  outs = [fn(*(a[i : i + bs] for a in arrays)) for i in range(0, n, bs)]
  return jax.tree.map(lambda *xs: np.concatenate([np.asarray(x) for x in xs]), *outs)


def evaluate_net(
  graphdef,
  params,
  rest,
  test,
  *,
  cond: bool,
  pooling: str,
  spectrum_levels: int,
  variants: dict,
  n_features: int,
  bs: int,
  example_idx,
):
  """Per-example losses of every skip variant, U1 statistics and example outputs of one net."""
  x, z, sigma = test
  losses, examples = {}, {}
  for name, modes in variants.items():
    y, mse = _batched(
      lambda z_, s_, x_, m=modes: predict(graphdef, params, rest, z_, s_, x_, cond=cond, modes=m),
      len(x),
      bs,
      z,
      sigma,
      x,
    )
    losses[name] = mse
    examples[name] = y[example_idx]
  n_f = min(n_features, len(x))
  feats = _batched(
    lambda z_, s_, x_: features(
      graphdef,
      params,
      rest,
      z_,
      s_,
      x_,
      cond=cond,
      pooling=pooling,
      spectrum_levels=spectrum_levels,
    ),
    n_f,
    bs,
    z[:n_f],
    sigma[:n_f],
    x[:n_f],
  )
  return losses, feats, examples


def mean_sd(values) -> dict:
  """Mean and s.d. (ddof = 1; 0 for one seed) over seeds, plus the per-seed values."""
  v = np.asarray(values, np.float64)
  sd = np.std(v, axis=0, ddof=1) if v.shape[0] > 1 else np.zeros(v.shape[1:])
  return dict(mean=np.mean(v, 0).tolist(), sd=np.asarray(sd).tolist(), seeds=v.tolist())


def summarise_run(losses: dict, feats: dict, sigma: np.ndarray, sigma_edges) -> dict:
  """One seed: loss per variant (overall and per σ tercile), Δloss, U1 means, spectra."""
  full = losses["full"]
  bins = np.digitize(sigma, sigma_edges)
  out = dict(
    loss={k: float(np.mean(v)) for k, v in losses.items()},
    delta_loss={k: float(np.mean(v - full)) for k, v in losses.items() if k != "full"},
    loss_by_sigma={k: [float(np.mean(v[bins == b])) for b in range(3)] for k, v in losses.items()},
  )
  e_t, e_o, e_e = feats["e_target"], feats["e_output"], feats["e_error"]
  out.update(
    skip_w=np.mean(feats["skip_w"], 0).tolist(),
    coarse_w=np.mean(feats["coarse_w"], 0).tolist(),
    coarse_w_max=np.max(feats["coarse_w"], 0).tolist(),
    leak=np.mean(feats["leak"], 0).tolist(),
    spectrum_target=np.mean(e_t / e_t.sum(-1, keepdims=True), 0).tolist(),
    spectrum_output=np.mean(e_o / e_o.sum(-1, keepdims=True), 0).tolist(),
    output_over_target=(e_o.sum(0) / e_t.sum(0)).tolist(),
    error_share=(e_e.sum(0) / e_e.sum()).tolist(),
    error_over_target=(e_e.sum(0) / e_t.sum()).tolist(),
  )
  return out


def aggregate(per_seed: list[dict]) -> dict:
  """Mean ± s.d. over seeds of every number of :func:`summarise_run`."""
  out = {}
  for key, first in per_seed[0].items():
    if isinstance(first, dict):
      out[key] = {k: mean_sd([s[key][k] for s in per_seed]) for k in first}
    else:
      out[key] = mean_sd([s[key] for s in per_seed])
  return out
