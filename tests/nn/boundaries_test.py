"""Wrong shapes at the HVAE and U-Net boundaries raise a ValueError saying what was expected.

The checks are chex assertions on static shapes: they fire at trace time, so under ``jit`` too,
before any XLA computation (an odd image size gives this message, not a deep XLA trace).
"""

import jax
import jax.numpy as jnp
import jaxtyping
import pytest
from flax import nnx

from mrflax.nn import HVAE, get_preset
from mrflax.nn.unet import UNet

MICRO = r"\[batch, 4, 4, 1\] \(HVAESpec image_size=4, image_channels=1\)"


@pytest.fixture(scope="module")
def model():
  return HVAE(get_preset("micro4"), rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def unet():
  return UNet(in_features=1, out_features=1, widths=(4, 8, 8), rngs=nnx.Rngs(0))


@pytest.fixture
def without_jaxtyping(monkeypatch):
  """For inputs that break the annotations: the ValueError users get (no jaxtyping outside the
  test run), not the test run's jaxtyping TypeCheckError."""
  monkeypatch.setattr(jaxtyping.config, "jaxtyping_disable", True)


KEY = jax.random.key(0)
GOOD = jnp.zeros((2, 4, 4, 1))


@pytest.mark.parametrize(
  ("shape", "got"),
  [
    ((2, 5, 5, 1), r"\(2, 5, 5, 1\)"),  # odd size
    ((2, 8, 8, 1), r"\(2, 8, 8, 1\)"),  # the size of another spec
    ((2, 4, 4, 3), r"\(2, 4, 4, 3\)"),  # RGB into a grey model
    ((2, 4, 2, 1), r"\(2, 4, 2, 1\)"),  # not square
  ],
)
def test_hvae_images_of_the_wrong_size(model, shape, got):
  x = jnp.zeros(shape)
  message = rf"input 0 has shape {got} but expected \(None, 4, 4, 1\)\. \[expected images {MICRO}\]"
  for call in (
    lambda: model.loss(x, x, KEY),
    lambda: model.forward(x, KEY),
    lambda: model.encode(x),
    lambda: model.reconstruct(x, KEY),
    lambda: model.posterior_latents(x, KEY),
    lambda: jax.jit(lambda m, x: m.loss(x, x, KEY))(model, x),  # a trace-time check
  ):
    with pytest.raises(ValueError, match=message):
      call()


def test_hvae_targets(model, without_jaxtyping):
  del without_jaxtyping  # mismatched b, h, w also break the annotations ("b h w c")
  with pytest.raises(ValueError, match=rf"\(2, 5, 5, 1\).*\[expected targets {MICRO}\]"):
    model.loss(GOOD, jnp.zeros((2, 5, 5, 1)), KEY)
  with pytest.raises(ValueError, match=r"\[expected images and targets of the same shape\]"):
    model.loss(GOOD, jnp.zeros((3, 4, 4, 1)), KEY)
  out = model.forward(GOOD, KEY).out
  with pytest.raises(ValueError, match=rf"\[expected targets {MICRO}\]"):
    model.nll(out, jnp.zeros((2, 4, 4, 2)))
  with pytest.raises(ValueError, match=r"\[expected as many targets as likelihood parameters"):
    model.nll(out, jnp.zeros((3, 4, 4, 1)))
  with pytest.raises(
    ValueError, match=r"\[expected likelihood parameters \[batch, 4, 4, 2\] \(the decoder output"
  ):
    model.nll(out[..., :1], GOOD)


def test_hvae_rank_and_dtype(model, without_jaxtyping):
  del without_jaxtyping
  with pytest.raises(
    ValueError, match=rf"has rank 3 .* but expected 4\. \[expected images {MICRO}\]"
  ):
    model.loss(jnp.zeros((4, 4, 1)), jnp.zeros((4, 4, 1)), KEY)
  with pytest.raises(ValueError, match=r"\[expected floating-point images \(preprocessed, not raw"):
    model.forward(jnp.zeros((2, 4, 4, 1), jnp.uint8), KEY)


def test_spec_check_images_directly():
  spec = get_preset("micro4")
  spec.check_images(GOOD)
  spec.check_images(jnp.zeros((7, 4, 4, 1), jnp.bfloat16))  # any batch size and float dtype
  with pytest.raises(ValueError, match=r"has rank 2 .*\[expected latents \[batch, 4, 4, 1\]"):
    spec.check_images(jnp.zeros((4, 4)), name="latents")


def test_hvae_sample_batch_size(model):
  assert model.sample(KEY, batch_size=3).shape == (3, 4, 4, 1)
  for bad in (0, -1):
    with pytest.raises(ValueError, match=rf"batch_size must be a positive int, got {bad}"):
      model.sample(KEY, batch_size=bad)


@pytest.mark.parametrize(
  ("shape", "message"),
  [
    (
      (2, 8, 8, 3),
      r"\(2, 8, 8, 3\) but expected \(None, None, None, 1\)\. \[expected NHWC images "
      r"\[batch, height, width, 1\] \(in_features=1\)\]",
    ),
    (
      (2, 6, 8, 1),  # two poolings: sides must be multiples of 4
      r"expected NHWC images with sides divisible by 2\*\*2 = 4 \(2 poolings of "
      r"widths=\(4, 8, 8\)\), got shape \(2, 6, 8, 1\): pad or crop the images",
    ),
    ((1, 7, 7, 1), r"sides divisible by 2\*\*2 = 4 .*got shape \(1, 7, 7, 1\)"),  # odd size
  ],
)
def test_unet_images(unet, shape, message):
  x = jnp.zeros(shape)
  with pytest.raises(ValueError, match=message):
    unet(x)
  with pytest.raises(ValueError, match=message):
    jax.jit(lambda m, x: m(x))(unet, x)


def test_unet_rank(unet, without_jaxtyping):
  del without_jaxtyping
  with pytest.raises(ValueError, match=r"has rank 3 .*\[expected NHWC images \[batch, height"):
    unet(jnp.zeros((8, 8, 1)))


def test_unet_noise_level(unet):
  x = jnp.zeros((2, 8, 8, 1))
  with pytest.raises(ValueError, match=r"not noise-conditioned .* noise_level would be ignored"):
    unet(x, jnp.ones((2,)))
  cond = UNet(
    in_features=1, out_features=1, widths=(4, 8), noise_conditioning=True, rngs=nnx.Rngs(0)
  )
  assert cond(x, jnp.ones((2,))).shape == x.shape
  with pytest.raises(ValueError, match=r"needs noise_level of shape \[batch\]"):
    cond(x)


def test_unet_noise_level_batch(without_jaxtyping):
  del without_jaxtyping  # a batch mismatch also breaks the annotations ("b h w c", " b")
  cond = UNet(
    in_features=1, out_features=1, widths=(4, 8), noise_conditioning=True, rngs=nnx.Rngs(0)
  )
  with pytest.raises(
    ValueError, match=r"\(3,\) but expected \(2\)\. .* of shape \[batch\] = \[2\]"
  ):
    cond(jnp.zeros((2, 8, 8, 1)), jnp.ones((3,)))
