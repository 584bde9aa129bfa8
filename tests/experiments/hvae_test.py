"""The HVAE experiment end to end on the digits: train (with resume), eval and sample modes."""

import importlib
import json
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from experiments.digits import config as digits_config
from experiments.hvae import from_config, train
from mrflax import data, evaluation, nn


def tiny_config(data_dir, steps=4):
  c = digits_config.get_config("tiny")
  c.model.preset = "tiny8"
  c.data.data_dir = str(data_dir)
  c.train.steps = steps
  c.train.steps_per_call = 2
  c.train.log_every = 2
  c.train.checkpoint_every = 2
  c.train.eval_every = 2
  c.train.batch_size = 8
  c.eval.batch_size = 64
  c.eval.num_samples = 3
  c.eval.temperatures = (1.0, 0.5)
  return c


@pytest.mark.slow
def test_train_evaluate_resume_and_cli_modes(tmp_path, capsys):
  work = tmp_path / "run"
  summary = train.train_and_evaluate(tiny_config(tmp_path / "data"), str(work))
  out = capsys.readouterr().out
  assert "bits/dim" in out and "parameters" in out
  assert summary["step"] == 4 and summary["eval"]["num_examples"] == 359
  assert summary["provenance"]["dataset"] == "digits"
  assert summary["provenance"]["splits"] == {"train": 1438, "test": 359}
  assert summary["provenance"]["roles"] == {"train": "train", "valid": "test", "eval": "test"}
  assert summary["provenance"]["split_rule"] == "the dataset's stored splits"
  assert set(summary["eval"]["bits_per_resolution"]) == {"1", "4", "8"}  # tiny8's resolutions
  assert sum(summary["eval"]["kl_per_resolution"].values()) == pytest.approx(
    summary["eval"]["rate"]
  )
  # periodic evaluation at steps 2 and 4: logged with the eval/ prefix, best state kept
  records = [json.loads(x) for x in (work / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records if "eval/loss" in r] == [2, 4]
  assert summary["best_valid_loss"] == min(r["eval/loss"] for r in records if "eval/loss" in r)
  assert (work / "checkpoints" / "best").is_dir()
  assert any(p.name.startswith("events.out.tfevents") for p in work.iterdir())
  assert len(summary["params_digest"]) == 64
  assert [r["step"] for r in records if "loss" in r] == [2, 4]  # log_every=2
  cfg = tiny_config(tmp_path / "data")
  assert json.loads((work / "config.json").read_text()) == json.loads(cfg.to_json())
  assert json.loads((work / "eval.json").read_text()) == summary["eval"]
  assert json.loads((work / "summary.json").read_text()) == json.loads(json.dumps(summary))

  # The reported test ELBO is the EMA model's of the saved step-4 state (evaluated again here),
  # and training went downhill: evaluated the same way (test split, same keys), the raw
  # parameters after 4 steps beat the initialisation by a margin (0.049 bits/dim measured), and
  # the EMA (decay 0.995: ~2 % of the way from the initialisation after 4 steps) lies between
  # them. (8 bits/dim, uniform over 256 levels, would be no bound: the untrained model already
  # gets 5.05 on digits, whose pixels take 17 levels.)
  spec, trainer, restored = train.restore(cfg, work)
  source = from_config.open_splits(cfg)["test"]

  def bits_per_dim(model):
    res = train.evaluate_split(cfg, spec, model, source, key=jax.random.key(cfg.seed + 1))
    return res.bits_per_dim

  ema = bits_per_dim(trainer.model(restored.state, ema=True))
  raw = bits_per_dim(trainer.model(restored.state))
  init = bits_per_dim(nn.HVAE(spec, rngs=nnx.Rngs(cfg.seed)))  # fit's initialisation
  assert summary["eval"]["bits_per_dim"] == pytest.approx(ema, rel=1e-9)
  assert raw < init - 0.02, (raw, init)
  assert raw < ema < init, (raw, ema, init)

  # Pictures, decoded: grids of 8x8 images upscaled 8x with a 1-pixel white pad (8 after
  # upscaling); two rows (temperatures, or targets over reconstructions) of eval.num_samples = 3
  size = (8 * (3 * 9 + 1), 8 * (2 * 9 + 1))
  cells = {}
  for name in ("samples", "reconstructions"):
    with Image.open(work / f"{name}.png") as im:
      assert (im.mode, im.size) == ("L", size), name
      blocks = np.asarray(im).reshape(19, 8, 28, 8)
    assert (blocks == blocks[:, :1, :, :1]).all(), name  # 8x8 blocks of one value (upscaling)
    cells[name] = blocks[:, 0, :, 0]
    assert (cells[name][::9] == 255).all() and (cells[name][:, ::9] == 255).all(), name  # pads
  # the top row of reconstructions.png holds the first three test images themselves
  batch = next(
    data.eval_batches(source, batch_size=3, preprocess=from_config.preprocess(cfg), seed=cfg.seed)
  )
  top = cells["reconstructions"][1:9, 1:28].reshape(8, 3, 9)[:, :, :8].transpose(1, 0, 2)
  np.testing.assert_array_equal(top, evaluation.rescale_to_uint8(batch["target"][..., 0]))
  with Image.open(work / "kl_per_block.png") as im:
    assert im.size == (500, 300)  # save_kl_plot: 5 x 3 inches at dpi 100 for 4 blocks

  # resume: a longer run continues from the step-4 checkpoint
  longer = train.train_and_evaluate(tiny_config(tmp_path / "data", steps=6), str(work))
  assert longer["resumed_from"] == 4 and longer["step"] == 6

  # the CLI's eval and sample modes on the same workdir
  flags = [
    "--config=experiments/digits/config.py:tiny",
    "--config.model.preset=tiny8",
    f"--config.data.data_dir={tmp_path / 'data'}",
    f"--workdir={work}",
    "--config.eval.num_samples=2",
  ]
  iw = ["--config.eval.iw_samples=4", "--config.eval.iw_chunk=3"]
  for mode, expect, extra in (
    ("eval", "importance-weighted bound (K=4, chunk 3)", iw),
    ("sample", "samples.png", []),
  ):
    proc = subprocess.run(
      [sys.executable, "-m", "experiments.main", f"--mode={mode}", *flags, *extra],
      capture_output=True,
      text=True,
      timeout=600,
      check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert expect in proc.stdout
  result = json.loads((work / "eval.json").read_text())
  assert result["iw"]["num_samples"] == 4 and result["iw"]["chunk"] == 3
  assert result["iw"]["num_examples"] == 359 == result["num_examples"]
  # the K = 4 bound is below the single-sample negative ELBO (same model, many images)
  assert result["iw"]["nats_per_dim"] < result["nats_per_dim"]


def test_config_is_locked_and_variants_are_checked(tmp_path):
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.main",
      "--config=experiments/digits/config.py",
      "--config.train.stepz=3",
      f"--workdir={tmp_path}",
    ],
    capture_output=True,
    text=True,
    timeout=120,
    check=False,
  )
  assert proc.returncode != 0 and "stepz" in proc.stderr
  with pytest.raises(ValueError, match="unknown variant 'nope'"):
    digits_config.get_config("nope")


