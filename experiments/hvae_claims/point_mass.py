"""Point mass against a Gaussian start (issue 6 item 4, THEORY §6, V5): the unshared baseline
against ``start_noise`` ζ, over seeds. Skipped updates and gradient-norm spikes in training;
for prior samples at every temperature τ the state RMS and spread, the exposure ratio
χ_i(τ), relative increments δ_i, the non-finite fraction, the sample spread and the Haar
spectrum against the data's (§6.3); test NLL."""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments.hvae_claims import plots, runs
from mrflax import evaluation


def _first_finite(rows) -> float | None:
  """Mean over runs of the first within-resolution relative increment (delta of block 0)."""
  firsts = [next((v for v in row if v is not None and np.isfinite(v)), None) for row in rows]
  firsts = [v for v in firsts if v is not None]
  return float(np.mean(firsts)) if firsts else None


def _finite(r) -> np.ndarray:
  v = np.array([np.nan if x is None else x for x in r["prior"]["1.0"]["exposure_ratio"]])
  return v[np.isfinite(v)]


def point_mass_runs(cfg) -> dict[str, tuple[float, ml_collections.ConfigDict]]:
  out = {}
  for seed in cfg.seeds:
    out[f"k1_s{seed}"] = (0.0, runs.run_config(cfg, seed=seed, share="1"))
    for z in cfg.zetas:
      out[f"zeta{z}_s{seed}"] = (
        z,
        runs.run_config(cfg, seed=seed, share="1", start_noise=float(z)),
      )
  return out


def _increments(states, resolutions) -> list:
  # every state but the last enters a block; the final state has the last block's resolution
  return runs.none_for_nonfinite(
    evaluation.relative_increments(states, [*resolutions, resolutions[-1]])
  )


def run_point_mass(cfg, workdir: pathlib.Path) -> dict:
  rows = []
  data_spectrum = None
  for name, (zeta, c) in point_mass_runs(cfg).items():
    s = runs.train_run(c, workdir, name)
    records = runs.metrics(workdir, name)
    norms = np.array([m["grad_norm"] for m in records if "grad_norm" in m])
    norm_max = np.array([m.get("grad_norm_max", np.nan) for m in records if "grad_norm" in m])
    spec, model = runs.ema_model(c, workdir, name)
    arrays = runs.test_arrays(c, cfg.probe_images)
    x = jnp.asarray(arrays["image"])
    if data_spectrum is None:
      data_spectrum = evaluation.haar_spectrum(arrays["target"]).tolist()
    resolutions = [r for r, _ in spec.dec_pairs]
    key = jax.random.key(c.seed + 20)
    post = runs.posterior_pass(model, x, key)
    rms_post = np.asarray(evaluation.state_rms(post[:-1]), np.float64)
    per_t = {}
    for t in cfg.temperatures:
      pri, out = runs.prior_states(model, cfg.num_prior_samples, t, key)
      samples = model.sample_likelihood(jax.random.fold_in(key, 1), out)
      rms_pri = np.asarray(evaluation.state_rms(pri[:-1]), np.float64)
      per_t[str(t)] = dict(
        rms=rms_pri.tolist(),
        spread=np.asarray(evaluation.state_spread(pri[:-1]), np.float64).tolist(),
        exposure_ratio=runs.none_for_nan(evaluation.exposure_ratio(rms_pri, rms_post)),
        rel_increment=_increments(pri, resolutions),
        nonfinite_fraction=evaluation.nonfinite_fraction(out),
        pairwise_distance=evaluation.pairwise_distance(samples[:64]),
        haar_spectrum=evaluation.haar_spectrum(samples).tolist(),
      )
    rows.append(
      dict(
        run=name,
        zeta=zeta,
        seed=c.seed,
        bits_per_dim=s["eval"]["bits_per_dim"],
        kl_per_block=s["eval"]["kl_per_block"],
        skipped=s["skipped_updates"],
        grad_norm_median=float(np.median(norms)) if len(norms) else None,
        grad_norm_max=float(np.nanmax(norm_max)) if np.isfinite(norm_max).any() else None,
        rel_increment_posterior=_increments(post, resolutions),
        prior=per_t,
      )
    )
  summary = []
  for zeta in sorted({r["zeta"] for r in rows}):
    rs = [r for r in rows if r["zeta"] == zeta]
    m, sd = runs.mean_sd([r["bits_per_dim"] for r in rs])
    summary.append(
      dict(
        zeta=zeta,
        bits_per_dim_mean=m,
        bits_per_dim_sd=sd,
        skipped_mean=float(np.mean([r["skipped"] for r in rs])),
        exposure_ratio_t1_mean=float(np.mean([float(np.mean(_finite(r))) for r in rs])),
        exposure_ratio_t1_max=float(np.max([float(np.max(_finite(r))) for r in rs])),
        first_increment_post=_first_finite([r["rel_increment_posterior"] for r in rs]),
        nonfinite_t1=float(np.mean([r["prior"]["1.0"]["nonfinite_fraction"] for r in rs])),
        seeds=len(rs),
      )
    )
  payload = dict(
    rows=rows,
    summary=summary,
    data_haar_spectrum=data_spectrum,
    temperatures=list(cfg.temperatures),
  )
  fig = plots.point_mass(rows, cfg.seeds[0], [r for r, _ in spec.dec_pairs])
  runs.write(cfg, workdir, "point_mass", payload, fig)
  return payload
