"""HVAE claim experiments (issue 6, items 2-5) run end to end at toy size."""

import json

import numpy as np
import pytest

from experiments.hvae_claims import config as claims_config
from experiments.hvae_claims import run


def test_probe_and_spearman_are_right_on_known_data():
  rng = np.random.default_rng(0)
  assert run.spearman([1, 2, 3, 4], [10, 20, 25, 40]) == pytest.approx(1.0)
  assert run.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
  x = rng.normal(size=(400, 5))
  y = x @ np.array([1.0, -2.0, 0.5, 0.0, 0.0])
  mask = np.arange(400) < 200
  assert run.ridge_probe(x, y, mask, lam=1e-6)["r2"] > 0.999
  assert run.ridge_probe(x, rng.permutation(y), mask)["r2"] < 0.1


@pytest.mark.slow
def test_small_runs_write_results(tmp_path, monkeypatch):
  cfg = claims_config.get_config("small")
  cfg.unlock()
  cfg.hvae.data.data_dir = str(tmp_path / "data")
  for name in claims_config.EXPERIMENTS:
    run.RUNNERS[name](cfg, tmp_path)
  sharing = json.loads((tmp_path / "sharing.json").read_text())
  assert [r["share"] for r in sharing["rows"]] == ["1"]
  assert sharing["rows"][0]["bits_per_dim"] > 0
  time_ = json.loads((tmp_path / "time.json").read_text())
  n = len(time_["resolutions"])
  for label in ("trained", "init"):
    assert len(time_["models"][label]["rms_posterior"]) == n
  pm = json.loads((tmp_path / "point_mass.json").read_text())
  assert {r["zeta"] for r in pm["rows"]} == {0.0, 1.0}
  for r in pm["rows"]:
    assert set(r["prior"]) == {str(t) for t in cfg.temperatures}
    assert abs(sum(r["prior"]["1.0"]["haar_spectrum"]) - 1) < 1e-5
  euler = json.loads((tmp_path / "euler.json").read_text())
  assert [r["eval_applications"] for r in euler["rows"]] == [3, 6, 12]
  assert len({r["trained"] for r in euler["rows"]}) == 1
  for name in ("sharing", "time", "point_mass", "euler"):
    assert (tmp_path / f"{name}.png").stat().st_size > 1000


def test_configs():
  for arg in (None, "all", "small", *claims_config.EXPERIMENTS):
    cfg = claims_config.get_config(arg)
    assert set(cfg.experiments) <= set(claims_config.EXPERIMENTS)
  with pytest.raises(ValueError, match="unknown experiment"):
    claims_config.get_config("clock")
