"""Golden values and numpy re-derivations for the likelihoods (VDVAE_REFERENCE.md §6-7)."""

import math

import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest
from scipy.special import expit
from scipy.special import log_softmax as np_log_softmax
from scipy.special import logsumexp as np_logsumexp

from mrflax import likelihoods as lk


def _golden_dmol_inputs():
  out = np.zeros((1, 2, 2, 20))
  for h in range(2):
    for w in range(2):
      p = 2 * h + w
      for j in range(20):
        out[0, h, w, j] = 0.1 * ((7 * j + 3 * p) % 11) - 0.5
  x = np.array([-1, -0.2, 1, 0.5, 0, -1, 1, 1, -0.6, 0.3, 0.7, -0.9]).reshape(1, 2, 2, 3)
  return out, x


def _np_softplus(v):
  return np.logaddexp(0.0, v)


def _np_dmol_nll(out, x, m, bits, branches=None):
  """Loop-based re-derivation of VDVAE's discretized_mix_logistic_loss, NHWC."""
  branches = [] if branches is None else branches
  half = 1.0 / (2**bits - 1)
  b, hh, ww, _ = x.shape
  total = np.zeros(b)
  for n in range(b):
    for h in range(hh):
      for w in range(ww):
        lv = out[n, h, w]
        logits = lv[:m]
        rest = lv[m:].reshape(3, 3 * m)
        lps = []
        for k in range(m):
          lp = 0.0
          xs = x[n, h, w]
          for c in range(3):
            mean = rest[c, k]
            s = max(rest[c, m + k], -7.0)
            if c == 1:
              mean += np.tanh(rest[0, 2 * m + k]) * xs[0]
            if c == 2:
              mean += np.tanh(rest[1, 2 * m + k]) * xs[0] + np.tanh(rest[2, 2 * m + k]) * xs[1]
            xc = xs[c]
            up = np.exp(-s) * (xc - mean + half)
            um = np.exp(-s) * (xc - mean - half)
            u0 = np.exp(-s) * (xc - mean)
            delta = expit(up) - expit(um)
            if xc < -0.999:
              v = up - _np_softplus(up)
              branches.append("left")
            elif xc > 0.999:
              v = -_np_softplus(um)
              branches.append("right")
            elif delta > 1e-5:
              v = np.log(max(delta, 1e-12))
              branches.append("delta")
            else:
              v = u0 - s - 2 * _np_softplus(u0) - np.log((2**bits - 1) / 2)
              branches.append("mid")
            lp += v
          lps.append(lp)
        lps = np.array(lps) + np_log_softmax(logits)
        total[n] -= np_logsumexp(lps)
  return total / (hh * ww * 3)


@pytest.mark.parametrize(("bits", "golden"), [(8, 4.25972910697465), (5, 3.02100690683238)])
def test_dmol_golden_float64(bits, golden):
  out, x = _golden_dmol_inputs()
  with jax.enable_x64(True):
    got = lk.dmol_nll(jnp.asarray(out), jnp.asarray(x), num_mixtures=2, bits=bits)
    assert got.dtype == jnp.float64
    np.testing.assert_allclose(float(got[0]), golden, rtol=0, atol=1e-12)
  np.testing.assert_allclose(_np_dmol_nll(out, x, 2, bits)[0], golden, atol=1e-12)


@pytest.mark.parametrize(("bits", "golden"), [(8, 4.2597308), (5, 3.0210075)])
def test_dmol_golden_float32(bits, golden):
  out, x = _golden_dmol_inputs()
  got = lk.dmol_nll(
    jnp.asarray(out, jnp.float32), jnp.asarray(x, jnp.float32), num_mixtures=2, bits=bits
  )
  np.testing.assert_allclose(float(got[0]), golden, rtol=2e-6)


def test_dmol_random_matches_numpy_all_branches():
  rng = np.random.default_rng(0)
  m = 3
  out = rng.normal(size=(2, 3, 3, 10 * m)) * 2.0
  x = rng.uniform(-1, 1, size=(2, 3, 3, 3))
  x[0, 0, 0] = [-1.0, 1.0, 0.0]
  x[1, 2, 2] = [1.0, -1.0, 0.9]
  # a pixel whose means are far from x with tiny scales: cdf_delta < 1e-5 (mid branch)
  out[1, 1, 1, m:] = np.concatenate([np.full(m, 0.5), np.full(m, -3.0), np.zeros(m)] * 3)
  x[1, 1, 1] = [0.0, 0.1, -0.2]
  branches = []
  ref = _np_dmol_nll(out, x, m, 8, branches)
  assert {"left", "right", "delta", "mid"} <= set(branches)
  with jax.enable_x64(True):
    got = np.asarray(lk.dmol_nll(jnp.asarray(out), jnp.asarray(x), num_mixtures=m))
  np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_dmol_gradients_finite_at_edges():
  out, x = _golden_dmol_inputs()
  out = jnp.asarray(out, jnp.float32).at[..., 2:].set(-30.0)
  g = jax.grad(lambda v: jnp.sum(lk.dmol_nll(v, jnp.asarray(x, jnp.float32), num_mixtures=2)))(out)
  assert bool(jnp.all(jnp.isfinite(g)))


