"""Issue 6 item 1 (U-Nets and the Haar representation): the small run end to end, and the rules."""

import json

import numpy as np
import pytest
from PIL import Image

from experiments.unet_haar import analysis, run
from experiments.unet_haar import config as uh_config
from experiments.unet_haar.verdicts import verdicts

VERDICTS = {"supported", "mixed", "not supported"}


@pytest.mark.slow
def test_small_run_writes_json_figures_and_exact_invariants(tmp_path):
  cfg = uh_config.get_config("small")
  run.run(cfg, str(tmp_path))
  d = json.loads((tmp_path / "small.json").read_text())
  # figures at dpi 80 (no tight bbox): their pixel sizes follow from figsize; the examples grid
  # has a 1.3 x 1.4 inch panel per column (noisy, full, 3 skip modes, clean) and per row (pooling
  # x example: avg and conv, one example each)
  rows = len(cfg.poolings) * cfg.eval.n_examples
  assert rows == 2
  for name, size in (
    ("small_u1.png", (13 * 80, 3.8 * 80)),
    ("small_u2.png", (13 * 80, 3.8 * 80)),
    ("small_examples.png", (1.3 * 6 * 80, 1.4 * rows * 80)),
  ):
    with Image.open(tmp_path / name) as im:
      assert im.size == tuple(round(v) for v in size), name
      pixels = np.asarray(im.convert("RGB")).reshape(-1, 3)
    assert len(np.unique(pixels, axis=0)) > 50, name  # drawn, not a blank canvas
  n_levels = len(cfg.model.widths) - 1
  assert [lvl["j"] for lvl in d["levels"]] == [2, 1]  # finest first
  assert set(d["summary"]) == {"avg", "conv", "avg/none"}
  assert d["groups"]["avg/none"] == {"pooling": "avg", "skips": False}
  n_seeds = len(cfg.seeds)
  for label, s in d["summary"].items():
    assert len(s["loss"]["full"]["seeds"]) == n_seeds
    for key in ("skip_w", "coarse_w", "leak"):
      assert len(s[key]["mean"]) == n_levels
    assert all(0.0 <= v <= 1.0 for v in s["skip_w"]["mean"])
    # Lemma 1: nearest upsampling + 1x1 conv keeps the coarse path in ι(V_{j-1}), any pooling
    assert max(s["coarse_w_max"]["mean"]) < 1e-10, label
    # Haar spectra are distributions over the bands; the error shares too
    for key in ("spectrum_target", "spectrum_output", "error_share"):
      assert len(s[key]["mean"]) == len(d["band_names"])
      assert sum(s[key]["mean"]) == pytest.approx(1.0, abs=1e-5)
  for label in ("avg", "avg/none"):  # average pooling is P: Down(h) = Down(ιPh) exactly
    assert max(np.abs(d["summary"][label]["leak"]["seeds"]).ravel()) < 1e-10
  assert min(d["summary"]["conv"]["leak"]["mean"]) > 1e-4  # a strided conv sees the details
  deltas = d["summary"]["avg"]["delta_loss"]
  assert set(deltas) == {"all:detail", "all:approx", "all:none"}  # per_level=False in small
  full = d["summary"]["avg"]["loss"]["full"]["seeds"]
  none = d["summary"]["avg"]["loss"]["all:none"]["seeds"]
  assert deltas["all:none"]["seeds"] == pytest.approx(np.subtract(none, full).tolist(), abs=1e-6)
  assert set(d["verdicts"]) == {
    "a_detail_removal_hurts_far_more",
    "u3_clean_split_for_avg_only",
    "lemma1_coarse_has_no_detail",
  }
  assert all(v["verdict"] in VERDICTS for v in d["verdicts"].values())
  assert d["verdicts"]["lemma1_coarse_has_no_detail"]["verdict"] == "supported"
  # every training went through fit: checkpoints (Orbax step folders) and its metrics records
  for label, seed in (("avg", 0), ("avg_none", 1)):
    rundir = tmp_path / "train" / label / f"seed{seed}"
    assert (rundir / "checkpoints" / str(cfg.train.steps)).is_dir(), rundir
    steps = [json.loads(r)["step"] for r in (rundir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]  # 3 steps: the last 10% window is one step
  # the counts the hand-written loop's inline count recorded for these widths
  assert d["n_params"] == {"avg": 7913, "conv": 8297, "avg/none": 7785}


def _group(loss_seeds, deltas=None, leak=(0.0, 0.0)):
  """A summary entry with the fields verdicts() reads, built from per-seed numbers."""
  entry = dict(
    loss={"full": analysis.mean_sd(loss_seeds)},
    leak=analysis.mean_sd([list(leak)] * len(loss_seeds)),
    coarse_w_max=analysis.mean_sd([[0.0, 0.0]] * len(loss_seeds)),
  )
  entry["delta_loss"] = {k: analysis.mean_sd(v) for k, v in (deltas or {}).items()}
  return entry


def test_verdict_rules_on_synthetic_summaries():
  cfg = uh_config.get_config("fashion")
  clean = {"all:detail": [0.001, 0.002, 0.001], "all:approx": [0.1, 0.2, 0.15]}
  blurred = {"all:detail": [0.05, 0.06, 0.05], "all:approx": [0.1, 0.1, 0.1]}
  summary = {
    "avg": _group([0.030, 0.031, 0.032], clean),
    "max": _group([0.030, 0.031, 0.032], blurred, leak=(0.3, 0.2)),
    "conv": _group([0.030, 0.031, 0.032], blurred, leak=(0.5, 0.4)),
    "avg/detail": _group([0.031, 0.030, 0.032]),  # within spread of full
    "avg/approx": _group([0.080, 0.081, 0.079]),  # = none
    "avg/none": _group([0.080, 0.082, 0.080]),
  }
  v = verdicts(summary, cfg)
  assert {k: x["verdict"] for k, x in v.items()} == {
    "b_detail_only_matches_full": "supported",
    "b_approx_only_as_bad_as_none": "supported",
    "a_detail_removal_hurts_far_more": "supported",
    "u3_clean_split_for_avg_only": "supported",
    "lemma1_coarse_has_no_detail": "supported",
  }
  # the opposite outcomes
  summary["avg/detail"] = _group([0.060, 0.061, 0.062])  # halfway to no skips
  summary["avg/approx"] = _group([0.035, 0.034, 0.036])  # nearly full
  summary["avg"]["delta_loss"] = {k: analysis.mean_sd(x) for k, x in blurred.items()}
  summary["avg"]["delta_loss"]["all:approx"] = analysis.mean_sd([0.01, 0.01, 0.01])
  v = verdicts(summary, cfg)
  assert v["b_detail_only_matches_full"]["verdict"] == "not supported"
  assert v["b_approx_only_as_bad_as_none"]["verdict"] == "not supported"
  assert v["a_detail_removal_hurts_far_more"]["verdict"] == "not supported"
  assert v["u3_clean_split_for_avg_only"]["verdict"] == "mixed"  # leaks fine, split not
  # the same rules for the finest-level-only retrainings
  cfg = uh_config.get_config("fashion_finest")
  finest = {"avg": summary["avg"]}
  finest |= {f"avg/j2:{m}": summary[f"avg/{m}"] for m in ("detail", "approx", "none")}
  v = verdicts(finest, cfg)
  assert v["b_finest_detail_only_matches_full"]["verdict"] == "not supported"
  assert v["b_finest_approx_only_as_bad_as_none"]["verdict"] == "not supported"
  assert "b_detail_only_matches_full" not in v and "u3_clean_split_for_avg_only" not in v


def test_skip_variants_and_groups():
  variants = analysis.skip_variants(2, True)
  assert variants["full"] == ("full", "full")
  assert variants["all:approx"] == ("approx", "approx")
  assert variants["j2:detail"] == ("detail", "full")  # j = 2 is the finest level (index 0)
  assert variants["j1:none"] == ("full", "none")
  assert len(variants) == 1 + 3 + 2 * 3
  assert list(analysis.skip_variants(3, False)) == ["full", "all:detail", "all:approx", "all:none"]
  labels = {g: (a, m) for g, a, m in run.groups(uh_config.get_config("fashion"))}
  assert list(labels) == ["avg", "max", "conv", "avg/detail", "avg/approx", "avg/none"]
  assert labels["avg/none"] == ({"pooling": "avg", "skips": False}, None)
  assert labels["avg/detail"] == ({"pooling": "avg", "skip_mode": "detail"}, None)
  labels = {g: (a, m) for g, a, m in run.groups(uh_config.get_config("fashion_finest"))}
  assert list(labels) == ["avg", "avg/j2:detail", "avg/j2:approx", "avg/j2:none"]
  assert labels["avg/j2:approx"] == ({"pooling": "avg"}, ("approx", "full"))
  assert [analysis.dyadic_levels(n) for n in (28, 32, 8, 7)] == [2, 5, 3, 0]


def test_configs_and_unknown_variant():
  for arg in uh_config.VARIANTS:
    cfg = uh_config.get_config(arg)
    assert len(cfg.seeds) >= 2 and cfg.eval.n_features <= cfg.eval.n_test
  assert uh_config.get_config(None).name == "fashion"
  with pytest.raises(ValueError, match="unknown config variant"):
    uh_config.get_config("cifar")
  assert "python -m experiments.main" in uh_config.__doc__


def test_batches_follow_the_seed_and_resume_exactly():
  x = np.arange(10, dtype=np.float32)[:, None]
  it = run.Batches(x, 4, seed=3)
  first = [next(it)["x"][:, 0].tolist() for _ in range(5)]
  # two batches of 4 per permutation of 10; the third would run past the end: a new permutation
  rng = np.random.default_rng(3)
  perms = [rng.permutation(10) for _ in range(3)]
  assert first[0] == perms[0][:4].tolist() and first[1] == perms[0][4:8].tolist()
  assert first[2] == perms[1][:4].tolist() and first[4] == perms[2][:4].tolist()
  resumed = run.Batches(x, 4, seed=3)
  resumed.set_state(json.loads(json.dumps(it.get_state())))  # through the checkpoint's JSON
  fresh = run.Batches(x, 4, seed=3)
  for _ in range(5):
    next(fresh)
  assert resumed.get_state() == {"drawn": 5}
  assert next(resumed)["x"].tolist() == next(fresh)["x"].tolist() == next(it)["x"].tolist()


def test_loop_windows_tile_the_last_tenth():
  for steps, window in ((600, 60), (1000, 100), (3, 1), (25, 1)):
    cfg = uh_config.get_config("fashion")
    cfg.train.steps = steps
    loop = run.loop_config(cfg, seed=2)
    assert loop.log_every == window and loop.seed == 2
    assert (steps - max(steps // 10, 1)) % loop.log_every == 0
    assert loop.checkpoint_every % loop.log_every == 0 or loop.checkpoint_every == steps
  assert run.loop_config(uh_config.get_config("fashion"), 0).checkpoint_every == 240


def test_load_images_digits_is_the_importer_split():
  from mrflax.data import digits_arrays

  cfg = uh_config.get_config("digits")
  train, test = run.load_images(cfg.data)
  ref = digits_arrays(seed=cfg.data.split_seed)
  assert train.shape == (1438, 8, 8, 1) and test.shape == (359, 8, 8, 1)
  assert train.dtype == np.float32 and train.min() == -1.0 and train.max() == 1.0
  np.testing.assert_array_equal(test, ref["test"][0] / np.float32(127.5) - 1)
  cfg.data.pad_to = 16
  padded, _ = run.load_images(cfg.data)
  assert padded.shape == (1438, 16, 16, 1)
  cfg.data.name = "cifar"
  with pytest.raises(ValueError, match=r"data\.name must be"):
    run.load_images(cfg.data)


def test_load_images_fashion_missing_folder_says_how_to_get_it(tmp_path):
  cfg = uh_config.get_config("fashion")
  cfg.data.source = str(tmp_path / "nope")
  with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist") as err:
    run.load_images(cfg.data)
  assert str(tmp_path / "nope") in str(err.value)
