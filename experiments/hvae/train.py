"""train / eval / sample an HVAE from a ConfigDict: the only place configs meet the library.

``train_and_evaluate(config, workdir)`` trains (resuming from ``workdir``), evaluates the EMA model
on the test split, and writes into ``workdir``: ``config.json``, ``metrics.jsonl``,
``checkpoints/`` (``checkpoints/best``: the best state by the periodic validation ELBO when
``train.eval_every`` is set), TensorBoard event files, ``eval.json`` (test ELBO, per-block and
per-resolution KL, and the importance-weighted bound when ``eval.iw_samples`` > 0),
``samples.png`` (one row per temperature), ``reconstructions.png``, ``kl_per_block.png`` and
``summary.json`` (final metrics, dataset provenance with the split rule, parameter count and a
digest of the final parameters).

Multi-process runs (``experiments.main`` joined ``jax.distributed``): every process loads its
rows of each global training batch (the global batches are those of a one-process run), the
evaluations run over a mesh of every process's devices with each process loading its rows of
each evaluation batch (same batches, same keys: the result equals the one-process one), Orbax
writes each checkpoint once and every process restores it, and only process 0 writes files
(``config.json``, ``metrics.jsonl``, ``eval.json``, the pictures, ``summary.json``).
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import time
from typing import Any

import grain
import jax
import ml_collections
from flax import nnx

from experiments.hvae.from_config import (
  exec_policy,
  execution_only,
  loop_config,
  model_spec,
  open_splits,
  preprocess,
  provenance,
  splits,
  step_config,
)
from experiments.hvae.pictures import PICTURES, draw, report, save_samples
from mrflax import data, evaluation, nn, sharding, training
from mrflax.training import checkpoint, loop
from mrflax.training.steps import Trainer


def hvae_loss(model, batch, key):
  return model.loss(batch["image"], batch["target"], key)


# -------------------------------------------------------------------------------------- evaluation
@functools.cache
def _terms_jit():
  """One jitted ELBO-terms function (the model is an argument: compiled once per batch shape)."""
  return jax.jit(evaluation.hvae_terms)


@functools.cache
def _log_weights_jit(num_samples: int, chunk: int | None):
  return jax.jit(
    functools.partial(evaluation.hvae_log_weights, num_samples=num_samples, chunk=chunk)
  )


def eval_mesh(batch_size: int):
  """All devices when the evaluation batch splits over them, else none (one process only).

  Several processes always evaluate over a mesh of all their devices: an ``eval.batch_size``
  that does not split over them is a ``ValueError``.
  """
  if batch_size % jax.device_count():
    if jax.process_count() > 1:
      raise ValueError(
        f"config.eval.batch_size={batch_size} must be a multiple of the {jax.device_count()} "
        f"devices of this {jax.process_count()}-process run"
      )
    return None
  return sharding.make_mesh()


def _eval_batches(config, source, mesh):
  """This process's part of every evaluation batch: its rows of each global batch when the
  mesh spans several processes, else every batch whole."""
  if jax.process_count() > 1:
    share = dict(rows=sharding.process_rows(mesh, config.eval.batch_size))
  else:
    share = dict(process_index=0, process_count=1)
  return data.eval_batches(
    source,
    batch_size=config.eval.batch_size,
    preprocess=preprocess(config),
    seed=config.seed,
    **share,
  )


def _lead() -> bool:
  """Whether this process writes the run's files (process 0)."""
  return jax.process_index() == 0


