"""Shared pieces of the GHM experiments: config -> model, test sets, training, sampling, output.

The config is converted to keyword arguments here; the library never sees a ConfigDict. Every
trained network lives in its own checkpoint directory ``<workdir>/nets/<name>-<hash>`` (the hash
is of everything that determines its training), written by :func:`mrflax.training.fit`: a run
started again finds its finished networks there and loads them instead of training again, and an
interrupted training resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from mrflax import diffusion as D
from mrflax import ghm as G
from mrflax.nn import count_params
from mrflax.nn import tree_nets as TN
from mrflax.training import ghm as T

# compiled once (the denoiser is a static argument: one compilation per network and grid size)
reverse_ve = jax.jit(D.reverse_ve, static_argnums=1)


def rhm(data, *, seed=None, num_levels=None, m=None) -> G.GHM:
  """The RHM of ``config.data`` (optionally another rule seed, depth or m)."""
  return G.random_hierarchy_model(
    jax.random.key(data.rule_seed if seed is None else seed),
    v=data.v,
    num_classes=data.num_classes,
    m=data.m if m is None else m,
    s=data.s,
    num_levels=data.num_levels if num_levels is None else num_levels,
  )


def test_set(key, ghm, n, sigma):
  """``(levels, one-hot leaves X, Z = X + sigma G)`` of ``n`` exact samples."""
  k1, k2 = jax.random.split(key)
  levels = G.sample_levels(k1, ghm, n)
  x = G.one_hot(levels[-1], ghm.v)
  return levels, x, G.add_noise(k2, x, sigma=sigma)


def e1_tests(cfg, ghm, k_test) -> list:
  """The E1 test sets, one per σ of ``cfg.eval.sigmas``: ``(sigma, x, z, D*, BP stats)``."""
  tests = []
  for i, sigma in enumerate(cfg.eval.sigmas):
    levels, x, z = test_set(jax.random.fold_in(k_test, i), ghm, cfg.eval.n_test, sigma)
    stats, d_star = G.bp_reference(ghm, levels[0], x, z, sigma=sigma)
    tests.append((sigma, x, z, d_star, stats))
  return tests


def gap_frac(stats, mse, base: str = "pos") -> float:
  """Fraction of the local-minus-BP gap a denoiser of MSE ``mse`` closes."""
  local = stats[f"mse_local_{base}"]
  return (local - mse) / (local - stats["mmse_bp"])


def denoise(fn, z, sigma):
  """``fn(z, sigma)`` in chunks, at one noise level for every example."""
  return T.predict(fn, z, jnp.full((z.shape[0],), sigma))


def net_dir(workdir: str, name: str, spec: dict) -> str:
  """``<workdir>/nets/<name>-<hash of spec>``: one checkpoint directory per distinct training."""
  h = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:10]
  return os.path.join(workdir, "nets", f"{name}-{h}")


def digest(array) -> str | None:
  """A short SHA-256 of an array's bytes (``None`` for ``None``): names a training's inputs."""
  if array is None:
    return None
  return hashlib.sha256(np.asarray(jax.device_get(array)).tobytes()).hexdigest()[:16]


def make_unet(cfg, ghm, **overrides) -> TN.BPUNet:
  kw = dict(width=cfg.model.width) | overrides
  return TN.BPUNet(v=ghm.v, s=ghm.s, num_levels=ghm.num_levels, rngs=nnx.Rngs(cfg.seed), **kw)


def train_args(cfg, **kw) -> dict:
  """The keyword arguments of :func:`mrflax.training.ghm.train_denoiser` from the config."""
  return (
    dict(
      steps=cfg.train.steps,
      batch_size=cfg.train.batch_size,
      learning_rate=cfg.optim.learning_rate,
      warmup_steps=cfg.optim.warmup_steps,
      sigma_min=cfg.train.sigma_min,
      sigma_max=cfg.train.sigma_max,
      steps_per_call=cfg.train.steps_per_call,
    )
    | kw
  )


def _spec(args, net, ghm, key, train) -> dict:
  """Everything that determines a training (hashed into its checkpoint directory's name)."""
  return dict(
    args,
    net=net.__class__.__name__,
    params=count_params(net),
    init=digest(jax.tree.leaves(nnx.state(net, nnx.Param))[0]),
    ghm=repr(ghm),
    rules=digest(ghm.kernels[-1]),
    key=digest(jax.random.key_data(key)),
    train=digest(train),
  )


def train_denoiser(cfg, workdir, name, ghm, key, net, *, train_leaves=None, **kw):
  """Trains (or loads) ``net`` in its own directory under ``workdir``; ``(net, History, s)``."""
  args = train_args(cfg, **kw)
  directory = net_dir(workdir, name, _spec(args, net, ghm, key, train_leaves))
  t0 = time.perf_counter()
  net, hist = T.train_denoiser(key, ghm, net, workdir=directory, train_leaves=train_leaves, **args)
  return net, hist, time.perf_counter() - t0


def train_unet(cfg, workdir, name, ghm, key, *, train_leaves=None, overrides=None, **kw):
  """The E1/E3 U-Net (``config.model`` plus BPUNet ``overrides``), trained or loaded."""
  net = make_unet(cfg, ghm, **(overrides or {}))
  return train_denoiser(cfg, workdir, name, ghm, key, net, train_leaves=train_leaves, **kw)


def e3_unet(cfg, ghm, workdir, unet_dir: str = ""):
  """The E3 U-Net (σ ∈ [e3.sigma_min, e3.sigma_max], e3.steps steps) and its training seconds.

  Loaded from ``unet_dir`` if it was trained there (the checkpoint directory of E3's workdir),
  else trained in ``workdir`` (or loaded, when an earlier E3 or E4 run left it there).
  """
  kw = dict(steps=cfg.e3.steps, sigma_min=cfg.e3.sigma_min, sigma_max=cfg.e3.sigma_max)
  key = jax.random.key(cfg.seed + 3)
  spec = _spec(train_args(cfg, **kw), make_unet(cfg, ghm), ghm, key, None)
  where = workdir
  if unet_dir and os.path.isdir(os.path.join(net_dir(unet_dir, "e3_unet", spec), "checkpoints")):
    where = unet_dir
  net, _, secs = train_unet(cfg, where, "e3_unet", ghm, key, **kw)
  logging.info("E3 U-Net in %s (%.1f s)", net_dir(where, "e3_unet", spec), secs)
  return net, secs


def generate(ghm, denoiser, key, z, sigmas):
  """Reverse VE from ``z`` at ``sigmas[0]``, read out at ``sigmas[-1]``: integer leaves."""
  zk = reverse_ve(key, denoiser, z, sigmas)
  return G.decode_leaves(denoiser, zk, float(sigmas[-1]))


def sample_metrics(ghm, x, train=None) -> dict:
  """Validity per level, root TV and distinct fraction (and copy fraction vs ``train``), rounded."""
  out = dict(
    validity_per_level=G.validity_per_level(ghm, x).round(4).tolist(),
    root_tv=round(G.root_tv(ghm, x), 4),
    distinct_fraction=round(G.distinct_fraction(x), 4),
  )
  if train is not None:
    out["copy_fraction"] = round(G.copy_fraction(x, train), 4)
  return out


def history(hist: T.History, every: int = 5) -> dict:
  return dict(step=hist.step[::every], loss=[round(x, 5) for x in hist.loss[::every]])


def out_dir(cfg, workdir) -> str:
  out = cfg.results_dir or workdir
  os.makedirs(out, exist_ok=True)
  return out


def dump(cfg, workdir, name, payload) -> None:
  """Writes ``<name>.json`` (payload, config, backend) to the results directory and workdir."""
  out = out_dir(cfg, workdir)
  payload = dict(payload, config=json.loads(cfg.to_json()), backend=jax.default_backend())
  for d in {out, workdir}:
    with open(os.path.join(d, f"{name}.json"), "w") as f:
      json.dump(payload, f, indent=1)
  logging.info("wrote %s", os.path.join(out, f"{name}.json"))
