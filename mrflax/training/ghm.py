r"""The GHM networks' losses and data on top of :func:`~mrflax.training.fit` (THEORY §7.4, §7.7).

Data come from a :class:`~mrflax.ghm.GHM`: either **online** (fresh exact samples at every step) or
a **fixed training set** of ``P`` clean sequences (sampled with replacement each step); the noise is
always fresh. Batches are drawn on device inside the compiled step (``fit``'s ``sample_batch``),
from keys of the train state, so checkpoints, resume, update skipping and logging are ``fit``'s.
Optimiser (:func:`step_config`): Adam with a linear warm-up and cosine decay.

Losses (both minimised by the Bayes denoiser / classifier):

.. math::
  \mathcal L_{\mathrm{mse}} = \frac{1}{n_{\mathrm{leaf}}} E \sum_j \lVert f_j(Z) - X_j \rVert^2,
  \qquad \mathcal L_{\mathrm{ce}} = -E \log f_{y}(Z).
"""

from __future__ import annotations

import functools
import json
import pathlib
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float, Int

from mrflax import ghm as G
from mrflax.diffusion import log_uniform_sigmas
from mrflax.ghm.layout import check_leaves
from mrflax.training.loop import LoopConfig, fit
from mrflax.training.steps import StepConfig


class History(NamedTuple):
  """Training log, one entry per logged chunk: ``step`` (after it), mean ``loss`` over it, and
  ``seconds`` since the first record (read back from ``<workdir>/metrics.jsonl``)."""

  step: list[int]
  loss: list[float]
  seconds: list[float]


def read_history(workdir: str) -> History:
  """The :class:`History` of the run in ``workdir`` (the last record of every step).

  Examples:
    >>> import tempfile
    >>> read_history(tempfile.mkdtemp())
    History(step=[], loss=[], seconds=[])
  """
  path = pathlib.Path(workdir) / "metrics.jsonl"
  records: dict[int, dict] = {}
  if path.exists():
    for line in path.read_text().splitlines():
      r = json.loads(line)
      if "loss" in r:
        records[int(r["step"])] = r
  steps = sorted(records)
  t0 = records[steps[0]]["time"] if steps else 0.0
  return History(
    steps, [float(records[k]["loss"]) for k in steps], [records[k]["time"] - t0 for k in steps]
  )


def step_config(
  *, learning_rate: float, steps: int, warmup_steps: int = 0, weight_decay: float = 0.0
) -> StepConfig:
  r"""The GHM networks' optimisation: Adam(W) (:math:`\beta = (0.9, 0.999)`, :math:`\epsilon =
  10^{-8}`), linear warm-up then cosine decay to 0 at ``steps``, no clipping, no EMA; only
  non-finite updates are skipped.

  .. math::
    \eta_t = \eta \min(1, t / t_w), \ t < t_w; \qquad
    \eta_t = \tfrac{\eta}{2}\big(1 + \cos(\pi (t - t_w)/(T - t_w))\big), \ t \ge t_w.

  Examples:
    >>> cfg = step_config(learning_rate=1e-3, steps=10, warmup_steps=2)
    >>> [round(float(cfg.learning_rate(jnp.array(t))), 6) for t in (0, 1, 2, 6, 10)]
    [0.0, 0.0005, 0.001, 0.0005, 0.0]
  """
  return StepConfig(
    optimizer="adamw",
    lr=learning_rate,
    warmup_steps=warmup_steps,
    decay_steps=max(steps, warmup_steps + 1) - warmup_steps,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    weight_decay=weight_decay,
    grad_clip=None,
    skip_threshold=None,
    ema_decay=None,
  )


def _batch_sampler(
  ghm: G.GHM, batch_size: int, train: tuple[Array, Array] | None
) -> Callable[[Array], dict[str, Array]]:
  """``key -> {"leaves", "labels"}``: fresh exact samples, or a uniform draw from ``train``."""

  def sample_batch(key):
    if train is None:
      levels = G.sample_levels(key, ghm, batch_size)
      return {"leaves": levels[-1], "labels": levels[0]}
    idx = jax.random.randint(key, (batch_size,), 0, train[0].shape[0])
    return {"leaves": train[0][idx], "labels": train[1][idx]}

  return sample_batch


