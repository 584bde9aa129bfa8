r"""Training loops for the GHM networks (THEORY §7.4, §7.7): denoisers and classifiers.

Data come from a :class:`~mrflax.ghm.GHM`: either **online** (fresh exact samples at every step) or
a **fixed training set** of ``P`` clean sequences (sampled with replacement each step); the noise is
always fresh. Optimiser: Adam with a linear warm-up and cosine decay. The step is one
``jax.jit``-compiled call that runs ``steps_per_call`` optimiser steps in a ``lax.scan`` and
returns the new NNX state (in-place NNX updates inside a plain ``jax.jit`` are not written back,
ENGINEERING §4.4, so the state is split, threaded and merged explicitly).

Losses (both minimised by the Bayes denoiser / classifier):

.. math::
  \mathcal L_{\mathrm{mse}} = \frac{1}{n_{\mathrm{leaf}}} E \sum_j \lVert f_j(Z) - X_j \rVert^2,
  \qquad \mathcal L_{\mathrm{ce}} = -E \log f_{y}(Z).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from absl import logging
from flax import nnx
from jaxtyping import Array, Float, Int

from mrflax import ghm as G


class History(NamedTuple):
  """Per-chunk training log: ``step`` (after the chunk), mean ``loss`` over it, wall ``seconds``."""

  step: list[int]
  loss: list[float]
  seconds: list[float]


def make_optimizer(
  *, learning_rate: float, steps: int, warmup_steps: int = 0, weight_decay: float = 0.0
) -> optax.GradientTransformation:
  r"""Adam (or AdamW) with linear warm-up then cosine decay to 0 over ``steps``.

  .. math::
    \eta_t = \eta \min(1, t / t_w) \cdot \tfrac12\big(1 + \cos(\pi (t - t_w)/(T - t_w))\big).

  Examples:
    >>> tx = make_optimizer(learning_rate=1e-3, steps=10)
    >>> state = tx.init(jnp.zeros(2))
  """
  schedule = optax.warmup_cosine_decay_schedule(
    0.0 if warmup_steps else learning_rate,
    learning_rate,
    warmup_steps,
    max(steps, warmup_steps + 1),
  )
  if weight_decay:
    return optax.adamw(schedule, weight_decay=weight_decay)
  return optax.adam(schedule)


def _log_uniform(key: Array, n: int, lo: float, hi: float) -> Array:
  return jnp.exp(jax.random.uniform(key, (n,), minval=jnp.log(lo), maxval=jnp.log(hi)))


def _clean_batch(
  key: Array, ghm: G.GHM, batch_size: int, train: tuple[Array, Array] | None
) -> tuple[Array, Array]:
  """(leaves, root labels): fresh exact samples, or a uniform draw from the training set."""
  if train is None:
    levels = G.sample_levels(key, ghm, batch_size)
    return levels[-1], levels[0]
  idx = jax.random.randint(key, (batch_size,), 0, train[0].shape[0])
  return train[0][idx], train[1][idx]


def _fit(
  key: Array,
  model: nnx.Module,
  batch_loss: Callable[[nnx.Module, Array], Array],
  *,
  steps: int,
  learning_rate: float,
  warmup_steps: int,
  steps_per_call: int,
  log_every: int,
  name: str,
) -> tuple[nnx.Module, History]:
  """Shared driver: Adam + cosine, ``steps_per_call`` steps per compiled call, logging."""
  if steps < 1 or steps_per_call < 1:
    raise ValueError(f"steps and steps_per_call must be >= 1, got {steps}, {steps_per_call}")
  tx = make_optimizer(learning_rate=learning_rate, steps=steps, warmup_steps=warmup_steps)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  graphdef, state = nnx.split((model, optimizer))

  def one_step(state, k):
    m, opt = nnx.merge(graphdef, state, copy=True)
    m_def, params, rest = nnx.split(m, nnx.Param, ...)

    def f(p):
      return batch_loss(nnx.merge(m_def, p, rest, copy=True), k)

    loss, grads = jax.value_and_grad(f)(params)
    opt.update(m, grads)
    return nnx.state((m, opt)), loss

  @jax.jit
  def chunk(state, keys):
    state, losses = jax.lax.scan(one_step, state, keys)
    return state, jnp.mean(losses)

  history = History([], [], [])
  done, t0, last_log = 0, time.perf_counter(), 0
  while done < steps:
    n = min(steps_per_call, steps - done)
    keys = jax.random.split(jax.random.fold_in(key, done), n)
    state, loss = chunk(state, keys)
    done += n
    history.step.append(done)
    history.loss.append(float(loss))
    history.seconds.append(time.perf_counter() - t0)
    if log_every and (done - last_log >= log_every or done == steps):
      last_log = done
      logging.info(
        "%s step %d/%d loss %.5f (%.1f s)", name, done, steps, float(loss), history.seconds[-1]
      )
  model, _ = nnx.merge(graphdef, state)
  return model, history


def train_denoiser(
  key: Array,
  ghm: G.GHM,
  model: nnx.Module,
  *,
  steps: int,
  batch_size: int = 256,
  learning_rate: float = 2e-3,
  warmup_steps: int = 100,
  sigma_min: float = 0.2,
  sigma_max: float = 3.0,
  train_leaves: Int[Array, "P ..."] | None = None,
  loss: str = "mse",
  steps_per_call: int = 50,
  log_every: int = 500,
) -> tuple[nnx.Module, History]:
  r"""Trains a :math:`\sigma`-conditioned denoiser ``model(z, sigma) -> logits`` on VE noise.

  Each step draws clean leaves (online from ``ghm``, or from ``train_leaves``), noise levels
  :math:`\log\sigma \sim U[\log\sigma_{\min}, \log\sigma_{\max}]` and
  :math:`Z = X + \sigma G`, and minimises the MSE to the one-hot target
  :math:`\frac{1}{n_{\mathrm{leaf}}}\sum_j \lVert \mathrm{softmax}(\mathrm{logits}_j) - X_j
  \rVert^2` (or the cross-entropy with ``loss="ce"``).

  Args:
    key: PRNG key (data, noise).
    ghm: the generating model (also fixes ``v`` and the leaf layout).
    model: an NNX module such as :class:`~mrflax.nn.tree_nets.BPUNet`.
    steps: optimiser steps.
    batch_size: sequences per step.
    learning_rate: peak Adam learning rate (cosine decay to 0).
    warmup_steps: linear warm-up steps.
    sigma_min: smallest training noise level.
    sigma_max: largest training noise level.
    train_leaves: optional fixed training set ``[P, *leaf_shape]``; ``None`` = online.
    loss: ``"mse"`` or ``"ce"``.
    steps_per_call: optimiser steps per compiled call (``lax.scan``).
    log_every: log the loss every this many steps (0: never).

  Returns:
    ``(trained model, History)``.

  Examples:
    >>> from mrflax.nn import tree_nets
    >>> g = G.random_hierarchy_model(jax.random.key(0), v=2, n_classes=2, m=1, s=2, L=1)
    >>> net = tree_nets.BPUNet(v=2, s=2, L=1, width=4, rngs=nnx.Rngs(0))
    >>> net, hist = train_denoiser(jax.random.key(1), g, net, steps=4, batch_size=8,
    ...                            steps_per_call=2, log_every=0)
    >>> hist.step
    [2, 4]
  """
  if loss not in ("mse", "ce"):
    raise ValueError(f"loss must be 'mse' or 'ce', got {loss!r}")
  if not 0 < sigma_min <= sigma_max:
    raise ValueError(f"need 0 < sigma_min <= sigma_max, got {sigma_min}, {sigma_max}")
  train = _as_train_set(ghm, train_leaves, None)
  v = ghm.v

  def batch_loss(m, k):
    k_data, k_sig, k_noise = jax.random.split(k, 3)
    leaves, _ = _clean_batch(k_data, ghm, batch_size, train)
    x = G.one_hot(leaves, v)
    sigma = _log_uniform(k_sig, batch_size, sigma_min, sigma_max)
    z = G.add_noise(k_noise, x, sigma=sigma)
    logits = m(z, sigma)
    if loss == "ce":
      return -jnp.mean(jnp.sum(x * jax.nn.log_softmax(logits, axis=-1), axis=-1))
    return jnp.mean(jnp.sum(jnp.square(jax.nn.softmax(logits, axis=-1) - x), axis=-1))

  return _fit(
    key,
    model,
    batch_loss,
    steps=steps,
    learning_rate=learning_rate,
    warmup_steps=warmup_steps,
    steps_per_call=steps_per_call,
    log_every=log_every,
    name="denoiser",
  )


def train_classifier(
  key: Array,
  ghm: G.GHM,
  model: nnx.Module,
  *,
  sigma: float,
  steps: int,
  batch_size: int = 256,
  learning_rate: float = 2e-3,
  warmup_steps: int = 100,
  train_leaves: Int[Array, "P ..."] | None = None,
  train_labels: Int[Array, " P"] | None = None,
  steps_per_call: int = 50,
  log_every: int = 500,
) -> tuple[nnx.Module, History]:
  r"""Trains a classifier ``model(z, sigma) -> class logits`` with the cross-entropy
  :math:`-E \log \mathrm{softmax}(\mathrm{logits})_y` at a fixed noise level (``sigma = 0``:
  clean one-hot inputs, fed to the network as :math:`Z` with :math:`\sigma = 1` for the scale).

  Args:
    key: PRNG key.
    ghm: the generating model.
    model: e.g. :class:`~mrflax.nn.tree_nets.ConvNetClassifier`.
    sigma: noise level of the training (and test) data.
    steps: optimiser steps.
    batch_size: sequences per step.
    learning_rate: peak learning rate.
    warmup_steps: warm-up steps.
    train_leaves: optional fixed training set ``[P, *leaf_shape]`` (online if ``None``).
    train_labels: its root classes ``[P]`` (required with ``train_leaves``).
    steps_per_call: optimiser steps per compiled call.
    log_every: logging period in steps (0: never).

  Returns:
    ``(trained model, History)``.

  Examples:
    >>> from mrflax.nn import tree_nets
    >>> g = G.random_hierarchy_model(jax.random.key(0), v=2, n_classes=2, m=1, s=2, L=1)
    >>> net = tree_nets.ConvNetClassifier(v=2, n_classes=2, s=2, L=1, width=4, rngs=nnx.Rngs(0))
    >>> net, hist = train_classifier(jax.random.key(1), g, net, sigma=0.5, steps=2,
    ...                              batch_size=8, steps_per_call=2, log_every=0)
    >>> len(hist.loss)
    1
  """
  if sigma < 0:
    raise ValueError(f"sigma must be >= 0, got {sigma}")
  train = _as_train_set(ghm, train_leaves, train_labels, labels_required=True)
  v = ghm.v
  sig_in = sigma if sigma > 0 else 1.0

  def batch_loss(m, k):
    k_data, k_noise = jax.random.split(k)
    leaves, labels = _clean_batch(k_data, ghm, batch_size, train)
    z = G.add_noise(k_noise, G.one_hot(leaves, v), sigma=sigma)
    logits = m(z, jnp.full((batch_size,), sig_in))
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=-1))

  return _fit(
    key,
    model,
    batch_loss,
    steps=steps,
    learning_rate=learning_rate,
    warmup_steps=warmup_steps,
    steps_per_call=steps_per_call,
    log_every=log_every,
    name="classifier",
  )


def _as_train_set(ghm, leaves, labels, labels_required: bool = False):
  if leaves is None:
    return None
  leaves = jnp.asarray(leaves)
  G.spec.check_leaves(ghm, leaves, event_dims=0, name="train_leaves")
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
  jf = jax.jit(fn)
  outs = [
    jf(z[i : i + batch_size], sigma[i : i + batch_size]) for i in range(0, z.shape[0], batch_size)
  ]
  return jnp.concatenate(outs, axis=0)


def pure_denoiser(model: nnx.Module) -> Callable[[Array, Array], Array]:
  """A pure function ``(z, sigma) -> softmax(model(z, sigma))`` over a snapshot of the weights.

  Usable inside ``jit``/``lax.scan`` (e.g. :func:`mrflax.ghm.reverse_ve`).

  Examples:
    >>> from mrflax.nn import tree_nets
    >>> net = tree_nets.BPUNet(v=2, s=2, L=1, width=4, rngs=nnx.Rngs(0))
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
