"""HVAE claim experiments (issue 6, items 2-5) run end to end at toy size."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from flax import nnx
from PIL import Image

from experiments.hvae import from_config
from experiments.hvae import train as hvae_train
from experiments.hvae_claims import config as claims_config
from experiments.hvae_claims import run, runs
from mrflax import nn


def _haar_spectrum_numpy(x):
  """The Haar spectrum (per level, [approx, coarsest, ..., finest]) from block means alone.

  With A_k = ||ι^k P^k x||^2 (block means of side 2^k, repeated back), the approximation holds
  A_J and the details of level k hold A_k - A_{k+1} (orthogonal projections, Pythagoras)."""
  x = np.asarray(x, np.float64)
  x = x - x.mean(axis=(1, 2, 3), keepdims=True)
  n, side, _, c = x.shape
  levels = int(np.log2(side))
  a = []
  for k in range(levels + 1):
    b = 2**k
    means = x.reshape(n, side // b, b, side // b, b, c).mean(axis=(2, 4))
    a.append((means**2).sum(axis=(1, 2, 3)) * b * b)
  per = np.stack([a[levels], *(a[k] - a[k + 1] for k in range(levels - 1, -1, -1))], axis=-1)
  per = per.mean(axis=0)
  return per / per.sum()


def _rms(states):
  return np.array([np.sqrt(np.mean(np.square(np.asarray(h, np.float64)))) for h in states])


def _figure_ok(path, figsize, dpi=90):
  """Decodes a saved figure: about figsize x dpi pixels (bbox_inches="tight" trims the margins),
  and drawn (many colours, not a blank canvas)."""
  with Image.open(path) as im:
    w, h = im.size
    pixels = np.asarray(im.convert("RGB")).reshape(-1, 3)
  assert 0.7 * figsize[0] * dpi < w < 1.1 * figsize[0] * dpi, (path.name, w)
  assert 0.85 * figsize[1] * dpi < h < 1.2 * figsize[1] * dpi, (path.name, h)
  assert len(np.unique(pixels, axis=0)) > 50, path.name


@pytest.mark.slow
def test_small_runs_write_results(tmp_path):
  """The four runners end to end on two 4-step runs; what they report checked against values
  recomputed here from the saved checkpoints and the run summaries."""
  cfg = claims_config.get_config("small")
  cfg.unlock()
  cfg.hvae.data.data_dir = str(tmp_path / "data")
  # The non-partitionable threefry lowering compiles each random draw ~5x faster on XLA:CPU (it
  # is part of the jit cache key, so nothing compiled here leaks into other tests); this test
  # checks the runners' code paths and arithmetic, not particular random numbers.
  with jax.threefry_partitionable(False):
    for name in claims_config.EXPERIMENTS:
      run.RUNNERS[name](cfg, tmp_path)
    # one training serves time, sharing and point_mass; euler trains its shared cell
    trained_runs = sorted(p.parent.name for p in tmp_path.glob("*/summary.json"))
    assert trained_runs == ["euler_n5", "k1_s0"]
    summary = json.loads((tmp_path / "k1_s0" / "summary.json").read_text())
    c = runs.run_config(cfg, seed=0, share="1")
    spec, trained = runs.ema_model(c, tmp_path, "k1_s0")
    init = jax.device_put(nn.HVAE(spec, rngs=nnx.Rngs(0)), jax.devices()[0])  # as restored
    x = jnp.asarray(runs.test_arrays(c)["image"])
    assert x.shape == (359, 8, 8, 1)

    # time: state RMS of the posterior pass (key seed + 10), recomputed here (the runner's
    # compiled forward pass, already in the cache, returns every state)
    time_ = json.loads((tmp_path / "time.json").read_text())
    assert time_["resolutions"] == [1, 4, 8, 8, 8]
    for label, model in (("trained", trained), ("init", init)):
      rms = _rms(runs.posterior_pass(model, x, jax.random.key(10))[:-1])
      np.testing.assert_allclose(time_["models"][label]["rms_posterior"], rms, rtol=1e-4)
      # Spearman within the 8x8 blocks (2, 3, 4), by scipy's independent implementation
      expect = scipy.stats.spearmanr([2, 3, 4], rms[2:]).statistic
      assert time_["models"][label]["spearman_posterior"] == pytest.approx({"8": expect})
    trained_rms, init_rms = (time_["models"][k]["rms_posterior"] for k in ("trained", "init"))
    assert init_rms[0] == 0.0 and trained_rms[0] > 0  # the zero start constant, then learnt
    ratio = time_["rms_ratio_trained_over_init"]
    assert ratio[0] is None
    np.testing.assert_allclose(ratio[1:], np.divide(trained_rms[1:], init_rms[1:]), rtol=1e-12)
    assert time_["models"]["trained"]["probe_posterior"]["within"]["8"]["blocks"] == 3

    # sharing: the run's test ELBO and the parameter count of the model actually trained
    sharing = json.loads((tmp_path / "sharing.json").read_text())
    (row,) = sharing["rows"]
    assert row["run"] == "k1_s0" and row["bits_per_dim"] == summary["eval"]["bits_per_dim"]
    n_params = sum(p.size for p in jax.tree.leaves(nnx.state(trained, nnx.Param)))
    assert row["params"] == summary["params"] == n_params
    assert (row["n_cells"], row["n_applications"]) == (5, 5)
    source = from_config.open_splits(c)[from_config.splits(c)["eval"]]
    res = hvae_train.evaluate_split(c, spec, trained, source, key=jax.random.key(1))
    assert res.bits_per_dim == pytest.approx(row["bits_per_dim"], rel=1e-6)  # the EMA weights
    e = summary["eval"]
    assert e["bits_per_dim"] == pytest.approx((e["distortion"] + e["rate"]) / math.log(2))

    # point mass: the same run; the data's Haar spectrum from block means alone
    pm = json.loads((tmp_path / "point_mass.json").read_text())
    (row,) = pm["rows"]
    assert row["zeta"] == 0.0 and row["bits_per_dim"] == summary["eval"]["bits_per_dim"]
    assert row["kl_per_block"] == summary["eval"]["kl_per_block"]
    assert row["skipped"] == summary["skipped_updates"] == 0
    targets = runs.test_arrays(c)["target"]
    np.testing.assert_allclose(pm["data_haar_spectrum"], _haar_spectrum_numpy(targets), atol=1e-6)
    # exposure ratio: prior RMS over the RMS of a posterior pass (key seed + 20) recomputed here
    post = _rms(runs.posterior_pass(trained, x, jax.random.key(20))[:-1])
    assert set(row["prior"]) == {str(t) for t in cfg.temperatures}
    for t in row["prior"].values():
      assert sum(t["haar_spectrum"]) == pytest.approx(1.0, abs=1e-5)
      np.testing.assert_allclose(t["exposure_ratio"], np.divide(t["rms"], post), rtol=1e-4)

  # euler: the trained cell moved into every architecture; at the trained N it must reproduce
  # the run's own test ELBO up to float32 round-off (the two evaluations are separately compiled
  # programs that XLA may fuse differently: 1.7e-8 apart with the erf GELU), at another N it is a
  # different model
  euler = json.loads((tmp_path / "euler.json").read_text())
  assert [r["eval_applications"] for r in euler["rows"]] == [3, 5]
  same = euler["rows"][1]
  assert same["trained_applications"] == 5
  trained_bpd = json.loads((tmp_path / "euler_n5" / "summary.json").read_text())["eval"]
  assert same["bits_per_dim"] == pytest.approx(trained_bpd["bits_per_dim"], rel=1e-6)
  assert same["train_eval_bits_per_dim"] == trained_bpd["bits_per_dim"]
  assert euler["rows"][0]["bits_per_dim"] != pytest.approx(same["bits_per_dim"], rel=1e-4)

  for name, figsize in (
    ("sharing", (5, 3.5)),
    ("time", (10, 3.5)),
    ("point_mass", (14, 3.5)),
    ("euler", (11, 4)),
  ):
    _figure_ok(tmp_path / f"{name}.png", figsize)


def test_configs():
  for arg in (None, "all", "small", *claims_config.EXPERIMENTS):
    cfg = claims_config.get_config(arg)
    assert set(cfg.experiments) <= set(claims_config.EXPERIMENTS)
  with pytest.raises(ValueError, match="unknown experiment"):
    claims_config.get_config("clock")


def test_finished_runs_are_reused_across_execution_policies_only(tmp_path):
  """A finished run trained under another ExecPolicy (remat, exec mode) is reused; one trained
  with another model or optimiser is refused with the differing field named."""
  cfg = claims_config.get_config("fashion_sharing").hvae
  work = tmp_path / "k1_s0"
  work.mkdir()
  (work / "config.json").write_text(cfg.to_json())
  (work / "summary.json").write_text(json.dumps({"test_bits_per_dim": 3.5}))

  policy = runs.run_config(claims_config.get_config("fashion_sharing"), seed=cfg.seed)
  policy.model.exec_mode = "unroll"
  policy.model.overrides["remat"] = "none"
  policy.model.overrides["conv_backward"] = "xla"
  policy.data.data_dir = str(tmp_path / "elsewhere")
  assert runs.train_run(policy, tmp_path, "k1_s0") == {"test_bits_per_dim": 3.5}

  for field, value in (("width", 48), ("share", "2")):
    other = runs.run_config(claims_config.get_config("fashion_sharing"), seed=cfg.seed)
    if field == "share":
      other.model.share = value
    else:
      other.model.overrides[field] = value
    with pytest.raises(ValueError, match=f"trained with another config .*{field}"):
      runs.train_run(other, tmp_path, "k1_s0")
  other = runs.run_config(claims_config.get_config("fashion_sharing"), seed=cfg.seed)
  other.optim.lr = 2e-3
  with pytest.raises(ValueError, match=r"optim\.lr: 0\.001 -> 0\.002"):
    runs.train_run(other, tmp_path, "k1_s0")