def _fit(
  key: Array,
  model: nnx.Module,
  loss_fn: Callable[[nnx.Module, dict[str, Array], Array], Array],
  sample_batch: Callable[[Array], dict[str, Array]],
  *,
  workdir: str,
  steps: int,
  batch_size: int,
  learning_rate: float,
  warmup_steps: int,
  steps_per_call: int,
  checkpoint_every: int | None,
  config: dict,
  on_log: Callable[[int, dict[str, float]], None] | None,
) -> tuple[nnx.Module, History]:
  """Runs :func:`~mrflax.training.fit` with batches drawn on device; returns the trained model."""
  if steps < 1 or steps_per_call < 1:
    raise ValueError(f"steps and steps_per_call must be >= 1, got {steps}, {steps_per_call}")
  loop = LoopConfig(
    steps=steps,
    batch_size=batch_size,
    steps_per_call=steps_per_call,
    log_every=steps_per_call,
    checkpoint_every=checkpoint_every or steps,
    keep_checkpoints=1,
    num_devices=1,
  )
  result = fit(
    model_fn=lambda rngs: model,
    loss_fn=lambda m, batch, k: (loss_fn(m, batch, k), {}),
    step_config=step_config(learning_rate=learning_rate, steps=steps, warmup_steps=warmup_steps),
    loop=loop,
    sample_batch=sample_batch,
    key=key,
    workdir=workdir,
    config=config,
    on_log=on_log,
  )
  return result.trainer.model(result.state), read_history(workdir)


