"""train / eval / sample an HVAE from a ConfigDict: the only place configs meet the library.

``train_and_evaluate(config, workdir)`` trains (resuming from ``workdir``), evaluates the EMA model
on the test split, and writes into ``workdir``: ``config.json``, ``metrics.jsonl``,
``checkpoints/`` (``checkpoints/best``: the best state by the periodic validation ELBO when
``train.eval_every`` is set), TensorBoard event files, ``eval.json`` (test ELBO, per-block and
per-resolution KL, and the importance-weighted bound when ``eval.iw_samples`` > 0),
``samples.png`` (one row per temperature), ``reconstructions.png``, ``kl_per_block.png`` and
``summary.json`` (final metrics, dataset provenance with the split rule, parameter count and a
digest of the final parameters).
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from mrflax import data, evaluation, nn, sharding
from mrflax.training import checkpoint, loop
from mrflax.training.steps import StepConfig, Trainer


# ------------------------------------------------------------------------------ config -> kwargs
def model_spec(config: ml_collections.ConfigDict) -> nn.HVAESpec:
  m = config.model
  share = m.share if m.share == "full" else int(m.share)
  overrides = dict(share=share, time_embedding=m.time_embedding, exec_mode=m.exec_mode)
  overrides.update(dict(m.get("overrides", {})))
  return nn.presets.get(m.preset, **overrides)


def preprocess(config: ml_collections.ConfigDict) -> data.Preprocess:
  d = config.data
  return data.Preprocess(d.name, bits=d.bits, binarize=d.binarize, pad_to=d.pad_to or None)


def step_config(config: ml_collections.ConfigDict) -> StepConfig:
  o = dict(config.optim)
  for name in ("decay_steps", "grad_clip", "skip_threshold", "adaptive_skip", "ema_decay"):
    if o.get(name) is not None and o[name] <= 0:
      o[name] = None  # configs spell "off" as 0 / -1 (ConfigDict fields are typed)
  return StepConfig(**o)


def loop_config(config: ml_collections.ConfigDict) -> loop.LoopConfig:
  t = config.train
  return loop.LoopConfig(
    steps=t.steps,
    batch_size=t.batch_size,
    steps_per_call=t.steps_per_call,
    log_every=t.log_every,
    checkpoint_every=t.checkpoint_every,
    keep_checkpoints=t.keep_checkpoints,
    max_consecutive_skips=t.max_consecutive_skips,
    seed=config.seed,
    eval_every=t.eval_every,
    eval_metric="loss",
  )


def splits(config: ml_collections.ConfigDict) -> dict[str, str]:
  """The split names a run uses: ``train``, ``valid`` (periodic evaluation) and ``eval``.

  ``data.train_split`` / ``data.valid_split`` override the dataset's defaults (the stored
  training split; the held-out split if the dataset defines one, else the evaluation split).
  """
  spec = data.get_spec(config.data.name)
  return {
    "train": config.data.get("train_split") or spec.train_split,
    "valid": config.data.get("valid_split") or spec.valid_split,
    "eval": spec.eval_split,
  }


def open_split(config: ml_collections.ConfigDict, split: str):
  """The split's source; imports the dataset first if it has an offline importer and the
  config allows it (the digits ship inside scikit-learn, so ``make demo`` needs no network)."""
  d = config.data
  try:
    return data.open_source(d.name, split, data_dir=d.data_dir)
  except data.DatasetNotFoundError:
    if not (d.get("auto_import", False) and d.name == "digits"):
      raise
    print(f"[data] importing scikit-learn digits into {d.data_dir}", flush=True)
    data.import_digits(data_dir=d.data_dir)
    return data.open_source(d.name, split, data_dir=d.data_dir)


def open_splits(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Sources of every split the run uses, by split name."""
  return {name: open_split(config, name) for name in dict.fromkeys(splits(config).values())}


def provenance(config: ml_collections.ConfigDict, sources: dict[str, Any]) -> dict[str, Any]:
  spec = data.get_spec(config.data.name)
  used = splits(config)
  heldout = spec.heldout if spec.heldout and set(spec.heldout.names) & set(used.values()) else None
  try:
    stored = data.dataset_metadata(
      data.find_dataset(config.data.name, data_dir=config.data.data_dir)
    )
  except data.DatasetNotFoundError:
    stored = {}
  return {
    "dataset": config.data.name,
    "tfds_name": spec.tfds_name,
    "version": spec.version,
    "variant": stored.get("variant", spec.variant),
    "dataset_metadata": stored,
    "data_dir": str(config.data.data_dir),
    "bits": config.data.bits,
    "binarize": config.data.binarize,
    "pad_to": config.data.pad_to,
    "splits": {k: len(v) for k, v in sources.items()},
    "roles": used,
    "split_rule": heldout.rule if heldout else "the dataset's stored splits",
  }


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
  """All devices when the evaluation batch splits over them (single process), else none."""
  if jax.process_count() > 1 or batch_size % jax.device_count():
    return None
  return sharding.make_mesh()


