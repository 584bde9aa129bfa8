"""GHM experiments E1-E4 run end to end at toy sizes and write their JSON and figures."""

import json

import pytest

from experiments.ghm import config as ghm_config
from experiments.ghm import run


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
  assert "Command" in ghm_config.__doc__ or "python -m experiments.ghm.run" in ghm_config.__doc__


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
  assert 0.0 <= rows[1]["copy_fraction"] <= 1.0
  assert {"e1_ntrain.png", "e3_ntrain.png"} <= {p.name for p in tmp_path.glob("*.png")}
