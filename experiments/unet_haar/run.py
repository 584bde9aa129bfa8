r"""Issue 6, item 1: average pooling is the Haar projection, in a trained network (THEORY §3.3).

Usage::

  nice -n 5 python -m experiments.main --config=experiments/unet_haar/config.py:fashion \
    --workdir=/tmp/unet_haar_fashion

Trains Gaussian denoising U-Nets (:class:`mrflax.nn.UNet`) with average, max and strided-conv
downsampling, and the average-pool net retrained with detail-only, approximation-only and no skips,
``len(config.seeds)`` seeds each, then measures U1 (Haar band energies of skips and coarse path,
downsampler leak, output spectrum) and U2 (test-time skip replacement, retraining) on a fixed test
subset with fixed noise. Writes ``<name>.json`` and ``<name>_{u1,u2,examples}.png`` into
``config.results_dir`` (or the workdir when that is empty) and ``config.json`` into the workdir. The
config is converted to keyword arguments here; the library never sees a ConfigDict.

Every training goes through :func:`mrflax.training.fit` in ``<workdir>/train/<group>/seed<s>``
(checkpoints, ``metrics.jsonl``): a run started again with the same workdir skips the trainings
that finished and resumes the one that was interrupted. The measurements are in
:mod:`experiments.unet_haar.analysis`, the rules in :mod:`experiments.unet_haar.verdicts`, the
figures in :mod:`experiments.unet_haar.plots`.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time

import flax
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from experiments.unet_haar import analysis, plots
from experiments.unet_haar.verdicts import verdicts
from mrflax import data as mrdata
from mrflax.diffusion import log_uniform_sigmas
from mrflax.nn import UNet, count_params
from mrflax.training import LoopConfig, StepConfig, fit

# ---------------------------------------------------------------------------------------------
# Data and noise
# ---------------------------------------------------------------------------------------------


def load_images(data) -> tuple[np.ndarray, np.ndarray]:
  """``(train, test)`` float32 images ``[n, h, w, 1]`` scaled to [-1, 1] (padding is black).

  Fashion-MNIST from the IDX files in ``data.source`` (:func:`mrflax.data.idx_arrays`, file
  order); the digits with :func:`mrflax.data.digits_arrays`' split (that of ``import_digits``).
  """
  if data.name == "fashion_mnist":
    splits = mrdata.idx_arrays(data.source, name="fashion_mnist")
  elif data.name == "digits":
    splits = mrdata.digits_arrays(seed=data.split_seed)
  else:
    raise ValueError(f"data.name must be 'fashion_mnist' or 'digits', got {data.name!r}")

  def prep(x: np.ndarray) -> np.ndarray:
    if data.pad_to:
      x = np.stack([mrdata.pad_to(im, data.pad_to) for im in x])
    return (x.astype(np.float32) / 127.5 - 1.0).astype(np.float32)

  return prep(splits["train"][0]), prep(splits["test"][0])


def add_noise(key, x, *, sigma_min: float, sigma_max: float):
  """``(x + σ ε, σ)``, σ log-uniform per example (:func:`mrflax.diffusion.log_uniform_sigmas`)."""
  k_sigma, k_eps = jax.random.split(key)
  sigma = log_uniform_sigmas(k_sigma, x.shape[0], sigma_min, sigma_max)
  return x + sigma[:, None, None, None] * jax.random.normal(k_eps, x.shape, x.dtype), sigma


class Batches:
  """Minibatches ``{"x": ...}`` of ``x`` in the order of ``np.random.default_rng(seed)``.

  A fresh permutation is drawn whenever the next batch would run past the end (the rest of the
  epoch is dropped). ``get_state`` / ``set_state`` (the number of batches drawn) let ``fit``
  checkpoint the position, so a resumed training sees the same batches.
  """

  def __init__(self, x: np.ndarray, batch_size: int, seed: int):
    self.x, self.batch_size, self.seed = x, batch_size, seed
    self.set_state({"drawn": 0})

  def get_state(self) -> dict:
    return {"drawn": self.drawn}

  def set_state(self, state: dict) -> None:
    self._rng = np.random.default_rng(self.seed)
    self._order, self._pos, self.drawn = self._rng.permutation(len(self.x)), 0, 0
    for _ in range(int(state["drawn"])):
      self._indices()

  def _indices(self) -> np.ndarray:
    if self._pos + self.batch_size > len(self.x):
      self._order, self._pos = self._rng.permutation(len(self.x)), 0
    idx = self._order[self._pos : self._pos + self.batch_size]
    self._pos += self.batch_size
    self.drawn += 1
    return idx

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    return {"x": self.x[self._indices()]}


# ---------------------------------------------------------------------------------------------
# Models and training
# ---------------------------------------------------------------------------------------------


def groups(cfg) -> list[tuple[str, dict, tuple[str, ...] | None]]:
  """``(label, UNet keyword overrides, per-level skip modes)`` of every trained net.

  Full-skip nets first (label = pooling). U2 (b) retrainings follow: ``retrain.levels`` entry
  ``"all"`` replaces the skip at every level at construction (label ``avg/<mode>``; ``none`` is
  ``skips=False``); ``"finest"`` replaces it at the finest level j = J only, through the per-call
  ``skip_mode`` used in training and evaluation alike (label ``avg/j<J>:<mode>``; ``none`` feeds
  zeros there).
  """
  out = [(p, dict(pooling=p), None) for p in cfg.poolings]
  n_levels = len(cfg.model.widths) - 1
  pool = cfg.retrain.pooling
  for where in cfg.retrain.levels:
    for mode in cfg.retrain.skip_modes:
      if where == "all":
        arch = dict(pooling=pool) | (dict(skips=False) if mode == "none" else dict(skip_mode=mode))
        out.append((f"{pool}/{mode}", arch, None))
      elif where == "finest":
        modes = (mode,) + ("full",) * (n_levels - 1)
        out.append((f"{pool}/j{n_levels}:{mode}", dict(pooling=pool), modes))
      else:
        raise ValueError(f"retrain.levels entries must be 'all' or 'finest', got {where!r}")
  return out


def make_model(cfg, arch: dict, rngs: nnx.Rngs) -> UNet:
  return UNet(
    in_features=1,
    out_features=1,
    widths=tuple(cfg.model.widths),
    noise_conditioning=cfg.model.noise_conditioning,
    rngs=rngs,
    **arch,
  )


def step_config(cfg) -> StepConfig:
  """Adam (no weight decay), linear warm-up then cosine to 0, clipping; no skipping, no EMA."""
  o, t = cfg.optim, cfg.train
  return StepConfig(
    optimizer="adamw",
    lr=o.lr,
    warmup_steps=o.warmup_steps,
    decay_steps=max(t.steps - o.warmup_steps, 1),
    b1=o.b1,
    b2=o.b2,
    weight_decay=0.0,
    grad_clip=o.grad_clip,
    skip_threshold=None,
    ema_decay=None,
  )


def loop_config(cfg, seed: int) -> LoopConfig:
  """Logs in windows that tile the last 10% of the steps (their mean loss goes into the JSON);
  checkpoints at a multiple of the window (``train.checkpoint_every``, rounded up)."""
  t = cfg.train
  window = math.gcd(t.steps, max(t.steps // 10, 1))
  every = min(window * math.ceil((t.checkpoint_every or t.steps) / window), t.steps)
  return LoopConfig(
    steps=t.steps,
    batch_size=t.batch_size,
    log_every=window,
    checkpoint_every=every,
    keep_checkpoints=2,
    seed=seed,
  )


def last_losses_mean(rundir: str, after: int) -> float:
  """Mean of the logged window losses after step ``after`` (last record of each step)."""
  by_step = {}
  with open(os.path.join(rundir, "metrics.jsonl")) as f:
    for line in f:
      r = json.loads(line)
      if "loss" in r and r["step"] > after:
        by_step[r["step"]] = r["loss"]
  return float(np.mean(list(by_step.values())))


def train_group(cfg, label: str, arch: dict, train_x: np.ndarray, workdir: str, *, modes=None):
  """Trains one architecture for every seed with :func:`fit`; returns one dict per seed.

  ``modes`` (optional) overrides the skip variant per level in every training call. Seed ``s``
  fixes the initialisation, the data order and the training noise; the data order and noise are
  therefore the same for every architecture at a given seed (paired comparisons).
  """
  cond, t = cfg.model.noise_conditioning, cfg.train

  def loss_fn(model, batch, key):
    x = batch["x"]
    z, sigma = add_noise(key, x, sigma_min=t.sigma_min, sigma_max=t.sigma_max)
    y = model(z, sigma if cond else None, skip_mode=modes)
    return jnp.mean(jnp.square(y - x)), {}

  run_config = dict(
    label=label,
    arch=arch,
    modes=modes,
    model=cfg.model.to_dict(),
    optim=cfg.optim.to_dict(),
    train=cfg.train.to_dict(),
    data=cfg.data.to_dict(),
  )
  runs = []
  for seed in cfg.seeds:
    rundir = os.path.join(
      workdir, "train", label.replace("/", "_").replace(":", "-"), f"seed{seed}"
    )
    t0 = time.perf_counter()
    result = fit(
      model_fn=functools.partial(make_model, cfg, arch),
      loss_fn=loss_fn,
      step_config=step_config(cfg),
      loop=loop_config(cfg, seed),
      train_iter=Batches(train_x, t.batch_size, seed),
      workdir=rundir,
      config=json.loads(json.dumps(run_config | dict(seed=seed))),
    )
    state = result.state
    runs.append(
      dict(
        seed=seed,
        graphdef=result.trainer.graphdef,
        params=state.params,
        rest=state.rest,
        n_params=count_params(state.params),
        train_loss_last10pct=last_losses_mean(rundir, t.steps - max(t.steps // 10, 1)),
        compile_s=round(result.compile_s, 1),
        train_seconds=round(time.perf_counter() - t0, 1),
      )
    )
  return runs


# ---------------------------------------------------------------------------------------------
# The experiment
# ---------------------------------------------------------------------------------------------


def run(cfg, workdir: str) -> dict:
  """Trains, evaluates, writes ``<name>.json`` and the figures; returns the JSON payload."""
  t_start = time.perf_counter()
  out_dir = cfg.results_dir or workdir
  os.makedirs(out_dir, exist_ok=True)
  train_x, test_all = load_images(cfg.data)
  n_test = min(cfg.eval.n_test, len(test_all))
  x_test = test_all[:n_test]
  z_test, sigma_test = add_noise(
    jax.random.key(cfg.eval.seed),
    jnp.asarray(x_test),
    sigma_min=cfg.train.sigma_min,
    sigma_max=cfg.train.sigma_max,
  )
  test = (x_test, np.asarray(z_test), np.asarray(sigma_test))
  lo, hi = math.log(cfg.train.sigma_min), math.log(cfg.train.sigma_max)
  sigma_edges = [math.exp(lo + (hi - lo) / 3), math.exp(lo + 2 * (hi - lo) / 3)]
  order = np.argsort(np.abs(test[2] - cfg.eval.example_sigma))
  example_idx = np.sort(order[: cfg.eval.n_examples])
  side = x_test.shape[1]
  n_levels = len(cfg.model.widths) - 1
  spectrum_levels = analysis.dyadic_levels(side)
  level_names = [f"j={n_levels - i} ({side >> i}²)" for i in range(n_levels)]
  band_names = [f"V ({side >> spectrum_levels}²)"] + [
    f"W→{side >> (spectrum_levels - k - 1)}²" for k in range(spectrum_levels)
  ]
  logging.info(
    "data %s: train %s, test %s; %d U-Net levels",
    cfg.data.name,
    train_x.shape,
    x_test.shape,
    n_levels,
  )

  summary, per_seed_all, timing, examples, n_params = {}, {}, {}, {}, {}
  for label, arch, modes in groups(cfg):
    t0 = time.perf_counter()
    runs = train_group(cfg, label, arch, train_x, workdir, modes=modes)
    t_train = time.perf_counter() - t0
    retrained = "/" in label
    variants = (
      {"full": modes} if retrained else analysis.skip_variants(n_levels, bool(cfg.eval.per_level))
    )
    per_seed = []
    for r in runs:
      losses, feats, ex = analysis.evaluate_net(
        r["graphdef"],
        r["params"],
        r["rest"],
        test,
        cond=cfg.model.noise_conditioning,
        pooling=arch["pooling"],
        spectrum_levels=spectrum_levels,
        variants=variants,
        n_features=cfg.eval.n_features,
        bs=cfg.eval.batch_size,
        example_idx=example_idx,
      )
      s = analysis.summarise_run(losses, feats, test[2], sigma_edges)
      s["train_loss_last10pct"] = r["train_loss_last10pct"]
      per_seed.append(s)
      if r["seed"] == cfg.seeds[0]:
        examples[label] = ex
    summary[label] = analysis.aggregate(per_seed)
    per_seed_all[label] = [
      dict(seed=r["seed"], train_seconds=r["train_seconds"], compile_s=r["compile_s"]) for r in runs
    ]
    n_params[label] = runs[0]["n_params"]
    timing[label] = dict(train_s=round(t_train, 1), total_s=round(time.perf_counter() - t0, 1))
    logging.info(
      "%s: test MSE %.5f ± %.5f; skip W %s; leak %s (%.0f s)",
      label,
      summary[label]["loss"]["full"]["mean"],
      summary[label]["loss"]["full"]["sd"],
      np.round(summary[label]["skip_w"]["mean"], 4),
      np.round(summary[label]["leak"]["mean"], 4),
      timing[label]["total_s"],
    )

  pools = list(cfg.poolings)
  retrained = [cfg.retrain.pooling] if cfg.retrain.pooling in summary else []
  retrained += [g for g, _, _ in groups(cfg) if "/" in g]
  payload = dict(
    name=cfg.name,
    data=dict(
      name=cfg.data.name,
      train=int(train_x.shape[0]),
      test=n_test,
      u1_images=min(cfg.eval.n_features, n_test),
      side=side,
      sigma_tercile_edges=sigma_edges,
    ),
    levels=[dict(j=n_levels - i, side=side >> i, index=i) for i in range(n_levels)],
    level_names=level_names,
    band_names=band_names,
    groups={g: dict(a, modes=m) if m else a for g, a, m in groups(cfg)},
    n_params=n_params,
    summary=summary,
    verdicts=verdicts(summary, cfg),
    runs=per_seed_all,
    timing=timing,
    wall_seconds=round(time.perf_counter() - t_start, 1),
    config=json.loads(cfg.to_json()),
    backend=jax.default_backend(),
    versions=dict(jax=jax.__version__, flax=flax.__version__),
  )
  for d in {out_dir, workdir}:
    with open(os.path.join(d, f"{cfg.name}.json"), "w") as f:
      json.dump(payload, f, indent=1)
  logging.info("wrote %s", os.path.join(out_dir, f"{cfg.name}.json"))
  plots.plot_u1(summary, pools, level_names, band_names, out_dir, cfg.name)
  plots.plot_u2(summary, pools, retrained, out_dir, cfg.name)
  plots.plot_examples(examples, pools, test, example_idx, out_dir, cfg.name)
  return payload


def train(cfg, workdir: str) -> None:
  """Runs the study; writes config.json, its JSON and figures."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(cfg.to_json(indent=1))
  logging.info("backend %s, devices %s", jax.default_backend(), jax.devices())
  run(cfg, workdir)


#: The modes ``python -m experiments.main --mode=...`` dispatches to.
MODES = {"train": train}