def _on(model, mesh):
  """The model replicated on ``mesh`` (a no-op for a model already there, e.g. from ``fit``)."""
  return model if mesh is None else jax.device_put(model, sharding.replicated(mesh))


def evaluate_split(config, spec, model, source, *, key) -> evaluation.ElboResult:
  """The negative ELBO of ``model`` over every example of ``source`` (sharded, masked)."""
  prep = preprocess(config)
  batches = data.eval_batches(
    source,
    batch_size=config.eval.batch_size,
    preprocess=prep,
    seed=config.seed,
    process_index=0,
    process_count=1,
  )
  terms = _terms_jit()
  mesh = eval_mesh(config.eval.batch_size)
  model = _on(model, mesh)
  return evaluation.evaluate_elbo(
    lambda batch, k: terms(model, batch, k),
    batches,
    key=key,
    data_dims=spec.data_dims,
    resolutions=[r for r, _ in spec.dec_pairs],
    mesh=mesh,
  )


def evaluate_iw_split(config, spec, model, source, *, key) -> evaluation.IwResult:
  """The importance-weighted bound with ``eval.iw_samples`` samples, ``eval.iw_chunk`` at once."""
  k = int(config.eval.iw_samples)
  chunk = int(config.eval.iw_chunk) or None
  batches = data.eval_batches(
    source,
    batch_size=config.eval.batch_size,
    preprocess=preprocess(config),
    seed=config.seed,
    process_index=0,
    process_count=1,
  )
  log_w = _log_weights_jit(k, chunk)
  mesh = eval_mesh(config.eval.batch_size)
  model = _on(model, mesh)
  return evaluation.evaluate_iw(
    lambda batch, key: log_w(model, batch, key),
    batches,
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
  model = nn.HVAE(spec, rngs=nnx.Rngs(config.seed))
  trainer = Trainer(model, hvae_loss, step_config(config))
  return trainer, trainer.init_state(model, jax.random.key(config.seed))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (resuming if possible), evaluates, writes pictures and ``summary.json``."""
  t0 = time.perf_counter()
  work = pathlib.Path(workdir)
  work.mkdir(parents=True, exist_ok=True)
  (work / "config.json").write_text(config.to_json(indent=1))
  spec = model_spec(config)
  counts = nn.count_params(spec)
  print(
    f"[hvae] {config.data.name}: {spec.image_size}x{spec.image_size}x{spec.image_channels}, "
    f"{counts.total:,} parameters, {spec.n_applications} top-down blocks, "
    f"{jax.device_count()} device(s)",
    flush=True,
  )
  sources = open_splits(config)
  roles = splits(config)
  prep = preprocess(config)
  train_iter = iter(
    data.train_dataset(
      sources[roles["train"]],
      global_batch=config.train.batch_size,
      seed=config.seed,
      preprocess=prep,
    )
  )
  if config.train.eval_every:
    print(
      f"[hvae] evaluating the EMA model on split {roles['valid']!r} every "
      f"{config.train.eval_every} steps",
      flush=True,
    )
  result = loop.fit(
    model_fn=lambda rngs: nn.HVAE(spec, rngs=rngs),
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
    params_digest=loop.params_digest(result.state.params),
    ema_digest=loop.params_digest(result.state.ema),
    step=int(result.state.step),
    skipped_updates=int(result.state.skipped),
    wall_s=time.perf_counter() - t0,
    provenance=provenance(config, sources),
  )
  (work / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
  _report(summary, work, [*_PICTURES, "eval.json", "summary.json"])
  return summary


_PICTURES = ("samples.png", "reconstructions.png", "kl_per_block.png")


def _report(summary, work, written):
  e = summary["eval"]
  unit = (
    f"{e['nats_per_image']:.2f} nats/image"
    if summary["provenance"]["binarize"] != "none"
    else f"{e['bits_per_dim']:.4f} bits/dim"
  )
  print(
    f"[hvae] test negative ELBO (EMA, {e['num_examples']} images): {unit} "
    f"(distortion {e['distortion']:.4f} + rate {e['rate']:.4f} nats/dim)",
    flush=True,
  )
  if e.get("bits_per_resolution"):
    per_res = ", ".join(f"{r}: {v:.4f}" for r, v in e["bits_per_resolution"].items())
    print(f"[hvae] KL per resolution (bits/dim): {per_res}", flush=True)
  iw = e.get("iw")
  if iw:
    iw_unit = (
      f"{iw['nats_per_image']:.2f} nats/image"
      if summary["provenance"]["binarize"] != "none"
      else f"{iw['bits_per_dim']:.4f} bits/dim"
    )
    print(
      f"[hvae] test importance-weighted bound (K={iw['num_samples']}, chunk {iw['chunk']}): "
      f"{iw_unit} (mean ESS {iw['ess']:.1f})",
      flush=True,
    )
  print(f"[hvae] wrote {work}/{', '.join(written)}", flush=True)


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
  (work / "eval.json").write_text(json.dumps(out, indent=1) + "\n")
  _draw(config, spec, ema_model, sources[eval_split], preprocess(config), res, work)
  return {"eval": out}


def _images(spec, x):
  """Model-space images to uint8 for pictures ({0,1} or [-1,1])."""
  x = np.asarray(x)
  if spec.likelihood == "bernoulli":
    return evaluation.rescale_to_uint8(x, low=0.0, high=1.0)
  return evaluation.rescale_to_uint8(x)


def _save_samples(config, spec, model, work) -> pathlib.Path:
  """``samples.png``: one row of ``eval.num_samples`` samples per temperature (one compile)."""
  n = config.eval.num_samples
  sample = jax.jit(lambda key, t: model.sample(key, batch_size=n, temperature=t))
  key = jax.random.key(config.seed + 2)
  rows = [
    _images(spec, sample(jax.random.fold_in(key, i), jnp.float32(t)))
    for i, t in enumerate(config.eval.temperatures)
  ]
  path = work / "samples.png"
  evaluation.save_grid(rows, path, scale=max(1, 64 // spec.image_size))
  return path


def _draw(config, spec, model, source, prep, res, work):
  n = config.eval.num_samples
  key = jax.random.key(config.seed + 2)
  scale = max(1, 64 // spec.image_size)
  _save_samples(config, spec, model, work)
  batch = next(
    data.eval_batches(
      source, batch_size=n, preprocess=prep, seed=config.seed, process_index=0, process_count=1
    )
  )
  recon = jax.jit(lambda x, key: model.reconstruct(x, key))(
    jnp.asarray(batch["image"]), jax.random.fold_in(key, 99)
  )
  targets = batch["target"]
  evaluation.save_grid(
    [_images(spec, targets), _images(spec, recon)], work / "reconstructions.png", scale=scale
  )
  resolutions = [r for r, _ in spec.dec_pairs]
  if len(resolutions) != len(res.kl_per_block):
    resolutions = [0] * len(res.kl_per_block)
  evaluation.save_kl_plot(
    res.kl_per_block,
    resolutions,
    work / "kl_per_block.png",
    title=f"{config.data.name}: rate {res.rate:.4f} nats/dim",
  )


def _restore(config: ml_collections.ConfigDict, work: pathlib.Path):
  """``(spec, trainer, restored)`` from the newest readable checkpoint in ``work``."""
  spec = model_spec(config)
  trainer, state = _trainer_and_state(config, spec)
  ckpt = checkpoint.Checkpointer(work / "checkpoints")
  restored = ckpt.restore(state, config=json.loads(config.to_json()))
  ckpt.close()
  if restored is None:
    raise FileNotFoundError(f"no checkpoint in {work / 'checkpoints'}: run --mode=train first")
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
  spec, trainer, restored = _restore(config, work)
  sources = open_splits(config)
  summary = _evaluate_and_draw(config, spec, trainer, restored.state, sources, work, restored.step)
  summary["step"] = restored.step
  summary["provenance"] = provenance(config, sources)
  _report(summary, work, ["eval.json", *_PICTURES])
  return summary


def sample(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Writes ``samples.png`` from the newest checkpoint's EMA model."""
  work = pathlib.Path(workdir)
  spec, trainer, restored = _restore(config, work)
  path = os.fspath(_save_samples(config, spec, trainer.model(restored.state, ema=True), work))
  print(f"[hvae] wrote {path} (rows: temperatures {list(config.eval.temperatures)})", flush=True)
  return path


#: The modes ``python -m experiments.main --mode=...`` dispatches to.
MODES = {"train": train_and_evaluate, "eval": evaluate, "sample": sample}
