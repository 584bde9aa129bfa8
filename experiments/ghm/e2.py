"""E2: the ConvNet classifier against the Bayes classifier (BP root posterior, THEORY §7.7).

Protocol: classifiers trained online at σ ∈ ``e2.sigmas`` (and on ``e2.n_train`` fixed sequences
at σ = ``e2.n_train_sigma``), tested on ``eval.n_test`` fresh samples; and the clean
sample-complexity sweep: clean inputs, m ∈ ``e2.clean_ms`` at depth ``e2.clean_num_levels``,
training sets of ``ratio`` times the support of the level-1 tuples. Verdict: accuracy within ~0.02
of BP's at every σ.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
from absl import logging
from flax import nnx

from experiments.ghm import common as C
from experiments.ghm import plots
from mrflax import ghm as G
from mrflax.nn import tree_nets as TN
from mrflax.training import ghm as T


def _classifier(cfg, workdir, name, ghm, key, *, sigma, steps, train=None):
  net = TN.ConvNetClassifier(
    v=ghm.v,
    num_classes=ghm.num_classes,
    s=ghm.s,
    num_levels=ghm.num_levels,
    width=cfg.model.width,
    rngs=nnx.Rngs(cfg.seed),
  )
  args = dict(
    sigma=sigma,
    steps=steps,
    batch_size=cfg.train.batch_size,
    learning_rate=cfg.optim.learning_rate,
    warmup_steps=cfg.optim.warmup_steps,
    steps_per_call=cfg.train.steps_per_call,
  )
  spec = dict(
    args, width=cfg.model.width, seed=cfg.seed, ghm=repr(ghm), rules=C.digest(ghm.kernels[-1])
  )
  spec.update(
    key=C.digest(jax.random.key_data(key)), train=C.digest(None if train is None else train[-1])
  )
  t0 = time.perf_counter()
  net, hist = T.train_classifier(
    key,
    ghm,
    net,
    workdir=C.net_dir(workdir, name, spec),
    train_leaves=None if train is None else train[-1],
    train_labels=None if train is None else train[0],
    **args,
  )
  return net, hist, time.perf_counter() - t0


def _clf_eval(net, levels, z, sigma):
  logits = C.denoise(T.pure_logits(net), z, sigma if sigma > 0 else 1.0)
  logp = jax.nn.log_softmax(logits)
  y = levels[0]
  return dict(
    acc=float(jnp.mean(jnp.argmax(logits, -1) == y)),
    ce=float(-jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=-1))),
  )


def run_e2(cfg, workdir) -> None:
  t_start = time.perf_counter()
  ghm = C.rhm(cfg.data)
  k_train, k_test, k_sets = jax.random.split(jax.random.key(cfg.seed), 3)
  n = cfg.eval.n_test
  noisy = []
  for i, sigma in enumerate(cfg.e2.sigmas):
    levels, x, z = C.test_set(jax.random.fold_in(k_test, i), ghm, n, sigma)
    stats, _ = G.bp_reference(ghm, levels[0], x, z, sigma=sigma)
    net, _, secs = _classifier(
      cfg, workdir, f"e2_sigma{sigma:g}", ghm, k_train, sigma=sigma, steps=cfg.e2.steps
    )
    row = dict(
      sigma=sigma,
      n_train="online",
      train_seconds=round(secs, 1),
      bp_acc=stats["bp_root_acc"],
      bp_ce=stats["bp_root_ce"],
      **_clf_eval(net, levels, z, sigma),
    )
    if sigma == cfg.e2.n_train_sigma:
      for n_train in cfg.e2.n_train:
        train = G.sample_levels(jax.random.fold_in(k_sets, n_train), ghm, n_train)
        fnet, _, _ = _classifier(
          cfg,
          workdir,
          f"e2_sigma{sigma:g}_n{n_train}",
          ghm,
          k_train,
          sigma=sigma,
          steps=cfg.e2.steps,
          train=train,
        )
        res = _clf_eval(fnet, levels, z, sigma)
        row[f"acc_n{n_train}"], row[f"ce_n{n_train}"] = res["acc"], res["ce"]
    noisy.append(row)
    logging.info("E2 %s", row)

  clean = []
  depth = cfg.e2.clean_num_levels
  for m in cfg.e2.clean_ms:
    g = C.rhm(cfg.data, m=m, num_levels=depth)
    support = cfg.data.num_classes * m**depth
    levels, x, _ = C.test_set(jax.random.fold_in(k_test, 77 + m), g, n, 0.0)
    for ratio in cfg.e2.clean_ratios:
      n_train = max(int(ratio * support), 1)
      train = G.sample_levels(jax.random.fold_in(k_sets, 1000 * m + n_train), g, n_train)
      net, _, secs = _classifier(
        cfg,
        workdir,
        f"e2_clean_m{m}_n{n_train}",
        g,
        k_train,
        sigma=0.0,
        steps=cfg.e2.clean_steps,
        train=train,
      )
      res = _clf_eval(net, levels, x, 0.0)
      clean.append(
        dict(
          m=m,
          L=depth,
          n_train=n_train,
          ratio=ratio,
          test_error=1 - res["acc"],
          ce=res["ce"],
          train_seconds=round(secs, 1),
        )
      )
      logging.info("E2 clean %s", clean[-1])

  payload = dict(noisy=noisy, clean=clean, wall_seconds=round(time.perf_counter() - t_start, 1))
  C.dump(cfg, workdir, "e2_classification", payload)
  plots.e2(noisy, clean, cfg, workdir)
