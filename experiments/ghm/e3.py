"""E3: reverse VE diffusion sampling with the BP oracle and a U-Net (THEORY §7.5, §7.7).

Protocol: the U-Net trained on σ ∈ [``e3.sigma_min``, ``e3.sigma_max``]; ``e3.n_samples``
sequences from :math:`z_0 \\sim N(0, \\sigma_{\\max}^2)` with K ∈ ``e3.num_steps`` reverse steps;
validity per parse level, root TV, distinct fraction. ``e3_ntrain``: U-Nets trained on fixed sets,
plus copy fractions. Verdict: the oracle is 100 % valid; the U-Net's validity decays with level.
"""

from __future__ import annotations

import time

import jax
import numpy as np
from absl import logging

from experiments.ghm import common as C
from experiments.ghm import plots
from mrflax import diffusion as D
from mrflax import ghm as G
from mrflax.training import ghm as T


def _grid(cfg, num_steps):
  return D.ve_sigma_grid(
    num_steps=num_steps, sigma_max=cfg.e3.sampler_sigma_max, sigma_min=cfg.e3.sampler_sigma_min
  )


def run_e3(cfg, workdir) -> None:
  t_start = time.perf_counter()
  ghm = C.rhm(cfg.data)
  net, train_s = C.e3_unet(cfg, ghm, workdir)
  denoisers = dict(
    oracle=lambda z, s: G.leaf_posteriors(ghm, z, sigma=s), unet=T.pure_denoiser(net)
  )
  key = jax.random.key(cfg.seed + 30)
  n = cfg.e3.n_samples
  rows = []
  for num_steps in cfg.e3.num_steps:
    sigmas = _grid(cfg, num_steps)
    shape = (n, *ghm.leaf_shape, ghm.v)
    z0 = sigmas[0] * jax.random.normal(jax.random.fold_in(key, num_steps), shape)
    for name, d in denoisers.items():
      t0 = time.perf_counter()
      x = C.generate(ghm, d, jax.random.fold_in(key, num_steps + 1), z0, sigmas)
      row = dict(
        sampler=name,
        K=num_steps,
        seconds=round(time.perf_counter() - t0, 1),
        **C.sample_metrics(ghm, x),
      )
      rows.append(row)
      logging.info("E3 %s", row)
  payload = dict(
    rows=rows, train_seconds=train_s, wall_seconds=round(time.perf_counter() - t_start, 1)
  )
  C.dump(cfg, workdir, "e3_diffusion", payload)
  plots.e3(rows, cfg, workdir)


def run_e3_ntrain(cfg, workdir) -> None:
  """E3 with U-Nets trained on fixed sets: validity, root TV, distinct and copy fractions."""
  t_start = time.perf_counter()
  ghm = C.rhm(cfg.data)
  key = jax.random.key(cfg.seed + 30)
  k_sets = jax.random.key(cfg.seed + 31)
  n, num_steps = cfg.e3.n_samples, cfg.e3.sweep_num_steps
  sigmas = _grid(cfg, num_steps)
  z0 = sigmas[0] * jax.random.normal(
    jax.random.fold_in(key, num_steps), (n, *ghm.leaf_shape, ghm.v)
  )
  train_sets = {
    n_train: G.sample(jax.random.fold_in(k_sets, n_train), ghm, n_train)
    for n_train in cfg.e3.n_train_sweep
  }
  runs = [("oracle", None)] + ([("online", None)] if cfg.e3.sweep_online else [])
  runs += [(f"n{k}", k) for k in cfg.e3.n_train_sweep]
  rows = []
  for name, n_train in runs:
    train_s = None
    if name == "oracle":
      d = lambda z, s: G.leaf_posteriors(ghm, z, sigma=s)
    else:
      net, _, train_s = C.train_unet(
        cfg,
        workdir,
        f"e3_ntrain_{name}",
        ghm,
        jax.random.key(cfg.seed + 3),
        sigma_min=cfg.e3.sigma_min,
        sigma_max=cfg.e3.sigma_max,
        steps=cfg.e3.sweep_steps,
        train_leaves=None if n_train is None else train_sets[n_train],
      )
      d = T.pure_denoiser(net)
    t0 = time.perf_counter()
    x = C.generate(ghm, d, jax.random.fold_in(key, num_steps + 1), z0, sigmas)
    copy_vs = {str(k): round(G.copy_fraction(x, s), 4) for k, s in train_sets.items()}
    m = C.sample_metrics(ghm, x, None if n_train is None else train_sets[n_train])
    full = np.asarray(G.parse(ghm, x).valid)[:, -1]
    own = train_sets.get(n_train)
    novel = np.ones(full.shape, bool) if own is None else ~_in_set(x, own)
    row = dict(
      sampler=name,
      n_train=n_train if n_train is not None else name,
      K=num_steps,
      train_seconds=None if train_s is None else round(train_s, 1),
      sample_seconds=round(time.perf_counter() - t0, 1),
      **m,
      valid_novel_fraction=round(float(np.mean(full & novel)), 4),
      copy_fraction_vs_sets=copy_vs,
    )
    rows.append(row)
    logging.info("E3 n_train %s", row)
  payload = dict(
    rows=rows,
    steps=cfg.e3.sweep_steps,
    support_size=G.num_clean_sequences(
      num_classes=ghm.num_classes, m=cfg.data.m, s=ghm.s, num_levels=ghm.num_levels
    ),
    wall_seconds=round(time.perf_counter() - t_start, 1),
  )
  C.dump(cfg, workdir, "e3_ntrain", payload)
  plots.e3_ntrain(rows, num_steps, cfg, workdir)


def _in_set(x, train) -> np.ndarray:
  """Per sequence of ``x``: whether it equals some sequence of ``train``."""
  seen = {tuple(r) for r in np.asarray(train).reshape(len(train), -1).tolist()}
  return np.array([tuple(r) in seen for r in np.asarray(x).reshape(len(x), -1).tolist()])
