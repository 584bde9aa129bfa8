"""The Fashion-MNIST sharing study (issue 15) at toy size: rows, curves, IW bound, pictures,
verdict rules, the run budget and the reuse check, on a small synthetic copy of the dataset."""

import copy
import json
import math

import jax
import numpy as np
import pytest
from PIL import Image

from experiments.fashion_mnist import config as fashion_config
from experiments.hvae_claims import config as claims_config
from experiments.hvae_claims import fashion, run, runs
from mrflax import data, nn


def _rows(**bpd):
  """Synthetic rows: ``k1=(3.0, 3.01)`` -> two seeds of k = 1 with those bits/dim."""
  out = []
  for key, values in bpd.items():
    share, temb = key[1:].removesuffix("_time"), key.endswith("_time")
    for seed, v in enumerate(values):
      out.append(
        dict(
          run=f"{key}_s{seed}",
          variant=fashion.variant(share, temb),
          share=share,
          time_embedding=temb,
          seed=seed,
          params={"1": 100, "2": 60, "full": 20}[share] + (5 if temb else 0),
          test_bits_per_dim=v,
        )
      )
  return out


def test_verdict_rules():
  v = fashion.verdicts(_rows(k1=(3.00, 3.01), k2=(3.01, 3.02)))
  assert v["TS2_k2"]["verdict"] == "supported"  # gap 0.01 <= 2 x s.d. 0.00707
  assert v["TS2_k2"]["gap"] == pytest.approx(0.01)
  assert v["TS2_k2"]["spread"] == pytest.approx(0.01 / math.sqrt(2))
  assert fashion.verdicts(_rows(k1=(3.00, 3.001), k2=(3.02, 3.021)))["TS2_k2"]["verdict"] == (
    "mixed"  # gap 0.02 > 2 x 0.0007, but under 1% of 3.0
  )
  assert fashion.verdicts(_rows(k1=(3.0, 3.0), k2=(3.04, 3.04)))["TS2_k2"]["verdict"] == (
    "not supported"
  )
  one_seed = fashion.verdicts(_rows(k1=(3.0,), k2=(3.0,), kfull=(3.1,)))
  assert one_seed["TS2_k2"] == {"verdict": "pending"}  # needs both seeds
  assert one_seed["TS2_full"]["verdict"] == "not supported"
  assert one_seed["TS2_full"]["spread"] == 0.005  # one seed: the assumed spread
  assert one_seed["TS3_time"] == {"verdict": "pending"}
  t = fashion.verdicts(_rows(k1=(3.0,), kfull=(3.1,), kfull_time=(3.02,)))["TS3_time"]
  assert t["verdict"] == "not supported" and t["closed_fraction"] == pytest.approx(0.8)
  t = fashion.verdicts(_rows(k1=(3.0,), kfull=(3.1,), kfull_time=(3.09,)))["TS3_time"]
  assert t["verdict"] == "supported" and t["closed_fraction"] == pytest.approx(0.1)


def test_run_names_and_the_cpu_config():
  assert fashion.parse_run("kfull_time_s0") == dict(share="full", time_embedding=True, seed=0)
  assert fashion.parse_run("k2_s1") == dict(share="2", time_embedding=False, seed=1)
  with pytest.raises(ValueError, match="bad run name 'k2-s1'"):
    fashion.parse_run("k2-s1")
  c = fashion_config.get_config("cpu")
  assert (c.data.train_split, c.data.valid_split) == ("train[:55000]", "train[55000:]")
  spec = nn.get_preset(c.model.preset)
  counts = nn.spec_param_count(spec)
  assert counts.total == 619_218 and spec.num_applications == 20  # issue 15: >= 0.5M, >= 20
  assert sorted({r for r, _ in spec.dec_pairs}) == [1, 4, 8, 16, 32]
  assert fashion_config.get_config("cpu_shared2").model.share == "2"
  study = claims_config.get_config("fashion_sharing")
  assert study.hvae.to_dict() == c.to_dict()  # each run is exactly the documented cpu config
  assert len(study.sharing_runs) == 6