def train_denoiser(
  key: Array,
  ghm: G.GHM,
  model: nnx.Module,
  *,
  workdir: str,
  steps: int,
  batch_size: int = 256,
  learning_rate: float = 2e-3,
  warmup_steps: int = 100,
  sigma_min: float = 0.2,
  sigma_max: float = 3.0,
  train_leaves: Int[Array, "P ..."] | None = None,
  loss: str = "mse",
  steps_per_call: int = 50,
  checkpoint_every: int | None = None,
  on_log: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[nnx.Module, History]:
  r"""Trains a :math:`\sigma`-conditioned denoiser ``model(z, sigma) -> logits`` on VE noise.

  Each step draws clean leaves on device (online from ``ghm``, or from ``train_leaves``), noise
  levels :math:`\log\sigma \sim U[\log\sigma_{\min}, \log\sigma_{\max}]` and
  :math:`Z = X + \sigma G`, and minimises the MSE to the one-hot target
  :math:`\frac{1}{n_{\mathrm{leaf}}}\sum_j \lVert \mathrm{softmax}(\mathrm{logits}_j) - X_j
  \rVert^2` (or the cross-entropy with ``loss="ce"``). The driver is
  :func:`~mrflax.training.fit`: checkpoints in ``workdir`` (a finished run found there is
  loaded, an interrupted one resumed bit for bit), metrics in ``workdir/metrics.jsonl``.

  Args:
    key: PRNG key of the run (data, noise).
    ghm: the generating model (also fixes ``v`` and the leaf layout).
    model: an NNX module such as :class:`~mrflax.nn.tree_nets.BPUNet` (its initial weights).
    workdir: the run directory (one per trained network).
    steps: optimiser steps (a multiple of ``steps_per_call``).
    batch_size: sequences per step.
    learning_rate: peak Adam learning rate (cosine decay to 0).
    warmup_steps: linear warm-up steps.
    sigma_min: smallest training noise level.
    sigma_max: largest training noise level.
    train_leaves: optional fixed training set ``[P, *leaf_shape]``; ``None`` = online.
    loss: ``"mse"`` or ``"ce"``.
    steps_per_call: optimiser steps per compiled call (``lax.scan``) and per logged record.
    checkpoint_every: steps between checkpoints (default: one at the end).
    on_log: ``fit``'s callback with every logged record ``(step, metrics)``.

  Returns:
    ``(trained model, History)``.

  Examples:
    >>> import tempfile
    >>> from mrflax.nn import tree_nets
    >>> g = G.random_hierarchy_model(jax.random.key(0), v=2, num_classes=2, m=1, s=2,
    ...                              num_levels=1)
    >>> net = tree_nets.BPUNet(v=2, s=2, num_levels=1, width=4, rngs=nnx.Rngs(0))
    >>> net, hist = train_denoiser(jax.random.key(1), g, net, workdir=tempfile.mkdtemp(),
    ...                            steps=4, batch_size=8, steps_per_call=2)  # doctest: +ELLIPSIS
    [fit] ...
    >>> hist.step
    [2, 4]
  """
  if loss not in ("mse", "ce"):
    raise ValueError(f"loss must be 'mse' or 'ce', got {loss!r}")
  if not 0 < sigma_min <= sigma_max:
    raise ValueError(f"need 0 < sigma_min <= sigma_max, got {sigma_min}, {sigma_max}")
  train = _as_train_set(ghm, train_leaves, None)
  v = ghm.v

  def batch_loss(m, batch, k):
    k_sig, k_noise = jax.random.split(k)
    x = G.one_hot(batch["leaves"], v)
    sigma = log_uniform_sigmas(k_sig, batch_size, sigma_min, sigma_max)
    z = G.add_noise(k_noise, x, sigma=sigma)
    logits = m(z, sigma)
    if loss == "ce":
      return -jnp.mean(jnp.sum(x * jax.nn.log_softmax(logits, axis=-1), axis=-1))
    return jnp.mean(jnp.sum(jnp.square(jax.nn.softmax(logits, axis=-1) - x), axis=-1))

  config = dict(
    task="denoiser",
    ghm=repr(ghm),
    batch_size=batch_size,
    learning_rate=learning_rate,
    warmup_steps=warmup_steps,
    sigma_min=sigma_min,
    sigma_max=sigma_max,
    train_set=None if train is None else int(train[0].shape[0]),
    loss=loss,
  )
  return _fit(
    key,
    model,
    batch_loss,
    _batch_sampler(ghm, batch_size, train),
    workdir=workdir,
    steps=steps,
    batch_size=batch_size,
    learning_rate=learning_rate,
    warmup_steps=warmup_steps,
    steps_per_call=steps_per_call,
    checkpoint_every=checkpoint_every,
    config=config,
    on_log=on_log,
  )


def train_classifier(
  key: Array,
  ghm: G.GHM,
  model: nnx.Module,
  *,
  workdir: str,
  sigma: float,
  steps: int,
  batch_size: int = 256,
  learning_rate: float = 2e-3,
  warmup_steps: int = 100,
  train_leaves: Int[Array, "P ..."] | None = None,
  train_labels: Int[Array, " P"] | None = None,
  steps_per_call: int = 50,
  checkpoint_every: int | None = None,
  on_log: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[nnx.Module, History]:
  r"""Trains a classifier ``model(z, sigma) -> class logits`` with the cross-entropy
  :math:`-E \log \mathrm{softmax}(\mathrm{logits})_y` at a fixed noise level (``sigma = 0``:
  clean one-hot inputs, fed to the network as :math:`Z` with :math:`\sigma = 1` for the scale).
  Driven by :func:`~mrflax.training.fit` like :func:`train_denoiser`.

  Args:
    key: PRNG key of the run.
    ghm: the generating model.
    model: e.g. :class:`~mrflax.nn.tree_nets.ConvNetClassifier`.
    workdir: the run directory (one per trained network).
    sigma: noise level of the training (and test) data.
    steps: optimiser steps (a multiple of ``steps_per_call``).
    batch_size: sequences per step.
    learning_rate: peak learning rate.
    warmup_steps: warm-up steps.
    train_leaves: optional fixed training set ``[P, *leaf_shape]`` (online if ``None``).
    train_labels: its root classes ``[P]`` (required with ``train_leaves``).
    steps_per_call: optimiser steps per compiled call and per logged record.
    checkpoint_every: steps between checkpoints (default: one at the end).
    on_log: ``fit``'s callback with every logged record ``(step, metrics)``.

  Returns:
    ``(trained model, History)``.

  Examples:
    >>> import tempfile
    >>> from mrflax.nn import tree_nets
    >>> g = G.random_hierarchy_model(jax.random.key(0), v=2, num_classes=2, m=1, s=2,
    ...                              num_levels=1)
    >>> net = tree_nets.ConvNetClassifier(v=2, num_classes=2, s=2, num_levels=1, width=4,
    ...                                   rngs=nnx.Rngs(0))
    >>> net, hist = train_classifier(jax.random.key(1), g, net, workdir=tempfile.mkdtemp(),
    ...                              sigma=0.5, steps=2, batch_size=8, steps_per_call=2)
    [fit] ...
    >>> len(hist.loss)
    1
  """
  if sigma < 0:
    raise ValueError(f"sigma must be >= 0, got {sigma}")
  train = _as_train_set(ghm, train_leaves, train_labels, labels_required=True)
  v = ghm.v
  sig_in = sigma if sigma > 0 else 1.0

  def batch_loss(m, batch, k):
    z = G.add_noise(k, G.one_hot(batch["leaves"], v), sigma=sigma)
    logits = m(z, jnp.full((batch_size,), sig_in))
    labels = batch["labels"]
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=-1))

  config = dict(
    task="classifier",
    ghm=repr(ghm),
    sigma=sigma,
    batch_size=batch_size,
    learning_rate=learning_rate,
    warmup_steps=warmup_steps,
    train_set=None if train is None else int(train[0].shape[0]),
  )
  return _fit(
    key,
    model,
    batch_loss,
    _batch_sampler(ghm, batch_size, train),
    workdir=workdir,
    steps=steps,
    batch_size=batch_size,
    learning_rate=learning_rate,
    warmup_steps=warmup_steps,
    steps_per_call=steps_per_call,
    checkpoint_every=checkpoint_every,
    config=config,
    on_log=on_log,
  )


