"""benchmarks.common: paired rounds and the interval of the per-round ratio (issue 14 item 5)."""

import math

import numpy as np
import pytest

from benchmarks.common import (
  paired_rounds,
  ratio_stats,
  student_t_cdf,
  student_t_quantile,
)


@pytest.mark.parametrize(
  "p, df, expected",  # standard table values
  [
    (0.975, 1, 12.7062047362),
    (0.975, 2, 4.30265272975),
    (0.975, 3, 3.18244630528),
    (0.975, 10, 2.22813885196),
    (0.975, 59, 2.00099538),
    (0.995, 30, 2.74999565),
    (0.025, 4, -2.77644510520),
    (0.5, 7, 0.0),
    (0.975, 1000, 1.96233908),
  ],
)
def test_t_quantile_table_values(p, df, expected):
  assert student_t_quantile(p, df) == pytest.approx(expected, rel=1e-5, abs=1e-9)


def test_t_cdf_closed_forms_and_scipy():
  assert student_t_cdf(0.0, 5) == 0.5
  assert student_t_cdf(1.0, 1) == pytest.approx(0.75)  # Cauchy
  assert student_t_cdf(1.0, 2) == pytest.approx(0.5 + 0.5 / math.sqrt(3))
  assert student_t_cdf(-2.0, 9) == pytest.approx(1 - student_t_cdf(2.0, 9))
  stats = pytest.importorskip("scipy.stats")
  for df in (1, 2, 3, 4, 5, 8, 19, 59, 60, 500):
    for t in (-6.0, -1.3, 0.2, 2.0, 9.0):
      assert student_t_cdf(t, df) == pytest.approx(stats.t.cdf(t, df), abs=1e-12)
    for p in (0.9, 0.95, 0.975, 0.995):
      assert student_t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-9)


def test_identical_timings_give_exactly_one():
  t = [0.3, 0.5, 0.41, 0.39, 0.8]
  st = ratio_stats(t, t)
  assert st["n"] == 5 and st["log_sd"] == 0
  assert st["ci_low"] == st["ci_high"] == st["geomean"] == st["median"] == 1.0
  assert st["median_ci_low"] == st["median_ci_high"] == 1.0


def _synthetic(n, seed, ratio=1.2, noise=0.05):
  """Round-to-round load (x0.6 to x1.6 on both variants) times a multiplicative noise."""
  rng = np.random.default_rng(seed)
  den = 0.4 * np.exp(rng.normal(0, 0.2, n))
  num = ratio * den * np.exp(rng.normal(0, noise, n))
  return num.tolist(), den.tolist()


def test_constant_ratio_with_noise_is_bracketed_and_narrows_with_n():
  # at 99.9% a fixed draw misses 1.2 once in a thousand; the 95% level is checked by coverage
  mean_widths = []
  for n in (10, 100, 1000):
    widths = []
    for seed in range(5):
      st = ratio_stats(*_synthetic(n, seed=seed), confidence=0.999)
      assert st["ci_low"] <= 1.2 <= st["ci_high"], (n, seed, st)
      assert st["median_ci_low"] <= 1.2 <= st["median_ci_high"], (n, seed, st)
      assert st["ci_low"] < st["geomean"] < st["ci_high"]
      assert st["median_ci_low"] <= st["median"] <= st["median_ci_high"]
      widths.append(math.log(st["ci_high"] / st["ci_low"]))
    # the width of the log interval is 2 t s / sqrt(n), s near the ratio noise (0.05)
    expected = 2 * student_t_quantile(0.9995, n - 1) * 0.05 / math.sqrt(n)
    assert 0.4 * expected < min(widths) and max(widths) < 1.8 * expected, (n, widths)
    mean_widths.append(sum(widths) / len(widths))
  assert mean_widths[0] > 2.5 * mean_widths[1] > 2.5**2 * mean_widths[2]
  # the load that both variants share cancels: 0.2 of load noise, 0.05 of ratio noise
  assert ratio_stats(*_synthetic(1000, seed=1))["log_sd"] == pytest.approx(0.05, rel=0.1)


def test_t_interval_covers_at_its_level_with_few_rounds():
  # with 5 rounds a normal quantile (1.96 instead of 2.78) would cover only about 88%
  hits = 0
  trials = 2000
  for seed in range(trials):
    st = ratio_stats(*_synthetic(5, seed=seed, noise=0.1), bootstrap=0)
    hits += st["ci_low"] <= 1.2 <= st["ci_high"]
  assert 0.935 <= hits / trials <= 0.965


def test_swapping_num_and_den_inverts_everything():
  num, den = _synthetic(31, seed=3)  # odd: the median is one of the ratios
  a, b = ratio_stats(num, den), ratio_stats(den, num)
  assert b["geomean"] == pytest.approx(1 / a["geomean"])
  assert b["ci_low"] == pytest.approx(1 / a["ci_high"])
  assert b["ci_high"] == pytest.approx(1 / a["ci_low"])
  assert b["median"] == pytest.approx(1 / a["median"])


def test_bootstrap_is_reproducible_and_optional():
  num, den = _synthetic(20, seed=4)
  assert ratio_stats(num, den) == ratio_stats(num, den)
  st90, st95 = ratio_stats(num, den, bootstrap=0, confidence=0.9), ratio_stats(num, den)
  assert st90["median_ci_low"] is None and st90["median_ci_high"] is None
  assert st95["ci_low"] < st90["ci_low"] < st90["ci_high"] < st95["ci_high"]


@pytest.mark.parametrize(
  "num, den",
  [([1.0, 2.0], [1.0]), ([1.0], [1.0]), ([1.0, -1.0], [1.0, 1.0]), ([1.0, 2.0], [0.0, 1.0])],
)
def test_bad_inputs_raise(num, den):
  with pytest.raises(ValueError):
    ratio_stats(num, den)


def test_paired_rounds_alternate_the_order_and_drop_the_warmup():
  calls = []
  out = paired_rounds(
    lambda: calls.append("a"), lambda: calls.append("b"), rounds=3, warmup_rounds=2
  )
  assert "".join(calls) == "abbaabbaab"  # rounds 0-1 are the warm-up
  assert out["a_first"] == [True, False, True]
  assert len(out["a"]) == len(out["b"]) == 3 and min(out["a"] + out["b"]) >= 0
  with pytest.raises(ValueError):
    paired_rounds(lambda: None, lambda: None, rounds=0)
