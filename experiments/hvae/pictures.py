"""What the HVAE runner prints and draws: the final report, ``samples.png`` (one row per
temperature), ``reconstructions.png`` and ``kl_per_block.png``."""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from mrflax import data, evaluation

PICTURES = ("samples.png", "reconstructions.png", "kl_per_block.png")


def report(summary, work, written):
  """Prints the test ELBO (and IW bound, KL per resolution) and the files written."""
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


def _images(spec, x):
  """Model-space images to uint8 for pictures ({0,1} or [-1,1])."""
  x = np.asarray(x)
  if spec.likelihood == "bernoulli":
    return evaluation.rescale_to_uint8(x, low=0.0, high=1.0)
  return evaluation.rescale_to_uint8(x)


def save_samples(config, spec, model, work) -> pathlib.Path:
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


def draw(config, spec, model, source, prep, res, work):
  n = config.eval.num_samples
  key = jax.random.key(config.seed + 2)
  scale = max(1, 64 // spec.image_size)
  save_samples(config, spec, model, work)
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
