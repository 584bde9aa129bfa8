r"""The train state and the pure, compiled train/eval steps (VDVAE semantics, mrflax safeguards).

One iteration (VDVAE_REFERENCE.md §9), with :math:`i` the iteration counter:

1. :math:`\eta_i` from the schedule at :math:`i` (skipped iterations advance it too);
2. loss and gradients of the global-batch mean loss;
3. :math:`g = \|\nabla\|_2` over all parameters **before** clipping; clip
   :math:`\nabla \leftarrow \nabla \cdot \min(1, c / (g + 10^{-6}))`;
4. **skip** if the loss or :math:`g` is not finite, or :math:`g \ge` the skip threshold (fixed, or
   adaptive: a multiple of a running mean of accepted norms);
5. otherwise update, then :math:`\theta_{ema} \leftarrow \rho\,\theta_{ema} + (1-\rho)\,\theta`;
   a skipped iteration leaves parameters, optimizer moments and the EMA untouched.

The decision is one scalar of the global computation, so it is identical on every device. The
state is a pytree of arrays only (parameters as an ``nnx.State``; the module structure stays
outside), so it passes through ``jit``, ``lax.scan``, ``device_put`` and Orbax unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct
from jaxtyping import Array, ArrayLike, Float

from mrflax.training.optim import make_transform, warmup_cosine

LossFn = Callable[[nnx.Module, dict[str, Array], Array], tuple[Float[Array, ""], dict[str, Any]]]
BatchSampler = Callable[[Array], dict[str, Array]]
"""``sample_batch(key) -> batch``: a pure, traceable function drawing a global batch on device."""


@struct.dataclass
class TrainState:
  """Everything a run needs to continue: parameters, optimizer, EMA, counters, RNG key.

  Attributes:
    step: iterations done (skipped ones included); drives the schedule and the per-step keys.
    params: the model's ``nnx.Param`` state.
    rest: the model's other state (e.g. batch statistics; usually empty).
    opt_state: the optax state of :func:`~mrflax.training.optim.make_transform`.
    ema: exponential moving average of ``params``.
    key: raw ``uint32`` key data (``jax.random.key_data``) of the run's base key.
    skipped: total number of skipped updates.
    consecutive_skips: length of the current run of skipped updates.
    norm_ema: running mean of accepted gradient norms (for the adaptive threshold).
    accepted: number of accepted updates.
  """

  # Leaves are typed ``Any``: JAX rebuilds pytrees with other leaves than arrays
  # (``ShapeDtypeStruct`` for abstract targets, ``None`` or sentinels in tree utilities), and
  # the run-time shape check would reject those. The shapes are in the docstring above.
  step: Any  # int32[]
  params: Any
  rest: Any
  opt_state: Any
  ema: Any
  key: Any  # uint32[2]
  skipped: Any  # int32[]
  consecutive_skips: Any  # int32[]
  norm_ema: Any  # float32[]
  accepted: Any  # int32[]


@dataclasses.dataclass(frozen=True)
class StepConfig:
  r"""Optimisation hyperparameters of the train step (typed; built from a config at the boundary).

  Attributes:
    optimizer: ``"adamw"`` or ``"adamax"``.
    lr, warmup_steps, decay_steps, final_lr_fraction: the schedule (:func:`warmup_cosine`).
    b1, b2, eps, weight_decay: optimizer constants (VDVAE: 0.9, 0.9, 1e-8, 0.01).
    grad_clip: clip the global norm to this (``None``: no clipping).
    skip_threshold: skip when the pre-clip norm is ``>=`` this (``None``: only non-finite skips).
    adaptive_skip: if set, the threshold becomes ``min(skip_threshold, adaptive_skip * norm_ema)``
      once ``adaptive_after`` updates were accepted.
    adaptive_after: accepted updates before the adaptive threshold is used.
    ema_decay: EMA rate :math:`\rho` (``None``: no EMA, the EMA equals the parameters).
  """

  optimizer: str = "adamw"
  lr: float = 2e-4
  warmup_steps: int = 100
  decay_steps: int | None = None
  final_lr_fraction: float = 0.0
  b1: float = 0.9
  b2: float = 0.9
  eps: float = 1e-8
  weight_decay: float = 0.01
  grad_clip: float | None = 200.0
  skip_threshold: float | None = 400.0
  adaptive_skip: float | None = None
  adaptive_after: int = 100
  ema_decay: float | None = 0.9999

  def transform(self) -> optax.GradientTransformation:
    return make_transform(
      self.optimizer, b1=self.b1, b2=self.b2, eps=self.eps, weight_decay=self.weight_decay
    )

  def learning_rate(self, step: Array) -> Array:
    return warmup_cosine(
      step,
      lr=self.lr,
      warmup_steps=self.warmup_steps,
      decay_steps=self.decay_steps,
      final_fraction=self.final_lr_fraction,
    )


def _tree_where(pred: Array, on_true: Any, on_false: Any) -> Any:
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def global_norm(tree: Any) -> Float[Array, ""]:
  """:math:`\\sqrt{\\sum \\|g\\|^2}` over all leaves, accumulated in float32."""
  leaves = jax.tree.leaves(tree)
  return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in leaves))


class Trainer:
  """Builds the train state of an NNX model and its pure step functions.

  Args:
    model: the NNX module (its structure is kept; its state becomes the train state's).
    loss_fn: ``loss_fn(model, batch, key) -> (scalar loss, metrics dict)``; the loss is the
      batch mean, metrics are scalars or arrays that are averaged by the caller.
    config: :class:`StepConfig`.

  The steps are pure functions of ``(state, batch)`` (no Python side effects), ready for
  ``jax.jit`` with shardings and buffer donation; :meth:`train_steps` runs ``k`` iterations in one
  call with ``lax.scan`` over a leading batch axis of length ``k``.
  """

  def __init__(self, model: nnx.Module, loss_fn: LossFn, config: StepConfig):
    self.graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    self._abstract = (params, rest)
    self.loss_fn = loss_fn
    self.config = config
    self.tx = config.transform()

  # ------------------------------------------------------------------------------------------ state
  def init_state(self, model: nnx.Module, key: Array) -> TrainState:
    """A fresh state from ``model``'s current parameters and a typed or raw key."""
    _, params, rest = nnx.split(model, nnx.Param, ...)
    if jnp.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key):
      key = jax.random.key_data(key)
    zero = lambda: jnp.zeros((), jnp.int32)  # distinct buffers: the step donates its input
    return TrainState(
      step=zero(),
      params=params,
      rest=rest,
      opt_state=self.tx.init(params),
      ema=jax.tree.map(jnp.copy, params),
      key=jnp.array(key, jnp.uint32),
      skipped=zero(),
      consecutive_skips=zero(),
      norm_ema=jnp.zeros((), jnp.float32),
      accepted=zero(),
    )

  def model(self, state: TrainState, *, ema: bool = False) -> nnx.Module:
    """The NNX module with the state's parameters (or EMA parameters); a fresh copy."""
    return nnx.merge(self.graphdef, state.ema if ema else state.params, state.rest, copy=True)

  def step_key(self, state: TrainState) -> Array:
    """The typed key of iteration ``state.step``: ``fold_in(base key, step)``."""
    return jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)

  def data_key(self, state: TrainState) -> Array:
    """The key of iteration ``state.step``'s on-device batch: ``fold_in(step key, 1)``.

    Independent of the loss's own key :meth:`step_key`, and a function of the train state only,
    so a resumed run draws the very batches the uninterrupted run would have drawn.
    """
    return jax.random.fold_in(self.step_key(state), 1)

  # ------------------------------------------------------------------------------------- the steps
  def loss_and_grads(self, params, rest, batch, key):
    def f(p):
      model = nnx.merge(self.graphdef, p, rest, copy=True)
      loss, metrics = self.loss_fn(model, batch, key)
      return loss, (metrics, nnx.state(model, nnx.Not(nnx.Param)))

    (loss, (metrics, new_rest)), grads = jax.value_and_grad(f, has_aux=True)(params)
    return loss, metrics, new_rest, grads

  def train_step(self, state: TrainState, batch: dict[str, ArrayLike]):
    """One iteration; returns ``(new_state, metrics)`` (metrics are scalars)."""
    cfg = self.config
    loss, metrics, new_rest, grads = self.loss_and_grads(
      state.params, state.rest, batch, self.step_key(state)
    )
    norm = global_norm(grads)
    if cfg.grad_clip is not None:
      factor = jnp.minimum(1.0, cfg.grad_clip / (norm + 1e-6))
      grads = jax.tree.map(lambda g: g * factor.astype(g.dtype), grads)
    threshold = jnp.asarray(math.inf if cfg.skip_threshold is None else cfg.skip_threshold)
    if cfg.adaptive_skip is not None:
      adaptive = cfg.adaptive_skip * state.norm_ema
      threshold = jnp.where(
        state.accepted >= cfg.adaptive_after, jnp.minimum(threshold, adaptive), threshold
      )
    finite = jnp.isfinite(loss) & jnp.isfinite(norm)
    skip = ~finite | ~(norm < threshold)

    lr = cfg.learning_rate(state.step)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    params = jax.tree.map(lambda p, u: p - (lr * u).astype(p.dtype), state.params, updates)
    if cfg.ema_decay is None:
      ema = params
    else:
      rho = cfg.ema_decay
      ema = jax.tree.map(lambda e, p: rho * e + (1 - rho) * p, state.ema, params)
    accepted_norm_ema = jnp.where(
      state.accepted == 0, norm, 0.99 * state.norm_ema + 0.01 * norm
    ).astype(jnp.float32)
    keep_new = ~skip
    new_state = state.replace(
      step=state.step + 1,
      params=_tree_where(keep_new, params, state.params),
      rest=_tree_where(keep_new, new_rest, state.rest),
      opt_state=_tree_where(keep_new, opt_state, state.opt_state),
      ema=_tree_where(keep_new, ema, state.ema),
      skipped=state.skipped + skip.astype(jnp.int32),
      consecutive_skips=jnp.where(skip, state.consecutive_skips + 1, 0),
      norm_ema=jnp.where(keep_new, accepted_norm_ema, state.norm_ema),
      accepted=state.accepted + keep_new.astype(jnp.int32),
    )
    out = {k: jnp.mean(v) for k, v in metrics.items() if jnp.ndim(v) == 0}
    out.update(
      loss=loss,
      grad_norm=norm,
      skipped=skip.astype(jnp.int32),
      consecutive_skips=new_state.consecutive_skips,
      skip_threshold=threshold.astype(jnp.float32),
      lr=lr,
    )
    return new_state, out

  def train_steps(self, state: TrainState, batches: dict[str, ArrayLike]):
    """``k`` iterations in one call: ``batches`` has a leading axis of length ``k``.

    Returns ``(new_state, metrics)`` with every metric stacked to shape ``[k]``. Equal to ``k``
    calls of :meth:`train_step` (tested). For ``k = 1`` there is no loop at all: XLA:CPU runs
    convolution gradients inside a loop body several times slower than outside one
    (jax-ml/jax#12868; 4.6x for the Fashion-MNIST step on the loaded 2-core CPU,
    benchmarks/README.md), and a one-trip ``lax.scan`` still pays it.
    """
    if jax.tree.leaves(batches)[0].shape[0] == 1:
      state, metrics = self.train_step(state, jax.tree.map(lambda b: b[0], batches))
      return state, jax.tree.map(lambda m: m[None], metrics)
    return jax.lax.scan(self.train_step, state, batches)

  def sampled_train_steps(self, state: TrainState, sample_batch: BatchSampler, k: int):
    """``k`` iterations in one call, each on a fresh batch ``sample_batch(data_key(state))``.

    The batches are drawn inside the compiled call (on device), from keys of the train state.
    Returns ``(new_state, metrics)`` with every metric stacked to shape ``[k]``; ``k = 1`` runs
    without a loop (see :meth:`train_steps`).
    """

    def one(state, _):
      return self.train_step(state, sample_batch(self.data_key(state)))

    if k == 1:
      state, metrics = one(state, None)
      return state, jax.tree.map(lambda m: m[None], metrics)
    return jax.lax.scan(one, state, None, length=k)

  def eval_step(
    self, state: TrainState, batch: dict[str, ArrayLike], key: Array, *, ema: bool = True
  ) -> dict[str, Array]:
    """The loss and metrics of the EMA (or raw) model on one batch, with the given key."""
    params = state.ema if ema else state.params
    model = nnx.merge(self.graphdef, params, state.rest, copy=True)
    loss, metrics = self.loss_fn(model, batch, key)
    return dict(metrics, loss=loss)
