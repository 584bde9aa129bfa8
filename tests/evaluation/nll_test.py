"""Masked ELBO averaging, unit conversions, pictures."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from mrflax import evaluation


def test_masked_average_counts_every_example_once():
  # two batches of 3; the last one holds one padding example with absurd values
  batches = [
    {"x": np.zeros(3), "mask": np.ones(3)},
    {"x": np.zeros(3), "mask": np.array([1.0, 1.0, 0.0])},
  ]
  values = iter(
    [
      {"distortion": np.array([1.0, 2.0, 3.0]), "kl": np.array([[0.1, 0.2]] * 3)},
      {"distortion": np.array([4.0, 5.0, 1e9]), "kl": np.array([[0.3, 0.4], [0.5, 0.6], [9, 9]])},
    ]
  )
  seen_keys = []

  def terms(batch, key):
    assert "mask" not in batch
    seen_keys.append(np.asarray(jax.random.key_data(key)))
    return next(values)

  res = evaluation.evaluate_elbo(terms, batches, key=jax.random.key(0), data_dims=64)
  assert res.num_examples == 5
  assert res.distortion == pytest.approx(3.0)
  np.testing.assert_allclose(res.kl_per_block, [1.1 / 5, 1.6 / 5])
  assert res.rate == pytest.approx(0.54)
  assert res.nats_per_dim == pytest.approx(3.54)
  assert res.bits_per_dim == pytest.approx(3.54 / math.log(2))
  assert res.nats_per_image == pytest.approx(3.54 * 64)
  assert not np.array_equal(seen_keys[0], seen_keys[1])  # a fresh key per batch
  assert res.to_dict()["kl_per_block"] == pytest.approx([0.22, 0.32])


def test_no_examples_is_an_error():
  with pytest.raises(ValueError, match="no examples"):
    evaluation.evaluate_elbo(lambda b, k: None, [], key=jax.random.key(0), data_dims=1)


def test_grid_round_trips_known_pixels(tmp_path):
  rng = np.random.default_rng(0)
  for c in (1, 3):
    rows = [
      rng.integers(0, 255, (3, 4, 5, c), np.uint8),
      rng.integers(0, 255, (2, 4, 5, c), np.uint8),
    ]
    evaluation.save_grid(rows, tmp_path / "g.png", scale=2)
    with Image.open(tmp_path / "g.png") as im:
      assert im.mode == ("L" if c == 1 else "RGB")
      assert im.size == (2 * (3 * 6 + 1), 2 * (2 * 5 + 1))  # 3 columns of 5 + pads, 2 rows of 4
      got = np.asarray(im).reshape(22, 38, c)
    # every pixel: image (i, j) at (1 + 5 i, 1 + 6 j) before the 2x repetition, white elsewhere
    # (pads, and the missing third image of the short second row)
    expect = np.full((11, 19, c), 255, np.uint8)
    for i, row in enumerate(rows):
      for j, image in enumerate(row):
        expect[1 + 5 * i : 5 + 5 * i, 1 + 6 * j : 6 + 6 * j] = image
    np.testing.assert_array_equal(got, np.kron(expect, np.ones((2, 2, 1), np.uint8)))
  np.testing.assert_array_equal(
    evaluation.rescale_to_uint8(np.array([-1.0, 0.0, 1.0, 2.0])), [0, 128, 255, 255]
  )


def test_kl_plot_draws_bars_in_proportion_coloured_by_resolution(tmp_path):
  import matplotlib.colors

  kl = [0.1, 0.2, 0.05]
  evaluation.save_kl_plot(kl, [1, 4, 4], tmp_path / "kl.png")
  with Image.open(tmp_path / "kl.png") as im:
    assert im.size == (500, 300)  # figsize (5, 3) at dpi 100 for three blocks
    pixels = np.asarray(im.convert("RGB")).astype(int)
  bars = []  # (first column, colour index, height in pixels) of every bar
  for colour in (0, 1):  # resolution 1 in the first colour of the cycle, 4 in the second
    rgb = np.round(255 * np.array(matplotlib.colors.to_rgb(f"C{colour}")))
    heights = np.all(np.abs(pixels - rgb) <= 2, axis=-1).sum(axis=0)  # per column
    cols = np.flatnonzero(heights)
    for run in np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1):
      if len(run) > 50:  # a bar (the legend's patches are ~20 pixels wide)
        bars.append((run[0], colour, np.median(heights[run])))
  bars.sort()
  assert [b[1] for b in bars] == [0, 1, 1]
  heights = np.array([b[2] for b in bars])
  np.testing.assert_allclose(heights, np.array(kl) * heights[1] / kl[1], atol=2)  # linear y axis


# ------------------------------------------------------------------ importance-weighted bound
# micro4 (4x4 grey, D = 16) with perturbed weights; batches of 4 images (divisible by the 4 fake
# devices). Compiled functions are cached by (K, chunk) so the tests share compilations.
D = 16
K = 128


@pytest.fixture(scope="module")
def micro():
  """The perturbed model (posterior != prior, rate well above zero) and a batch of 4 images."""
  from flax import nnx

  from mrflax.nn import HVAE, get_preset

  model = HVAE(get_preset("micro4"), rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  leaves, treedef = jax.tree.flatten(params)
  rng = np.random.default_rng(0)
  leaves = [p + 0.1 * rng.standard_normal(p.shape, np.float32) for p in leaves]
  model = nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves), rest)
  assert model.spec.data_dims == D
  x = (np.round(rng.uniform(0, 255, (4, 4, 4, 1))) / 127.5 - 1).astype(np.float32)
  return model, {"image": x, "target": x}


@functools.cache
def _jitted(num_samples, chunk):
  return jax.jit(
    lambda m, b, k: evaluation.hvae_log_weights(m, b, k, num_samples=num_samples, chunk=chunk)
  )


def _log_w(model, num_samples, chunk=None):
  f = _jitted(num_samples, chunk)
  return lambda b, k: f(model, b, k)


_terms_jit = jax.jit(evaluation.hvae_terms)


def _terms(model):
  return lambda b, k: _terms_jit(model, b, k)


def _masked(batch, mask):
  return dict(batch, mask=np.asarray(mask, np.float32))


def test_each_log_weight_is_a_single_sample_elbo(micro):
  # log w_k = -D d_k + sum_i log p/q(z_ik); hvae_terms with fold_in(key, k) runs the same
  # posterior pass, so log w_k + D (d_k + KL_k) = sum_i [log p/q + KL_i], which has mean 0
  # given z_<i. A wrong sign, a missing factor D or a wrong key fails this by many s.e.
  model, batch = micro
  key = jax.random.key(1)
  log_w = np.asarray(_log_w(model, K)(batch, key), np.float64)  # [b, K]
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(K))
  terms = jax.jit(jax.vmap(evaluation.hvae_terms, in_axes=(None, None, 0)))(model, batch, keys)
  distortion, kl = np.asarray(terms["distortion"]).T, np.asarray(terms["kl"]).sum(-1).T  # [b, K]
  diff = log_w + D * (distortion + kl)
  se = diff.std(axis=1) / np.sqrt(K)
  assert np.all(se > 0)  # sampled, not analytic: the two differ sample by sample
  assert np.all(2 * D * kl.mean(axis=1) > 8 * se)  # a sign error (offset 2 x rate) would show
  np.testing.assert_array_less(np.abs(diff.mean(axis=1)), 4 * se)


def test_bound_tightens_with_more_samples(micro):
  model, batch = micro
  batches = [_masked(batch, np.ones(4))] * 3
  key = jax.random.key(2)
  one = evaluation.evaluate_iw(_log_w(model, 1), batches, key=key, data_dims=D)
  many = evaluation.evaluate_iw(_log_w(model, K), batches, key=key, data_dims=D)
  assert (one.num_samples, many.num_samples, many.num_examples) == (1, K, 12)
  assert one.ess == pytest.approx(1.0) and 1 < many.ess < K
  assert one.nats_per_dim == pytest.approx(one.elbo_nats_per_dim, rel=1e-9)
  assert many.nats_per_dim < many.elbo_nats_per_dim  # Jensen, same samples
  assert many.bits_per_dim == pytest.approx(many.nats_per_image / D / math.log(2))
  elbo = evaluation.evaluate_elbo(_terms(model), batches, key=jax.random.key(3), data_dims=D)
  # K = 1 and the mean of K single-sample bounds estimate the analytic-KL -ELBO ...
  assert one.nats_per_dim == pytest.approx(elbo.nats_per_dim, rel=0.05)
  assert many.elbo_nats_per_dim == pytest.approx(elbo.nats_per_dim, rel=0.01)
  # ... and the K-sample bound is tighter than the average K = 1 bound by far more than that
  assert many.nats_per_dim < many.elbo_nats_per_dim - 0.1


def test_chunking_changes_only_rounding(micro):
  model, batch = micro
  key = jax.random.key(4)
  full = np.asarray(_log_w(model, K)(batch, key))
  # chunks of 48: two vmapped chunks in lax.map and a remainder of 32, the same samples;
  # XLA:CPU convolutions round differently at another batch size, hence not bit-identical
  chunked = np.asarray(_log_w(model, K, chunk=48)(batch, key))
  np.testing.assert_allclose(chunked, full, rtol=1e-5)
  res = evaluation.evaluate_iw(
    _log_w(model, K, chunk=48), [_masked(batch, np.ones(4))], key=key, data_dims=D, chunk=48
  )
  assert res.to_dict()["chunk"] == 48 and res.to_dict()["num_samples"] == K


def test_padding_rows_are_ignored_even_when_nan(micro):
  model, batch = micro
  fn = _log_w(model, K)
  poisoned = {k: v.copy() for k, v in batch.items()}
  poisoned["image"][3:] = np.nan
  batches = [_masked(batch, np.ones(4)), _masked(poisoned, [1, 1, 1, 0])]
  key = jax.random.key(6)
  res = evaluation.evaluate_iw(fn, batches, key=key, data_dims=D)
  assert res.num_examples == 7 and math.isfinite(res.nats_per_image)
  rows = [np.asarray(fn(batch, jax.random.fold_in(key, 0)), np.float64)]
  rows.append(np.asarray(fn(poisoned, jax.random.fold_in(key, 1)), np.float64)[:3])
  log_w = np.concatenate(rows)
  top = log_w.max(axis=1)
  expected = -np.mean(top + np.log(np.mean(np.exp(log_w - top[:, None]), axis=1)))
  assert res.nats_per_image == pytest.approx(expected, rel=1e-12)
  elbo = evaluation.evaluate_elbo(_terms(model), batches, key=key, data_dims=D)
  assert elbo.num_examples == 7 and math.isfinite(elbo.nats_per_dim)


def test_sharded_evaluation_equals_one_device(micro):
  from mrflax import sharding

  model, batch = micro
  batches = [_masked(batch, np.ones(4)), _masked(batch, [1, 1, 0, 0])]
  fn = _log_w(model, K)
  key = jax.random.key(7)
  mesh = sharding.make_mesh(4)
  one = evaluation.evaluate_iw(fn, batches, key=key, data_dims=D)
  four = evaluation.evaluate_iw(fn, batches, key=key, data_dims=D, mesh=mesh)
  assert four.num_examples == one.num_examples == 6
  assert four.nats_per_image == pytest.approx(one.nats_per_image, rel=1e-6)
  with pytest.raises(ValueError, match="not divisible"):
    evaluation.evaluate_iw(fn, batches, key=key, data_dims=D, mesh=sharding.make_mesh(3))


def test_bad_iw_arguments(micro):
  model, batch = micro
  for kw, match in (
    (dict(num_samples=0), "num_samples"),
    (dict(num_samples=2, chunk=0), "chunk"),
  ):
    with pytest.raises(ValueError, match=match):
      evaluation.hvae_log_weights(model, batch, jax.random.key(0), **kw)
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="mask"):
    evaluation.evaluate_iw(lambda b, k: np.zeros((2, 3)), [{"x": 1}], key=key, data_dims=1)
  with pytest.raises(ValueError, match=r"\[b, K\]"):
    evaluation.evaluate_iw(lambda b, k: np.zeros(2), [{"mask": np.ones(2)}], key=key, data_dims=1)
  with pytest.raises(ValueError, match="no examples"):
    evaluation.evaluate_iw(lambda b, k: None, [], key=key, data_dims=1)


def test_kl_per_resolution():
  assert evaluation.kl_per_resolution([0.5, 0.25, 0.25, 1.0], [4, 1, 4, 8]) == {
    1: 0.25,
    4: 0.75,
    8: 1.0,
  }
  with pytest.raises(ValueError, match="resolutions"):
    evaluation.kl_per_resolution([0.1, 0.2], [1])
  batches = [{"mask": np.ones(2)}]
  fn = lambda b, k: {"distortion": np.ones(2), "kl": np.array([[0.1, 0.2, 0.3]] * 2)}
  res = evaluation.evaluate_elbo(
    fn, batches, key=jax.random.key(0), data_dims=8, resolutions=[1, 4, 4]
  )
  assert res.kl_per_resolution == pytest.approx({1: 0.1, 4: 0.5})
  d = res.to_dict()
  assert d["kl_per_resolution"] == pytest.approx({"1": 0.1, "4": 0.5})
  assert d["bits_per_resolution"]["4"] == pytest.approx(0.5 / math.log(2))
