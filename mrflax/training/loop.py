"""``fit``: the one impure driver (mesh, restore, compile, loop, log, checkpoint).

Resumes automatically from ``<workdir>/checkpoints``: a run killed at any point and started again
with the same arguments continues from its last checkpoint, bit for bit (the train state, the
data-iterator position and the RNG key are all in the checkpoint). SIGTERM (pre-emption) saves a
checkpoint and stops cleanly. With ``eval_every``, an evaluation callable runs on the EMA model
every so many steps; its metrics are logged with the prefix ``eval/`` and the best state by
``eval_metric`` is kept in ``<workdir>/checkpoints/best``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import signal
import time
from collections.abc import Callable, Iterator

import jax
import numpy as np
from absl import logging
from flax import nnx

from mrflax import sharding
from mrflax.training.checkpoint import Checkpointer
from mrflax.training.metrics import MetricWriter, Progress, to_python
from mrflax.training.steps import BatchSampler, LossFn, StepConfig, Trainer, TrainState
from mrflax.training.utils import host_array


class TrainingDivergedError(RuntimeError):
  """Too many consecutive updates were skipped: the run is not learning any more."""


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  """How long and how often (typed; built from a config at the experiment boundary).

  Attributes:
    steps: total iterations.
    batch_size: global batch size.
    steps_per_call: iterations per compiled call (``lax.scan``); divides the other intervals.
    log_every: iterations between metric records and progress updates.
    checkpoint_every: iterations between checkpoints (one is always written at the end).
    keep_checkpoints: number of recent checkpoints kept.
    max_consecutive_skips: abort with :class:`TrainingDivergedError` after this many skipped
      updates in a row.
    seed: seeds the model initialisation and the per-step keys.
    num_devices: devices of the data mesh (default: all).
    eval_every: iterations between evaluations of the EMA model (0: never); needs ``fit``'s
      ``eval_fn``.
    eval_metric: the ``eval_fn`` result that picks the best checkpoint (lower is better).
  """

  steps: int
  batch_size: int
  steps_per_call: int = 1
  log_every: int = 100
  checkpoint_every: int = 1000
  keep_checkpoints: int = 3
  max_consecutive_skips: int = 50
  seed: int = 0
  num_devices: int | None = None
  eval_every: int = 0
  eval_metric: str = "loss"

  def __post_init__(self):
    k = self.steps_per_call
    for name in ("steps", "batch_size", "steps_per_call", "log_every", "checkpoint_every"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    if self.eval_every < 0:
      raise ValueError(f"eval_every must be >= 0 (0: never), got {self.eval_every}")
    for name in ("steps", "log_every", "checkpoint_every", "eval_every"):
      if getattr(self, name) % k:
        raise ValueError(f"{name}={getattr(self, name)} must be a multiple of steps_per_call={k}")


@dataclasses.dataclass
class FitResult:
  """What :func:`fit` returns.

  Attributes:
    trainer: the :class:`Trainer` that ran the steps (its model graph, loss and optimizer).
    state: the final :class:`TrainState`, on the mesh.
    metrics: the last logged training record (window means, ``skipped_total``...).
    resumed_from: the checkpoint step the run resumed from, ``None`` for a fresh run.
    compile_s: seconds spent compiling the train step.
    preempted: the run stopped early on SIGTERM (after saving a checkpoint).
    eval_metrics: the last evaluation (``eval_fn``'s result), if any.
    best_eval: the best ``loop.eval_metric`` seen so far (with ``loop.eval_every``).
  """

  trainer: Trainer
  state: TrainState
  metrics: dict[str, float]
  resumed_from: int | None
  compile_s: float
  preempted: bool
  eval_metrics: dict[str, float] | None = None
  best_eval: float | None = None


def _stack(batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  return {k: np.stack([b[k] for b in batches]) for k in batches[0]}


def fit(
  *,
  model_fn: Callable[[nnx.Rngs], nnx.Module],
  loss_fn: LossFn,
  step_config: StepConfig,
  loop: LoopConfig,
  train_iter: Iterator[dict[str, np.ndarray]] | None = None,
  workdir: str,
  config: dict | None = None,
  on_log: Callable[[int, dict[str, float]], None] | None = None,
  eval_fn: Callable[[nnx.Module], dict[str, float]] | None = None,
  sample_batch: BatchSampler | None = None,
  key: jax.Array | None = None,
) -> FitResult:
  """Trains ``model_fn(rngs)`` with ``loss_fn`` on batches; resumes from ``workdir``.

  The batches come from exactly one source: ``train_iter`` (host batches, e.g. a Grain iterator or
  any iterator of dicts of numpy arrays), or ``sample_batch``, a pure function that ``fit`` calls
  inside the compiled step, so the data are drawn on device (e.g. fresh sequences of a generative
  model at every step) from :meth:`Trainer.data_key` of the train state: a resumed run sees the
  same batches as an uninterrupted one.

  Args:
    model_fn: builds the model from ``nnx.Rngs`` (called once, with ``loop.seed``).
    loss_fn: ``loss_fn(model, batch, key) -> (loss, metrics)``.
    step_config: optimisation hyperparameters.
    loop: :class:`LoopConfig`.
    train_iter: an iterator of per-process batches; if it has ``get_state``/``set_state``
      (Grain), its position is checkpointed and restored.
    workdir: run directory (``checkpoints/``, ``metrics.jsonl``).
    config: JSON-able run configuration stored in every checkpoint.
    on_log: optional callback with every logged record.
    eval_fn: ``eval_fn(ema_model) -> {name: float}``, called every ``loop.eval_every``
      iterations (on every process: it may run collectives); its result holds
      ``loop.eval_metric``, which feeds :meth:`Checkpointer.save_best`.
    sample_batch: ``sample_batch(key) -> global batch``, traced into the step (instead of
      ``train_iter``); the batch is sharded over the data axis of the mesh.
    key: the run's base key (typed or raw), from which every step key and data key is folded;
      default ``jax.random.key(loop.seed)``.

  Returns:
    :class:`FitResult` with the final state (on the mesh), the last logged metrics and the last
    evaluation.

  Raises:
    TrainingDivergedError: ``loop.max_consecutive_skips`` updates in a row were skipped.
    ValueError: ``loop.eval_every`` without an ``eval_fn``, an evaluation result without
      ``loop.eval_metric``, or not exactly one of ``train_iter`` and ``sample_batch``.
  """
  if (train_iter is None) == (sample_batch is None):
    raise ValueError("pass exactly one batch source: train_iter or sample_batch")
  if loop.eval_every and eval_fn is None:
    raise ValueError(f"loop.eval_every={loop.eval_every} needs an eval_fn")
  # ------------------------------------------------------------------------- mesh, state, restore
  mesh = sharding.make_mesh(loop.num_devices)
  sharding.check_batch_divisible(loop.batch_size, mesh)
  rep = sharding.replicated(mesh)
  model = model_fn(nnx.Rngs(loop.seed))
  trainer = Trainer(model, loss_fn, step_config)
  base_key = jax.random.key(loop.seed) if key is None else key
  state = jax.device_put(trainer.init_state(model, base_key), rep)
  del model
  ckpt = Checkpointer(f"{workdir}/checkpoints", max_to_keep=loop.keep_checkpoints)
  restored = ckpt.restore(state, config=config)  # CheckpointMismatchError: the model changed
  resumed_from = None
  for path in ckpt.set_aside:
    print(
      f"[fit] WARNING: unreadable checkpoint kept as {path}; using the previous one", flush=True
    )
  if restored is not None:
    state, resumed_from = restored.state, restored.step
    if restored.data_state and train_iter is not None and hasattr(train_iter, "set_state"):
      train_iter.set_state(restored.data_state)
    logging.info("resumed from step %d in %s", resumed_from, ckpt.directory)
    print(f"[fit] resumed from checkpoint at step {resumed_from}", flush=True)
    if restored.config_changes:
      changes = ", ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in restored.config_changes)
      print(f"[fit] note: config changed since that checkpoint (saved -> now): {changes}")
  elif ckpt.set_aside:
    print("[fit] WARNING: no readable checkpoint left: starting afresh", flush=True)

  # -------------------------------------------------------------------------------------- compile
  k = loop.steps_per_call
  if sample_batch is None:
    step_fn = jax.jit(
      trainer.train_steps,
      donate_argnums=0,
      in_shardings=(rep, sharding.batch_sharding(mesh, leading=1)),
      out_shardings=(rep, rep),
    )

    def next_batches():
      return (sharding.shard_batch(_stack([next(train_iter) for _ in range(k)]), mesh, leading=1),)

  else:
    on_mesh = sharding.batch_sharding(mesh)

    def sharded_sample(key):
      return jax.lax.with_sharding_constraint(sample_batch(key), on_mesh)

    step_fn = jax.jit(
      lambda state: trainer.sampled_train_steps(state, sharded_sample, k),
      donate_argnums=0,
      in_shardings=(rep,),
      out_shardings=(rep, rep),
    )

    def next_batches():
      return ()

  start = int(host_array(state.step))
  writer = MetricWriter(workdir, enabled=jax.process_index() == 0, start_step=start)
  last: dict[str, float] = {}
  last_eval: dict[str, float] | None = None
  compile_s = 0.0
  preempted = False
  if start < loop.steps:
    batches = next_batches()
    t0 = time.perf_counter()
    compiled = step_fn.lower(state, *batches).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    temp = getattr(mem, "temp_size_in_bytes", None)
    print(
      f"[fit] compiled {k} step(s) per call in {compile_s:.1f} s"
      + (f", temp memory {temp / 2**20:.0f} MiB" if temp else ""),
      flush=True,
    )
  else:
    print(f"[fit] nothing to do: the checkpoint is already at step {start}", flush=True)

  # ----------------------------------------------------------------------------------------- loop
  stop = {"flag": False}

  def on_sigterm(signum, frame):
    del signum, frame
    stop["flag"] = True

  previous = signal.signal(signal.SIGTERM, on_sigterm) if _main_thread() else None
  lead = jax.process_index() == 0
  progress = Progress(loop.steps, start=start)
  window: list[dict[str, np.ndarray]] = []
  step = start
  try:
    while step < loop.steps:
      state, metrics = compiled(state, *batches)
      step += k
      position = _iter_state(train_iter)  # the data position that goes with this state
      if step < loop.steps:
        batches = next_batches()  # while the device computes
      _check_skips(host_array(metrics["consecutive_skips"]), step, loop, metrics)
      window.append(metrics)
      if step % loop.log_every == 0 or step == loop.steps:
        fetched = jax.tree.map(host_array, window)
        window = []
        stacked = {
          key: np.concatenate([np.atleast_1d(m[key]) for m in fetched]) for key in fetched[0]
        }
        stacked.pop("consecutive_skips")
        last = {key: float(np.mean(v)) for key, v in stacked.items()}
        last["skipped"] = float(np.sum(stacked["skipped"]))
        if "grad_norm" in stacked:  # spikes vanish in the window mean (THEORY 6.3)
          last["grad_norm_max"] = float(np.max(stacked["grad_norm"]))
        last["skipped_total"] = float(host_array(state.skipped))
        writer.write(step, last)
        if lead:
          shown = ("loss", "grad_norm", "skipped_total")
          progress.update(step, {key: last[key] for key in shown if key in last})
        if on_log is not None:
          on_log(step, last)
      if loop.eval_every and step % loop.eval_every == 0:
        last_eval = _evaluate(eval_fn, trainer, state, step, loop, writer, ckpt, position, config)
      if step % loop.checkpoint_every == 0 or step == loop.steps or stop["flag"]:
        ckpt.save(step, state, data_state=position, config=config)
      if stop["flag"]:
        preempted = True
        print(f"[fit] SIGTERM: saved a checkpoint at step {step} and stopped", flush=True)
        break
  finally:
    best_eval = ckpt.best_metric() if loop.eval_every else None
    ckpt.close()
    writer.close()
    if previous is not None:
      signal.signal(signal.SIGTERM, previous)
  return FitResult(
    trainer=trainer,
    state=state,
    metrics=to_python(last),
    resumed_from=resumed_from,
    compile_s=compile_s,
    preempted=preempted,
    eval_metrics=last_eval,
    best_eval=best_eval,
  )


def _check_skips(consecutive: np.ndarray, step: int, loop: LoopConfig, metrics) -> None:
  """Raises at the first of the call's steps whose run of skipped updates reached the limit."""
  over = np.flatnonzero(np.atleast_1d(consecutive) >= loop.max_consecutive_skips)
  if not over.size:
    return
  i = int(over[0])
  at = step - loop.steps_per_call + i + 1
  m = {key: float(host_array(v).reshape(-1)[i]) for key, v in metrics.items()}
  raise TrainingDivergedError(
    f"{loop.max_consecutive_skips} consecutive updates were skipped (the limit "
    f"max_consecutive_skips) at step {at}: loss {m.get('loss')}, gradient norm "
    f"{m.get('grad_norm')} against threshold {m.get('skip_threshold')}. Parameters stay at the "
    "last good update; lower the learning rate, raise optim.skip_threshold, or check the data "
    "for NaNs."
  )


def _evaluate(eval_fn, trainer, state, step, loop, writer, ckpt, position, config):
  """Runs ``eval_fn`` on the EMA model, logs it with prefix ``eval/``, keeps the best state."""
  t0 = time.perf_counter()
  metrics = {k: float(v) for k, v in eval_fn(trainer.model(state, ema=True)).items()}
  if loop.eval_metric not in metrics:
    raise ValueError(
      f"eval_fn returned {sorted(metrics)}, without the eval_metric {loop.eval_metric!r}"
    )
  metrics["eval_s"] = time.perf_counter() - t0
  writer.write(step, metrics, prefix="eval/")
  value = metrics[loop.eval_metric]
  kept = math.isfinite(value) and ckpt.save_best(
    step, state, metric=value, data_state=position, config=config
  )
  print(
    f"[fit] eval at step {step}: {loop.eval_metric}={value:.5g} ({metrics['eval_s']:.1f} s)"
    + (", new best: kept in checkpoints/best" if kept else ""),
    flush=True,
  )
  return to_python(metrics)


def _iter_state(it) -> dict | None:
  return copy.deepcopy(it.get_state()) if hasattr(it, "get_state") else None


def _main_thread() -> bool:
  import threading

  return threading.current_thread() is threading.main_thread()