def test_dmol_bad_channels(monkeypatch):
  # ill-typed on purpose: the ValueError users get, not the test run's jaxtyping check
  monkeypatch.setattr(jaxtyping.config, "jaxtyping_disable", True)
  with pytest.raises(ValueError, match="20 channels"):
    lk.dmol_nll(jnp.zeros((1, 2, 2, 19)), jnp.zeros((1, 2, 2, 3)), num_mixtures=2)
  with pytest.raises(ValueError, match="RGB"):
    lk.dmol_nll(jnp.zeros((1, 2, 2, 20)), jnp.zeros((1, 2, 2, 1)), num_mixtures=2)


def test_dmol_sample_deterministic_limit_and_coefficients():
  # one mixture, tiny scale: sample = sequential clip of means with coefficients
  m = 1
  out = np.zeros((1, 1, 1, 10))
  rest = np.zeros((3, 3))
  rest[:, 0] = [0.2, -0.1, 0.3]  # means
  rest[:, 1] = -30.0  # log scale -> clamped to -7
  rest[:, 2] = np.arctanh([0.5, 0.25, -0.5])  # alpha, beta, gamma
  out[0, 0, 0, m:] = rest.reshape(-1)
  xs = np.asarray(lk.dmol_sample(jax.random.key(3), jnp.asarray(out, jnp.float32), num_mixtures=1))
  xr = 0.2
  xg = -0.1 + 0.5 * xr
  xb = 0.3 + 0.25 * xr - 0.5 * xg
  np.testing.assert_allclose(xs[0, 0, 0], [xr, xg, xb], atol=5e-3)  # e^-7 logistic noise
  # mixture selection follows the logits
  l2 = np.zeros((1, 4, 4, 20))
  l2[..., 0] = 50.0  # mixture 0 always
  r2 = np.zeros((3, 6))
  r2[:, 0] = -0.5
  r2[:, 1] = 0.5
  r2[:, 2:4] = -30.0
  l2[..., 2:] = r2.reshape(-1)
  s2 = np.asarray(lk.dmol_sample(jax.random.key(1), jnp.asarray(l2, jnp.float32), num_mixtures=2))
  np.testing.assert_allclose(s2, -0.5, atol=5e-3)


def test_dmol_sample_is_distributed_as_likelihood():
  # Monte Carlo: bin frequencies of the R channel of samples vs the model's bin probabilities
  m = 2
  out = jax.random.normal(jax.random.key(0), (1, 1, 1, 10 * m)) * 0.5
  n = 40000
  xs = lk.dmol_sample(jax.random.key(1), jnp.broadcast_to(out, (n, 1, 1, 10 * m)), num_mixtures=m)
  xr = np.asarray(xs[:, 0, 0, 0])
  logits = out[0, 0, 0, :m]
  rest = out[0, 0, 0, m:].reshape(3, 3 * m)
  log_pi = jax.nn.log_softmax(logits)
  half = 1 / 255
  for c in (-1.0, 0.0, 2 * 140 / 255 - 1, 1.0):
    lp = lk.discretized_logistic_log_prob(
      jnp.full((m,), c), rest[0, :m], jnp.maximum(rest[0, m : 2 * m], -7.0)
    )
    p_model = float(jnp.sum(jnp.exp(lp + log_pi)))
    p_emp = float(np.mean(np.abs(xr - c) <= half + 1e-7))
    assert p_model > 1e-3
    assert abs(p_emp - p_model) < 4 * math.sqrt(p_model / n) + 1e-3, (c, p_emp, p_model)


@pytest.mark.parametrize(
  ("args", "golden"),
  [
    ((0, 0, 0, 0), 0.0),
    ((1, -1, 0, 0.5), 1.2088332547696532),
    ((-0.5, 0.3, 0.5, -0.2), 1.105053263050158),
  ],
)
def test_gaussian_kl_golden(args, golden):
  qm, qs, pm, ps = args
  with jax.enable_x64(True):
    got = lk.gaussian_kl(jnp.float64(qm), jnp.float64(qs), jnp.float64(pm), jnp.float64(ps))
    np.testing.assert_allclose(float(got), golden, atol=1e-14)


