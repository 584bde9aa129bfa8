"""train / eval / sample an HVAE from a ConfigDict: the only place configs meet the library.

``train_and_evaluate(config, workdir)`` trains (resuming from ``workdir``), evaluates the EMA model
on the test split, and writes into ``workdir``: ``config.json``, ``metrics.jsonl``,
``checkpoints/``, ``eval.json``, ``samples.png`` (one row per temperature),
``reconstructions.png``, ``kl_per_block.png`` and ``summary.json`` (final metrics, dataset
provenance, parameter count and a digest of the final parameters).
"""

from __future__ import annotations

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

from mrflax import data, nn
from mrflax import eval as mreval
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
  )


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


def provenance(config: ml_collections.ConfigDict, sources: dict[str, Any]) -> dict[str, Any]:
  spec = data.get_spec(config.data.name)
  return {
    "dataset": config.data.name,
    "tfds_name": spec.tfds_name,
    "version": spec.version,
    "data_dir": str(config.data.data_dir),
    "bits": config.data.bits,
    "binarize": config.data.binarize,
    "pad_to": config.data.pad_to,
    "splits": {k: len(v) for k, v in sources.items()},
  }


def hvae_loss(model, batch, key):
  return model.loss(batch["image"], batch["target"], key)


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
  sources = {s: open_split(config, s) for s in data.get_spec(config.data.name).splits}
  train_split = data.get_spec(config.data.name).train_split
  prep = preprocess(config)
  train_iter = iter(
    data.train_dataset(
      sources[train_split], global_batch=config.train.batch_size, seed=config.seed, preprocess=prep
    )
  )
  result = loop.fit(
    model_fn=lambda rngs: nn.HVAE(spec, rngs=rngs),
    loss_fn=hvae_loss,
    step_config=step_config(config),
    loop=loop_config(config),
    train_iter=train_iter,
    workdir=str(work),
    config=json.loads(config.to_json()),
  )
  if result.preempted:
    return {"preempted": True, "step": int(result.state.step)}
  summary = _evaluate_and_draw(config, spec, result.trainer, result.state, sources, work)
  summary.update(
    train_metrics=result.metrics,
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
  _report(summary, work)
  return summary


def _report(summary, work):
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
  print(
    f"[hvae] wrote {work}/samples.png, reconstructions.png, kl_per_block.png, summary.json",
    flush=True,
  )


def _evaluate_and_draw(config, spec, trainer, state, sources, work) -> dict[str, Any]:
  ema_model = trainer.model(state, ema=True)
  eval_split = data.get_spec(config.data.name).eval_split
  prep = preprocess(config)

  @jax.jit
  def terms(batch, key):
    return mreval.hvae_terms(ema_model, batch, key)

  batches = data.eval_batches(
    sources[eval_split],
    batch_size=config.eval.batch_size,
    preprocess=prep,
    seed=config.seed,
    process_index=0,
    process_count=1,
  )
  res = mreval.evaluate_elbo(
    terms, batches, key=jax.random.key(config.seed + 1), data_dims=spec.data_dims
  )
  (work / "eval.json").write_text(json.dumps(res.to_dict(), indent=1) + "\n")
  _draw(config, spec, ema_model, sources[eval_split], prep, res, work)
  return {"eval": res.to_dict()}


def _images(spec, x):
  """Model-space images to uint8 for pictures ({0,1} or [-1,1])."""
  x = np.asarray(x)
  if spec.likelihood == "bernoulli":
    return mreval.to_uint8(x, low=0.0, high=1.0)
  return mreval.to_uint8(x)


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
  mreval.save_grid(rows, path, scale=max(1, 64 // spec.image_size))
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
  mreval.save_grid(
    [_images(spec, targets), _images(spec, recon)], work / "reconstructions.png", scale=scale
  )
  resolutions = [r for r, _ in spec.dec_pairs]
  if len(resolutions) != len(res.kl_per_block):
    resolutions = [0] * len(res.kl_per_block)
  mreval.save_kl_plot(
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
  restored = ckpt.restore(state)
  ckpt.close()
  if restored is None:
    raise FileNotFoundError(f"no checkpoint in {work / 'checkpoints'}: run --mode=train first")
  return spec, trainer, restored


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Evaluates the newest checkpoint in ``workdir`` (EMA) and redraws the pictures."""
  work = pathlib.Path(workdir)
  spec, trainer, restored = _restore(config, work)
  sources = {s: open_split(config, s) for s in data.get_spec(config.data.name).splits}
  summary = _evaluate_and_draw(config, spec, trainer, restored.state, sources, work)
  summary["step"] = restored.step
  summary["provenance"] = provenance(config, sources)
  _report(summary, work)
  return summary


def sample(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Writes ``samples.png`` from the newest checkpoint's EMA model."""
  work = pathlib.Path(workdir)
  spec, trainer, restored = _restore(config, work)
  path = os.fspath(_save_samples(config, spec, trainer.model(restored.state, ema=True), work))
  print(f"[hvae] wrote {path} (rows: temperatures {list(config.eval.temperatures)})")
  return path
