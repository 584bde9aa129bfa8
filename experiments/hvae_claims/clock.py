"""The ``time`` experiment (issue 6 item 2, THEORY §5.4 D1/D2): does the decoder state carry
its depth? Per-block state RMS along depth for posterior passes and prior samples (trained vs
init), Spearman correlation with depth within each resolution, and a ridge probe predicting the
block index from the state (held-out R², init and shuffled-label controls), on the unshared
seed-0 run of ``sharing``."""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments.hvae_claims import plots, runs
from mrflax import evaluation, nn


def _rms(states) -> np.ndarray:
  return np.asarray(evaluation.state_rms(states), np.float64)


def run_time(cfg, workdir: pathlib.Path) -> dict:
  seed = cfg.seeds[0]
  name = f"k1_s{seed}"
  c = runs.run_config(cfg, seed=seed, share="1")
  runs.train_run(c, workdir, name)
  spec, trained = runs.ema_model(c, workdir, name)
  # committed to the restored model's device, so one compilation serves both models
  init = jax.device_put(nn.HVAE(spec, rngs=nnx.Rngs(seed)), jax.tree.leaves(trained)[0].sharding)
  arrays = runs.test_arrays(c, cfg.probe_images)
  x = jnp.asarray(arrays["image"])
  resolutions = [r for r, _ in spec.dec_pairs]
  key = jax.random.key(seed + 10)
  result: dict[str, Any] = {"resolutions": resolutions, "models": {}}
  for label, model in (("trained", trained), ("init", init)):
    post = runs.posterior_pass(model, x, key)[:-1]
    entry = {
      "rms_posterior": _rms(post).tolist(),
      "spearman_posterior": evaluation.spearman_within(_rms(post), resolutions),
      "probe_posterior": evaluation.depth_probe(post, resolutions, seed=seed),
    }
    for t in (1.0, 0.8):
      pri, _ = runs.prior_states(model, cfg.num_prior_samples, t, key)
      entry[f"rms_prior_t{t}"] = _rms(pri[:-1]).tolist()
      entry[f"spearman_prior_t{t}"] = evaluation.spearman_within(_rms(pri[:-1]), resolutions)
    result["models"][label] = entry
  tr, it = result["models"]["trained"], result["models"]["init"]
  # the first state at init is the zero start constant: no ratio there (null in the JSON)
  result["rms_ratio_trained_over_init"] = runs.none_for_nan(
    evaluation.exposure_ratio(np.asarray(tr["rms_posterior"]), np.asarray(it["rms_posterior"]))
  )
  runs.write(cfg, workdir, "time", result, plots.time(result))
  return result
