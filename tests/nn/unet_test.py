"""U-Net: Haar U-Net identity and shrinkage (THEORY.md §3.2 Cor. 4), Lemma 1, leak, options."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mrflax import wavelets
from mrflax.nn.unet import UNet, haar_unet


def test_haar_unet_identity_and_shrinkage():
  with jax.enable_x64(True):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 16, 16, 3)))
    np.testing.assert_allclose(haar_unet(x, levels=3), x, atol=1e-13)
    kappa = (0.5, -1.5, 0.2)
    pyr = wavelets.haar_analysis(x, levels=3, ndim=2)
    shrunk = wavelets.HaarPyramid(
      approx=pyr.approx,
      details=tuple(k * d for k, d in zip(kappa, pyr.details, strict=True)),
      ndim=2,
    )
    expect = wavelets.haar_synthesis(shrunk)
    np.testing.assert_allclose(haar_unet(x, levels=3, kappa=kappa), expect, atol=1e-13)
    # kappa = 0 keeps only the coarsest approximation, upsampled
    coarse = haar_unet(x, levels=3, kappa=(0.0, 0.0, 0.0))
    np.testing.assert_allclose(
      coarse, wavelets.embed(wavelets.project(x, levels=3), levels=3), atol=1e-13
    )
  with pytest.raises(ValueError, match="shrinkage"):
    haar_unet(x, levels=2, kappa=(1.0,))


_apply = jax.jit(lambda net, x: net(x, return_features=True))


@pytest.mark.parametrize("pooling", ["avg", "max", "conv"])
def test_unet_coarse_path_and_leak(pooling):
  net = UNet(in_features=1, out_features=2, widths=(4, 8, 8), pooling=pooling, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
  y, f = _apply(net, x)
  assert y.shape == (2, 8, 8, 2)
  assert [h.shape for h in f.skips] == [(2, 8, 8, 4), (2, 4, 4, 8)]
  assert [c.shape for c in f.coarse] == [(2, 8, 8, 4), (2, 4, 4, 8)]
  for c in f.coarse:  # Lemma 1: Q c_j = 0 for nearest upsampling
    assert float(jnp.max(jnp.abs(wavelets.detail(c)))) < 1e-6
  for h, d in zip(f.skips, f.down, strict=True):
    if pooling == "conv":
      continue
    # leak(j): how much the downsampler differs from pooling of the approximation
    leak = jnp.sum((d - wavelets.project(h)) ** 2) / jnp.sum(d**2)
    if pooling == "avg":
      assert float(leak) < 1e-10
    else:
      assert float(leak) > 1e-3
  # the finest skip carries the details the coarse path lacks: the energy of its Haar detail bands
  # is ||Q h||^2 (Parseval; Q = 1 - ιP computed apart) and, for white-noise input, most of its
  # energy (3/4 for white noise itself; a 3x3 conv at init smooths a little: 0.72 measured)
  h = f.skips[0]
  e = wavelets.band_energies(wavelets.haar_analysis(h, levels=1))
  detail_energy = jnp.sum(e.details[0])
  np.testing.assert_allclose(detail_energy, jnp.sum(wavelets.detail(h) ** 2), rtol=1e-5)
  assert float(detail_energy / jnp.sum(h**2)) > 0.5


def test_unet_skips_off_and_noise_conditioning():
  x = jax.random.normal(jax.random.key(1), (3, 8, 8, 1))
  net = UNet(in_features=1, out_features=1, widths=(4, 8), skips=False, rngs=nnx.Rngs(0))
  assert net.merge[0].kernel.shape == (1, 1, 4, 4)
  # without skips Dec_j sees only the coarse path c_j, which carries no detail (Lemma 1)
  y, f = net(x, return_features=True)
  assert y.shape == x.shape
  assert float(jnp.max(jnp.abs(wavelets.detail(f.coarse[0])))) < 1e-6
  with_skip = UNet(in_features=1, out_features=1, widths=(4, 8), rngs=nnx.Rngs(0))
  assert with_skip.merge[0].kernel.shape == (1, 1, 8, 4)
  cond = UNet(
    in_features=1,
    out_features=1,
    widths=(4, 8),
    noise_conditioning=True,
    emb_frequencies=3,
    rngs=nnx.Rngs(0),
  )
  plain = UNet(in_features=1, out_features=1, widths=(4, 8), rngs=nnx.Rngs(0))
  st = nnx.state(plain, nnx.Param)
  pure = nnx.to_pure_dict(nnx.state(cond, nnx.Param))

  def strip(d):
    return {k: strip(v) for k, v in d.items() if k != "film"} if isinstance(d, dict) else d

  nnx.replace_by_pure_dict(st, strip(pure))
  nnx.update(plain, st)
  a = cond(x, jnp.array([0.1, 0.5, 0.9]))
  np.testing.assert_allclose(a, plain(x), rtol=1e-6, atol=1e-6)  # zero-init FiLM
  # after perturbing FiLM the noise level matters, per example
  film = cond.enc[0].film
  film.shift.kernel[...] = jnp.ones_like(film.shift.kernel[...])
  b = cond(x, jnp.array([0.1, 0.5, 0.9]))
  c = cond(x, jnp.array([0.1, 0.2, 0.9]))
  np.testing.assert_allclose(b[0], c[0], rtol=1e-6)
  assert float(jnp.max(jnp.abs(b[1] - c[1]))) > 1e-4
  with pytest.raises(ValueError, match="noise_level"):
    cond(x)
  with pytest.raises(ValueError, match="pooling"):
    UNet(in_features=1, out_features=1, widths=(4, 8), pooling="lp", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="divisible"):
    net(jnp.zeros((1, 5, 5, 1)))


def test_skip_variants_u2():
  from mrflax.nn.unet import transform_skip

  h = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  q, a = transform_skip(h, "detail"), transform_skip(h, "approx")
  np.testing.assert_allclose(q + a, h, atol=1e-6)
  assert float(jnp.max(jnp.abs(wavelets.project(q)))) < 1e-6  # Q h is in W_{j-1}
  assert float(jnp.max(jnp.abs(wavelets.detail(a)))) < 1e-6  # iota P h is in V_{j-1}
  np.testing.assert_array_equal(transform_skip(h, "none"), jnp.zeros_like(h))
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 1))
  net = UNet(in_features=1, out_features=1, widths=(4, 8, 8), rngs=nnx.Rngs(0))
  full = net(x)
  outs = {m: net(x, skip_mode=m) for m in ("detail", "approx", "none")}
  for m, y in outs.items():
    assert float(jnp.max(jnp.abs(y - full))) > 1e-4, m
  # a per-level override changes only that level's skip; the constructor default is the same path
  mixed = net(x, skip_mode=("detail", "full"))
  assert float(jnp.max(jnp.abs(mixed - full))) > 1e-4
  other = UNet(
    in_features=1, out_features=1, widths=(4, 8, 8), skip_mode="detail", rngs=nnx.Rngs(0)
  )
  np.testing.assert_allclose(other(x), outs["detail"], rtol=1e-6, atol=1e-6)
  with pytest.raises(ValueError, match="skip_mode"):
    net(x, skip_mode="high")
  with pytest.raises(ValueError, match="skip_mode"):
    net(x, skip_mode=("full",))
  with pytest.raises(ValueError, match="skip_mode"):
    UNet(in_features=1, out_features=1, widths=(4, 8), skip_mode="half", rngs=nnx.Rngs(0))