def _as_train_set(ghm, leaves, labels, labels_required: bool = False):
  if leaves is None:
    return None
  leaves = jnp.asarray(leaves)
  check_leaves(ghm, leaves, event_dims=0, name="train_leaves")
  if leaves.ndim != 1 + len(ghm.leaf_shape):
    raise ValueError(f"train_leaves must be [P, *{ghm.leaf_shape}], got {leaves.shape}")
  if labels is None:
    if labels_required:
      raise ValueError("train_labels (root classes) are required with train_leaves")
    labels = jnp.zeros(leaves.shape[:1], jnp.int32)
  labels = jnp.asarray(labels)
  if labels.shape != leaves.shape[:1]:
    raise ValueError(f"train_labels must have shape {leaves.shape[:1]}, got {labels.shape}")
  return leaves, labels


@functools.partial(jax.jit, static_argnums=0)
def _apply(fn, z, sigma):
  """``fn(z, sigma)``, compiled once per function and shape (the function is a static argument)."""
  return fn(z, sigma)


def predict(
  fn: Callable[[Array, Array], Array],
  z: Float[Array, "n ..."],
  sigma: Float[Array, " n"],
  *,
  batch_size: int = 1000,
) -> Float[Array, "n ..."]:
  """Applies ``fn(z, sigma)`` in chunks of ``batch_size`` (one compiled shape plus a remainder).

  Examples:
    >>> predict(lambda z, s: z * s[:, None], jnp.ones((5, 2)), jnp.arange(5.0), batch_size=2)[:, 0]
    Array([0., 1., 2., 3., 4.], dtype=float32)
  """
  outs = [
    _apply(fn, z[i : i + batch_size], sigma[i : i + batch_size])
    for i in range(0, z.shape[0], batch_size)
  ]
  return jnp.concatenate(outs, axis=0)


def pure_denoiser(model: nnx.Module) -> Callable[[Array, Array], Array]:
  """A pure function ``(z, sigma) -> softmax(model(z, sigma))`` over a snapshot of the weights.

  Usable inside ``jit``/``lax.scan`` (e.g. :func:`mrflax.diffusion.reverse_ve`).

  Examples:
    >>> from mrflax.nn import tree_nets
    >>> net = tree_nets.BPUNet(v=2, s=2, num_levels=1, width=4, rngs=nnx.Rngs(0))
    >>> pure_denoiser(net)(jnp.zeros((1, 2, 2)), jnp.ones(1)).sum(-1).tolist()
    [[1.0, 1.0]]
  """
  graphdef, state = nnx.split(model)

  def f(z, sigma):
    return jax.nn.softmax(nnx.merge(graphdef, state, copy=True)(z, sigma), axis=-1)

  return f


def pure_logits(model: nnx.Module) -> Callable[[Array, Array], Array]:
  """A pure function ``(z, sigma) -> model(z, sigma)`` over a snapshot of the weights.

  See :func:`pure_denoiser` for an example.
  """
  graphdef, state = nnx.split(model)
  return lambda z, sigma: nnx.merge(graphdef, state, copy=True)(z, sigma)
