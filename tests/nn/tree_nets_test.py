"""BP-aligned U-Net and ConvNet: family grouping = kernel=stride convolutions, shapes, residual."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mrflax.nn import tree_nets as TN


@pytest.mark.parametrize(("ndim", "s"), [(1, 2), (1, 3), (2, 4)])
def test_grouped_dense_is_a_kernel_equals_stride_convolution(ndim, s):
  c, c_out, side = 3, 5, (9 if s == 3 else 4)
  shape = (2, *([side] * ndim), c)
  h = jax.random.normal(jax.random.key(0), shape)
  ks = (2,) * ndim if ndim > 1 else (s,)
  conv = nnx.Conv(c, c_out, kernel_size=ks, strides=ks, padding="VALID", rngs=nnx.Rngs(1))
  grouped = TN.group_families(h, ndim=ndim) if ndim > 1 else TN.group_families_1d(h, s=s)
  w = conv.kernel[...].reshape(-1, c_out)  # child index k major (first axis most significant)
  b = conv.bias[...].reshape((1,) * ndim + (1, c_out))
  np.testing.assert_allclose(grouped @ w + b, conv(h), atol=1e-5)
  # ... and ungrouping after a dense layer is the transposed convolution (flax flips its kernel)
  ct = nnx.ConvTranspose(c, c_out, kernel_size=ks, strides=ks, padding="VALID", rngs=nnx.Rngs(2))
  k = ct.kernel[...]
  k = k[(slice(None, None, -1),) * len(ks)]
  w = jnp.moveaxis(k.reshape(-1, c, c_out), 1, 0).reshape(c, -1)
  up = h @ w
  up = TN.ungroup_families(up, ndim=ndim) if ndim > 1 else TN.ungroup_families_1d(up, s=s)
  bias = ct.bias[...].reshape((1,) * (up.ndim - 1) + (c_out,))
  np.testing.assert_allclose(up + bias, ct(h), atol=1e-5)


@pytest.fixture(scope="module")
def nets():
  return {
    "1d": TN.BPUNet(v=4, s=2, L=3, width=16, rngs=nnx.Rngs(0)),
    "2d": TN.BPUNet(v=3, s=4, L=2, ndim=2, width=16, rngs=nnx.Rngs(0)),
  }


@pytest.mark.parametrize(("name", "shape"), [("1d", (3, 8, 4)), ("2d", (3, 4, 4, 3))])
def test_unet_shapes_rows_and_output_residual(nets, name, shape):
  denoise = jax.jit(nets[name].denoise)  # one compilation instead of op-by-op dispatch
  z = jax.random.normal(jax.random.key(0), shape)
  f = denoise(z, jnp.array([0.3, 1.0, 5.0]))
  assert f.shape == shape
  np.testing.assert_allclose(f.sum(-1), 1.0, atol=1e-5)
  # the +u residual: at tiny sigma an untrained net already returns the clean one-hot input
  x = jax.nn.one_hot(jax.random.randint(jax.random.key(1), shape[:-1], 0, shape[-1]), shape[-1])
  np.testing.assert_allclose(denoise(x, jnp.full((3,), 0.01)), x, atol=1e-6)


@pytest.mark.parametrize(
  "kwargs", [dict(skips=False), dict(input_residual=False), dict(downsample="avg")]
)
def test_unet_ablations_run(kwargs):
  net = TN.BPUNet(v=4, s=2, L=2, width=8, rngs=nnx.Rngs(0), **kwargs)
  out = jax.jit(lambda z, s: net(z, s))(jnp.eye(4)[None], jnp.ones(1))
  assert out.shape == (1, 4, 4) and bool(jnp.isfinite(out).all())


def test_convnet_shapes():
  net = TN.ConvNetClassifier(v=3, n_classes=5, s=4, L=2, ndim=2, width=8, rngs=nnx.Rngs(0))
  assert jax.jit(lambda z, s: net(z, s))(jnp.zeros((2, 4, 4, 3)), jnp.ones(2)).shape == (2, 5)
  assert TN.count_params(net) > 0


def test_bad_inputs_raise(nets):
  with pytest.raises(ValueError, match="leaf shape"):
    nets["1d"](jnp.zeros((1, 6, 4)), jnp.ones(1))
  with pytest.raises(ValueError, match="v=4"):
    nets["1d"](jnp.zeros((1, 8, 3)), jnp.ones(1))
  with pytest.raises(ValueError, match="2\\*\\*ndim"):
    TN.BPUNet(v=3, s=2, L=2, ndim=2, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="downsample"):
    TN.BPUNet(v=3, s=2, L=2, downsample="max", rngs=nnx.Rngs(0))
