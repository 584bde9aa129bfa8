"""E4: forward-backward experiments, noise then denoise (THEORY §7.7).

Protocol: for depths L ∈ ``e4.num_levels`` and ``e4.n_rule_sets`` rule sets, noise
``e4.n_test`` sequences to σ_t ∈ ``e4.sigma_ts`` and sample the exact posterior: P(root kept) and
the leaf Hamming distance; at the benchmark depth, the reverse SDE from σ_t down to
``e3.sampler_sigma_min`` in ``e4.num_steps`` steps with the BP oracle and the E3 U-Net. Verdict:
the class transition sharpens with L.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from experiments.ghm import common as C
from experiments.ghm import plots
from mrflax import ghm as G
from mrflax.training import ghm as T


def _mean_table(exact, field, cfg) -> dict:
  """``{str(L): [mean of field over rule sets, per σ_t]}``."""
  return {
    str(depth): [
      round(float(np.mean([e[field] for e in exact if e["L"] == depth and e["sigma_t"] == s])), 4)
      for s in cfg.e4.sigma_ts
    ]
    for depth in cfg.e4.num_levels
  }


def run_e4(cfg, workdir) -> None:
  t_start = time.perf_counter()
  key = jax.random.key(cfg.seed + 40)
  n = cfg.e4.n_test
  exact = []
  for depth in cfg.e4.num_levels:
    for r in range(cfg.e4.n_rule_sets):
      g = C.rhm(cfg.data, seed=cfg.data.rule_seed + r, num_levels=depth)
      for i, sig_t in enumerate(cfg.e4.sigma_ts):
        k = jax.random.fold_in(key, 1000 * depth + 10 * r + i)
        levels, _, z = C.test_set(k, g, n, sig_t)
        post = G.root_posterior(g, z, sigma=sig_t)
        kept = float(jnp.mean(jnp.take_along_axis(post, levels[0][:, None], axis=-1)))
        xs = G.posterior_sample_levels(jax.random.fold_in(key, 7 + i), g, z, sigma=sig_t)
        exact.append(
          dict(
            L=depth,
            rule_set=r,
            sigma_t=sig_t,
            p_root_kept=kept,
            p_root_kept_sampled=float(jnp.mean(xs[0] == levels[0])),
            hamming=float(jnp.mean(xs[-1] != levels[-1])),
          )
        )
    logging.info("E4 exact L=%d done", depth)
  table = _mean_table(exact, "p_root_kept", cfg)
  hamming = _mean_table(exact, "hamming", cfg)

  # Reverse SDE from sigma_t at the benchmark depth: oracle BP and the E3 U-Net
  ghm = C.rhm(cfg.data)
  net, _ = C.e3_unet(cfg, ghm, workdir, cfg.e4.unet_dir)
  denoisers = dict(
    oracle=lambda z, s: G.leaf_posteriors(ghm, z, sigma=s), unet=T.pure_denoiser(net)
  )
  num_steps = cfg.e4.num_steps
  sde = []
  for i, sig_t in enumerate(cfg.e4.sigma_ts):
    levels, _x, z = C.test_set(jax.random.fold_in(key, 5000 + i), ghm, n, sig_t)
    post = G.root_posterior(ghm, z, sigma=sig_t)
    exact_kept = float(jnp.mean(jnp.take_along_axis(post, levels[0][:, None], axis=-1)))
    sigmas = sig_t * (cfg.e3.sampler_sigma_min / sig_t) ** (jnp.arange(num_steps + 1) / num_steps)
    for name, d in denoisers.items():
      xh = C.generate(ghm, d, jax.random.fold_in(key, 9000 + i), z, sigmas)
      p = G.parse(ghm, xh)
      kept = np.asarray(p.valid[:, -1] & (p.root == levels[0]))
      sde.append(
        dict(
          sampler=name,
          sigma_t=sig_t,
          p_root_kept=float(kept.mean()),
          p_root_kept_exact=exact_kept,
          valid=float(jnp.mean(p.valid[:, -1])),
          hamming=float(jnp.mean(xh != levels[-1])),
        )
      )
      logging.info("E4 sde %s", sde[-1])

  payload = dict(
    p_root_kept_exact=table,
    hamming_exact=hamming,
    sigma_ts=list(cfg.e4.sigma_ts),
    per_rule_set=exact,
    reverse_sde=sde,
    wall_seconds=round(time.perf_counter() - t_start, 1),
  )
  C.dump(cfg, workdir, "e4_forward_backward", payload)
  plots.e4(table, hamming, sde, cfg, workdir)
