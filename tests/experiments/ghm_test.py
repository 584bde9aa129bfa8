"""GHM experiments E1-E4 run end to end at toy sizes and write their JSON and figures."""

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.ghm import common, run
from experiments.ghm import config as ghm_config
from mrflax import ghm as G


@pytest.mark.slow
def test_small_e1_to_e4_write_results(tmp_path):
  for name in ("e1", "e2", "e3", "e4"):
    cfg = ghm_config.get_config(f"small_{name}")
    run_fn = {"e1": run.run_e1, "e2": run.run_e2, "e3": run.run_e3, "e4": run.run_e4}[name]
    run_fn(cfg, str(tmp_path))
  e1 = json.loads((tmp_path / "e1_denoising.json").read_text())
  rows = e1["rows"]
  for row in rows:
    for key in ("sigma", "mse_unet", "mmse_bp", "mse_local"):
      assert key in row
    assert row["mmse_bp"] <= row["mse_local"] + 1e-6  # BP is the Bayes denoiser
  # every network is a checkpoint of its own; E4 loaded E3's U-Net instead of training another
  assert len(list((tmp_path / "nets").glob("e3_unet-*/checkpoints"))) == 1
  pngs = sorted(p.name for p in tmp_path.glob("*.png"))
  assert {
    "e1_denoising.png",
    "e2_classification.png",
    "e3_diffusion.png",
    "e4_forward_backward.png",
  } <= set(pngs)


def test_configs_and_unknown_variant():
  for arg in (*ghm_config.EXPERIMENTS, "ci", "small_e1", "small_e3_ntrain"):
    cfg = ghm_config.get_config(arg)
    assert cfg.experiment in ghm_config.EXPERIMENTS
  with pytest.raises(ValueError, match="unknown config variant"):
    ghm_config.get_config("e9")


def test_docstring_documents_every_variant_and_only_real_ones():
  # the bullet list names every experiment (and ci), and every command in it loads
  bullets = re.findall(r"^\* ``(\w+)``", ghm_config.__doc__, flags=re.M)
  assert sorted(bullets) == sorted([*ghm_config.EXPERIMENTS, "ci"])
  commands = re.findall(r"config\.py:(\w+)", ghm_config.__doc__)
  assert commands  # the e1 and e1_exact_bp commands
  for arg in commands:
    assert ghm_config.get_config(arg).experiment == arg


def test_sample_metrics_on_known_sequences():
  # 5 sequences whose validity, roots, distinctness and membership in a training set are known
  # by construction: two copies of train[0], train[1], a novel valid one, and one whose first
  # leaf pair is the right-hand side of no rule (invalid from the first parse step on)
  ghm = common.rhm(ghm_config.get_config("small_e3_ntrain").data)
  roots, *_, leaves = (np.asarray(a) for a in G.sample_levels(jax.random.key(0), ghm, 64))
  train = leaves[:4]
  seen = {tuple(r) for r in train.tolist()}
  novel = next(i for i, r in enumerate(leaves.tolist()) if tuple(r) not in seen)
  bottom = np.asarray(ghm.kernels[-1])  # [v, v**s]: column a * v + b is the pair (a, b)
  bad_pair = int(np.flatnonzero(bottom.max(axis=0) == 0)[0])
  invalid = leaves[0].copy()
  invalid[:2] = divmod(bad_pair, ghm.v)
  x = np.stack([train[0], train[0], train[1], leaves[novel], invalid])
  m = common.sample_metrics(ghm, jnp.asarray(x), jnp.asarray(train))
  assert m["validity_per_level"] == [0.8] * ghm.num_levels
  assert m["distinct_fraction"] == 0.8
  assert m["copy_fraction"] == 0.6
  hist = np.bincount(roots[[0, 0, 1, novel]], minlength=ghm.num_classes) / 4
  assert m["root_tv"] == pytest.approx(0.5 * np.abs(hist - 1 / ghm.num_classes).sum(), abs=1e-4)
  assert "copy_fraction" not in common.sample_metrics(ghm, jnp.asarray(x))


@pytest.mark.slow
def test_small_sample_size_sweeps_write_results(tmp_path):
  cfg = ghm_config.get_config("small_e1_ntrain")
  cfg.e1.n_train_sweep = (50,)
  cfg.eval.sigmas = (0.75,)
  run.run_e1_ntrain(cfg, str(tmp_path))
  row = json.loads((tmp_path / "e1_ntrain.json").read_text())["results"]["50"]["rows"][0]
  assert row["mmse_bp"] <= row["mse_memorise"] + 1e-6  # BP is the Bayes denoiser
  cfg = ghm_config.get_config("small_e3_ntrain")
  cfg.e3.sweep_online = False
  run.run_e3_ntrain(cfg, str(tmp_path))
  rows = json.loads((tmp_path / "e3_ntrain.json").read_text())["rows"]
  assert [r["sampler"] for r in rows] == ["oracle", "n50"]
  assert rows[0]["validity_per_level"][-1] == 1.0  # the BP oracle samples valid sequences
  # the copy fraction against its own training set, computed the two ways run_e3_ntrain does
  assert rows[1]["copy_fraction"] == rows[1]["copy_fraction_vs_sets"]["50"]
  assert {"e1_ntrain.png", "e3_ntrain.png"} <= {p.name for p in tmp_path.glob("*.png")}