@pytest.mark.slow
def test_small_study_end_to_end(tmp_path):
  """One 4-step run of a tiny model (the other one stays pending: the budget), everything the
  study reports about it checked against the run's own files; then the reuse check."""
  rng = np.random.default_rng(0)
  data.import_arrays(
    "fashion_mnist",
    {
      "train": rng.integers(0, 256, (40, 28, 28, 1), dtype=np.uint8),
      "test": rng.integers(0, 256, (20, 28, 28, 1), dtype=np.uint8),
    },
    data_dir=tmp_path / "data",
  )
  cfg = claims_config.get_config("fashion_small")
  cfg.unlock()
  cfg.hvae.data.data_dir = str(tmp_path / "data")
  cfg.hvae.data.train_split = "train[:32]"
  cfg.hvae.data.valid_split = "train[32:]"
  cfg.max_new_runs = 1
  work = tmp_path / "work"
  with jax.threefry_partitionable(False):  # faster compiles; see hvae_claims_test
    run.RUNNERS["fashion_sharing"](cfg, work)

  d = json.loads((work / "fashion_sharing.json").read_text())
  assert [r["run"] for r in d["rows"]] == ["k1_s0"] and d["pending"] == ["kfull_s0"]
  (row,) = d["rows"]
  summary = json.loads((work / "k1_s0" / "summary.json").read_text())
  assert row["test_bits_per_dim"] == summary["eval"]["bits_per_dim"]
  assert (row["variant"], row["params"]) == ("k=1", summary["params"])
  assert summary["provenance"]["splits"] == {"train[:32]": 32, "train[32:]": 8, "test": 20}
  assert row["skipped"] == summary["skipped_updates"] and row["steps"] == 4
  curve = d["curves"]["k1_s0"]
  assert curve["step"] == [2, 4]
  evals = [m for m in runs.metrics(work, "k1_s0") if "eval/bits_per_dim" in m]
  assert curve["valid_bits_per_dim"] == [m["eval/bits_per_dim"] for m in evals]
  assert 0 <= curve["minutes"][0] <= curve["minutes"][1]
  assert row["best_valid_bits_per_dim"] == min(curve["valid_bits_per_dim"])
  assert d["verdicts"] == {k: {"verdict": "pending"} for k in ("TS2_k2", "TS2_full", "TS3_time")}
  assert d["best"] == {"unshared": "k1_s0"}
  iw = d["iw"]["k1_s0"]
  assert iw["num_examples"] == 16 and iw["num_samples"] == 4
  # log-mean-exp >= mean-log on the same samples: the IW bound is never looser
  assert iw["bits_per_dim"] <= iw["elbo_bits_per_dim"] + 1e-6
  assert d["pictures"] == ["fashion_samples_k1_s0.png", "fashion_reconstructions_k1_s0.png"]
  for name in d["pictures"]:
    with Image.open(work / name) as im:
      assert len(np.unique(np.asarray(im.convert("L")))) > 10
  for name in ("fashion_sharing.png", "fashion_sharing_curves.png"):
    with Image.open(work / name) as im:
      assert len(np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0)) > 50
  # the probes read the first probe_images test images
  c = runs.run_config(cfg, **fashion.parse_run("k1_s0"))
  assert runs.test_arrays(c, cfg.probe_images)["image"].shape == (16, 32, 32, 1)

  # a finished run is reused only with the config it was trained with
  changed = copy.deepcopy(cfg)
  changed.hvae.train.steps = 6
  with pytest.raises(ValueError, match=r"run 'k1_s0' .*\(train\.steps: 4 -> 6\)"):
    run.RUNNERS["fashion_sharing"](changed, work)
  # a report-only call (budget 0) trains nothing and still lists the pending run
  cfg.max_new_runs = 0
  run.RUNNERS["fashion_sharing"](cfg, work)
  again = json.loads((work / "fashion_sharing.json").read_text())
  assert again["pending"] == ["kfull_s0"] and again["rows"] == d["rows"]