def _host_local(model):
  """A copy of ``model`` on this process's first device (from a mesh that spans processes), for
  work that only process 0 does (pictures): no collectives, nothing for the others to join."""
  if jax.process_count() == 1:
    return model
  graphdef, state = nnx.split(model)
  local = jax.local_devices()[0]

  def one(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return jax.device_put(x.addressable_data(0), local)
    return x

  return nnx.merge(graphdef, jax.tree.map(one, state))


def _on(model, mesh):
  """The model replicated on ``mesh`` (a no-op for a model already there, e.g. from ``fit``)."""
  return model if mesh is None else jax.device_put(model, sharding.replicated(mesh))


def evaluate_split(config, spec, model, source, *, key) -> evaluation.ElboResult:
  """The negative ELBO of ``model`` over every example of ``source`` (sharded, masked)."""
  terms = _terms_jit()
  mesh = eval_mesh(config.eval.batch_size)
  model = _on(model, mesh)
  return evaluation.evaluate_elbo(
    lambda batch, k: terms(model, batch, k),
    _eval_batches(config, source, mesh),
    key=key,
    data_dims=spec.data_dims,
    resolutions=[r for r, _ in spec.dec_pairs],
    mesh=mesh,
  )


def evaluate_iw_split(config, spec, model, source, *, key) -> evaluation.IwResult:
  """The importance-weighted bound with ``eval.iw_samples`` samples, ``eval.iw_chunk`` at once."""
  k = int(config.eval.iw_samples)
  chunk = int(config.eval.iw_chunk) or None
  log_w = _log_weights_jit(k, chunk)
  mesh = eval_mesh(config.eval.batch_size)
  model = _on(model, mesh)
  return evaluation.evaluate_iw(
    lambda batch, key: log_w(model, batch, key),
    _eval_batches(config, source, mesh),
    key=key,
    data_dims=spec.data_dims,
    chunk=chunk,
    mesh=mesh,
  )


def periodic_eval_fn(config, spec, source):
  """``fit``'s ``eval_fn``: the validation ELBO of the EMA model (same key every time)."""

  def eval_fn(model) -> dict[str, float]:
    res = evaluate_split(config, spec, model, source, key=jax.random.key(config.seed + 3))
    return {
      "loss": res.nats_per_dim,
      "bits_per_dim": res.bits_per_dim,
      "nats_per_image": res.nats_per_image,
      "distortion": res.distortion,
      "rate": res.rate,
      **{f"kl_res{r}": v for r, v in res.kl_per_resolution.items()},
    }

  return eval_fn


# ------------------------------------------------------------------------------------------ modes
def _trainer_and_state(config, spec):
  """A Trainer and a freshly initialised state (the target a checkpoint is restored onto)."""
  model = nn.HVAE(spec, policy=exec_policy(config), rngs=nnx.Rngs(config.seed))
  trainer = Trainer(model, hvae_loss, step_config(config))
  return trainer, trainer.init_state(model, jax.random.key(config.seed))


def train_stream(config, source, prep):
  """This process's part of the training batches: the same global batches for any number of
  processes (process ``p`` of ``n`` loads rows ``p*b:(p+1)*b`` of each, ``b`` = global / ``n``).

  One process: :func:`mrflax.data.train_dataset`. Several: the same Grain chain over the whole
  source (one shuffle, per-example preprocessing RNG by position in the stream), batched by the
  per-process batch, of which process ``p`` takes batches ``p, p + n, ...`` (``train_dataset``
  itself gives process ``p`` a shuffle of ``source[p::n]``, so its global batches depend on
  ``n``). Checkpointable like ``train_dataset``'s iterator (the position is a batch count,
  the same on every process).
  """
  batch, seed = config.train.batch_size, config.seed
  count = jax.process_count()
  if count == 1:
    return data.train_dataset(source, global_batch=batch, seed=seed, preprocess=prep)
  per_process = data.per_process_batch(batch, count)
  ds = grain.MapDataset.source(source)
  if len(ds) < batch:
    raise ValueError(f"the training split ({len(ds)} examples) is smaller than a batch ({batch})")
  ds = ds.shuffle(seed=seed).repeat()
  if getattr(prep, "is_random", False):
    ds = ds.random_map(lambda ex, rng: prep(ex, rng), seed=seed + 1)
  else:
    ds = ds.map(prep)
  ds = ds.batch(per_process, drop_remainder=True)[jax.process_index() :: count]
  return ds.to_iter_dataset()


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (resuming if possible), evaluates, writes pictures and ``summary.json``."""
  t0 = time.perf_counter()
  work = pathlib.Path(workdir)
  work.mkdir(parents=True, exist_ok=True)
  eval_mesh(config.eval.batch_size)  # a batch that cannot be evaluated fails now, not at the end
  if _lead():
    (work / "config.json").write_text(config.to_json(indent=1))
  spec = model_spec(config)
  policy = exec_policy(config)
  counts = nn.spec_param_count(spec)
  processes = (
    f" in {jax.process_count()} processes (this is process {jax.process_index()})"
    if jax.process_count() > 1
    else ""
  )
  print(
    f"[hvae] {config.data.name}: {spec.image_size}x{spec.image_size}x{spec.image_channels}, "
    f"{counts.total:,} parameters, {spec.num_applications} top-down blocks, "
    f"{jax.device_count()} device(s){processes}",
    flush=True,
  )
  sources = open_splits(config)
  roles = splits(config)
  prep = preprocess(config)
  train_iter = iter(train_stream(config, sources[roles["train"]], prep))
  if config.train.eval_every and _lead():
    print(
      f"[hvae] evaluating the EMA model on split {roles['valid']!r} every "
      f"{config.train.eval_every} steps",
      flush=True,
    )
  result = loop.fit(
    model_fn=lambda rngs: nn.HVAE(spec, policy=policy, rngs=rngs),
    loss_fn=hvae_loss,
    step_config=step_config(config),
    loop=loop_config(config),
    train_iter=train_iter,
    workdir=str(work),
    config=json.loads(config.to_json()),
    eval_fn=periodic_eval_fn(config, spec, sources[roles["valid"]])
    if config.train.eval_every
    else None,
  )
  if result.preempted:
    return {"preempted": True, "step": int(result.state.step)}
  summary = _evaluate_and_draw(
    config, spec, result.trainer, result.state, sources, work, int(result.state.step)
  )
  summary.update(
    train_metrics=result.metrics,
    last_valid_eval=result.eval_metrics,
    best_valid_loss=result.best_eval,
    compile_s=result.compile_s,
    resumed_from=result.resumed_from,
    params=counts.total,
    params_digest=training.params_digest(result.state.params),
    ema_digest=training.params_digest(result.state.ema),
    step=int(result.state.step),
    skipped_updates=int(result.state.skipped),
    wall_s=time.perf_counter() - t0,
    provenance=provenance(config, sources),
  )
  if _lead():
    (work / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    report(summary, work, [*PICTURES, "eval.json", "summary.json"])
  else:
    _report_follower(summary)
  return summary


def _report_follower(summary) -> None:
  """The one line a process other than 0 prints (it writes no files)."""
  e = summary["eval"]
  digest = f", params digest {summary['params_digest']}" if "params_digest" in summary else ""
  print(
    f"[hvae] process {jax.process_index()}: step {summary['step']}{digest}, test negative ELBO "
    f"{e['bits_per_dim']:.6f} bits/dim over {e['num_examples']} images (process 0 writes "
    "the files)",
    flush=True,
  )


def _evaluate_and_draw(config, spec, trainer, state, sources, work, step) -> dict[str, Any]:
  """Evaluates the EMA model of ``state`` (the checkpoint at ``step``), writes ``eval.json``."""
  ema_model = trainer.model(state, ema=True)
  eval_split = splits(config)["eval"]
  res = evaluate_split(
    config, spec, ema_model, sources[eval_split], key=jax.random.key(config.seed + 1)
  )
  out = res.to_dict()
  if config.eval.iw_samples:
    t0 = time.perf_counter()
    iw = evaluate_iw_split(
      config, spec, ema_model, sources[eval_split], key=jax.random.key(config.seed + 4)
    )
    out["iw"] = dict(iw.to_dict(), wall_s=time.perf_counter() - t0)
  out["split"] = eval_split
  out["checkpoint"] = {"step": int(step), "ema": True}
  if _lead():
    (work / "eval.json").write_text(json.dumps(out, indent=1) + "\n")
    draw(config, spec, _host_local(ema_model), sources[eval_split], preprocess(config), res, work)
  return {"eval": out}


def restore(config: ml_collections.ConfigDict, work: pathlib.Path):
  """``(spec, trainer, restored)`` from the newest readable checkpoint in ``work``."""
  spec = model_spec(config)
  trainer, state = _trainer_and_state(config, spec)
  if jax.process_count() > 1:  # every process restores onto the mesh that spans them all
    state = jax.device_put(state, sharding.replicated(sharding.make_mesh()))
  ckpt = checkpoint.Checkpointer(work / "checkpoints")
  restored = ckpt.restore(state, config=json.loads(config.to_json()))
  ckpt.close()
  if restored is None:
    raise FileNotFoundError(f"no checkpoint in {work / 'checkpoints'}: run --mode=train first")
  policy_changes = execution_only(restored.config_changes)
  if policy_changes:
    changes = ", ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in policy_changes)
    print(f"[hvae] execution-only config changes (same parameters): {changes}", flush=True)
  print(
    f"[hvae] loaded the checkpoint at step {restored.step} from {ckpt.directory} "
    "(using its EMA parameters)",
    flush=True,
  )
  return spec, trainer, restored


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Evaluates the newest checkpoint in ``workdir`` (EMA), rewrites ``eval.json`` and the pictures.

  ``summary.json`` (the training run's record) is left as it is; ``eval.json`` names the step.
  """
  work = pathlib.Path(workdir)
  spec, trainer, restored = restore(config, work)
  sources = open_splits(config)
  summary = _evaluate_and_draw(config, spec, trainer, restored.state, sources, work, restored.step)
  summary["step"] = restored.step
  summary["provenance"] = provenance(config, sources)
  if _lead():
    report(summary, work, ["eval.json", *PICTURES])
  else:
    _report_follower(summary)
  return summary


def sample(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Writes ``samples.png`` from the newest checkpoint's EMA model."""
  work = pathlib.Path(workdir)
  spec, trainer, restored = restore(config, work)
  path = os.fspath(work / "samples.png")
  if _lead():
    save_samples(config, spec, _host_local(trainer.model(restored.state, ema=True)), work)
    print(f"[hvae] wrote {path} (rows: temperatures {list(config.eval.temperatures)})", flush=True)
  return path


#: The modes ``python -m experiments.main --mode=...`` dispatches to.
MODES = {"train": train_and_evaluate, "eval": evaluate, "sample": sample}