CONFIGS = ["digits", "fashion_mnist", "mnist", "vdvae_cifar10", "imagenet32"]


@pytest.mark.parametrize("name", CONFIGS)
def test_every_training_config_is_complete(name):
  module = importlib.import_module(f"experiments.{name}.config")
  for word in ("Command:", "Hardware", "Expected"):
    assert word in module.__doc__, (name, word)
  for variant in (None, "shared", "tiny"):
    c = module.get_config(variant)
    for key in (
      "seed",
      "train.steps",
      "train.batch_size",
      "train.log_every",
      "train.checkpoint_every",
      "train.eval_every",
    ):
      node = c
      for part in key.split("."):
        node = node[part]
      assert node is not None and node != "", (name, key)
    spec = from_config.model_spec(c)  # builds and validates the model spec
    from_config.step_config(c)
    from_config.loop_config(c)
    from_config.preprocess(c)
    assert spec.share == (1 if variant != "shared" else spec.share)
  assert from_config.model_spec(module.get_config("shared")).share != 1


def test_shared_cifar10_has_about_half_the_parameters():
  from experiments.vdvae_cifar10 import config as c10
  from mrflax import nn

  full = nn.spec_param_count(from_config.model_spec(c10.get_config())).total
  shared = nn.spec_param_count(from_config.model_spec(c10.get_config("shared"))).total
  assert full == 39_145_700
  assert 0.45 < shared / full < 0.55  # THEORY Table 5.1: k = 3 gives 19.35M (49 %)


def test_model_config_is_routed_to_spec_and_policy():
  """config.model: architecture keys -> HVAESpec, execution keys -> ExecPolicy."""
  c = digits_config.get_config()
  c.model.exec_mode = "scan"
  c.model.overrides = ml_collections.ConfigDict(
    dict(width=16, conv_backward="xla", scan_unroll=2, remat="block", compute_dtype="bfloat16")
  )
  spec, policy = from_config.model_spec(c), from_config.exec_policy(c)
  assert spec == nn.get_preset("digits8", width=16)
  assert policy == nn.ExecPolicy(
    exec_mode="scan", conv_backward="xla", scan_unroll=2, remat="block", compute_dtype="bfloat16"
  )
  # the old execution mode "remat" is scan with block remat (per-resolution policies kept)
  c = digits_config.get_config()
  c.model.exec_mode = "remat"
  assert from_config.exec_policy(c) == nn.ExecPolicy(exec_mode="scan", remat="block")
  c.model.overrides = ml_collections.ConfigDict(dict(remat="resolution"))
  assert from_config.exec_policy(c) == nn.ExecPolicy(exec_mode="scan", remat="resolution")
  c.model.exec_mode = "unroll"
  c.model.overrides = ml_collections.ConfigDict(dict(exec_overrides=((4, "remat"),)))
  assert from_config.exec_policy(c) == nn.ExecPolicy(
    exec_overrides=((4, "scan"),), remat_overrides=((4, "block"),)
  )