def test_gaussian_kl_vs_monte_carlo():
  k1, k2 = jax.random.split(jax.random.key(0))
  qm, qs, pm, ps = 0.4, -0.3, -0.2, 0.25
  z = lk.gaussian_sample(k1, jnp.full((400000,), qm), jnp.full((400000,), qs))
  mc = jnp.mean(lk.gaussian_log_prob(z, qm, qs) - lk.gaussian_log_prob(z, pm, ps))
  exact = float(lk.gaussian_kl(jnp.float32(qm), jnp.float32(qs), jnp.float32(pm), jnp.float32(ps)))
  assert abs(float(mc) - exact) < 5e-3
  assert exact > 0.1
  # temperature scales the std
  z2 = lk.gaussian_sample(k2, jnp.zeros(200000), jnp.zeros(200000), temperature=0.5)
  assert abs(float(jnp.std(z2)) - 0.5) < 5e-3


def test_gaussian_log_prob_matches_scipy():
  from scipy.stats import norm

  x = np.linspace(-2, 2, 7)
  with jax.enable_x64(True):
    got = lk.gaussian_log_prob(jnp.asarray(x), jnp.float64(0.3), jnp.float64(-0.4))
  np.testing.assert_allclose(np.asarray(got), norm.logpdf(x, 0.3, np.exp(-0.4)), rtol=1e-12)


def test_bernoulli_nll_crop_and_values():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(2, 32, 32, 1))
  x = (rng.uniform(size=(2, 32, 32, 1)) < 0.3).astype(np.float64)
  with jax.enable_x64(True):
    got = np.asarray(lk.bernoulli_nll(jnp.asarray(logits), jnp.asarray(x), crop=2))
  lc, xc = logits[:, 2:30, 2:30], x[:, 2:30, 2:30]
  p = 1 / (1 + np.exp(-lc))
  ref = -np.mean(xc * np.log(p) + (1 - xc) * np.log(1 - p), axis=(1, 2, 3))
  np.testing.assert_allclose(got, ref, rtol=1e-10)
  # the border does not matter
  logits2 = logits.copy()
  logits2[:, :2] = 100.0
  with jax.enable_x64(True):
    got2 = np.asarray(lk.bernoulli_nll(jnp.asarray(logits2), jnp.asarray(x), crop=2))
  np.testing.assert_allclose(got2, got, rtol=1e-12)
  with pytest.raises(ValueError, match="crop"):
    lk.bernoulli_nll(jnp.zeros((1, 4, 4, 1)), jnp.zeros((1, 4, 4, 1)), crop=2)
  s = lk.bernoulli_sample(jax.random.key(0), jnp.zeros((50000,)))
  assert abs(float(jnp.mean(s)) - 0.5) < 0.01


def test_discretized_logistic_normalised_over_grid():
  # sum over all 2^bits bin probabilities = 1 (edge bins absorb the tails)
  for bits in (5, 8):
    with jax.enable_x64(True):
      grid = jnp.asarray(np.arange(2**bits) / (2**bits - 1) * 2 - 1)
      lp = lk.discretized_logistic_log_prob(grid, jnp.float64(0.13), jnp.float64(-1.0), bits=bits)
      np.testing.assert_allclose(float(jnp.sum(jnp.exp(lp))), 1.0, atol=1e-9)
  with pytest.raises(ValueError, match="bits"):
    lk.discretized_logistic_log_prob(jnp.zeros(1), jnp.zeros(1), jnp.zeros(1), bits=0)


def test_discretized_logistic_nll_and_sample():
  out = jnp.concatenate([jnp.full((1, 4, 4, 1), 0.25), jnp.full((1, 4, 4, 1), -3.0)], -1)
  x = jnp.full((1, 4, 4, 1), 0.25)
  nll = lk.discretized_logistic_nll(out, x)
  lp = lk.discretized_logistic_log_prob(jnp.float32(0.25), jnp.float32(0.25), jnp.float32(-3.0))
  np.testing.assert_allclose(float(nll[0]), -float(lp), rtol=1e-6)
  s = lk.discretized_logistic_sample(
    jax.random.key(0), jnp.broadcast_to(out, (5000, 4, 4, 2)), channels=1
  )
  assert abs(float(jnp.median(s)) - 0.25) < 0.01
  with pytest.raises(ValueError, match="output channels"):
    lk.logistic_params(jnp.zeros((1, 1, 1, 3)), channels=1)


def test_units():
  assert lk.bits_per_dim(math.log(2.0) * 2.87) == pytest.approx(2.87)
  assert lk.nats_per_image(0.1, dims=3072) == pytest.approx(307.2)
  with pytest.raises(ValueError):
    lk.nats_per_image(1.0, dims=0)
  assert lk.to_uint8(jnp.array([0.999, -0.999])).tolist() == [254, 0]
