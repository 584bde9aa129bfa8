"""conv_ops: the loop-friendly convolution VJP equals JAX's automatic one."""

import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest
from flax import nnx

from mrflax.nn import conv_ops
from mrflax.nn.layers import conv

DN = ("NHWC", "HWIO", "NHWC")


def _lax(x, w, **kw):
  return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN, **kw)


def _grads(f, x, w, dy):
  y, vjp = jax.vjp(f, x, w)
  return (y, *vjp(dy))


@pytest.mark.parametrize(
  ("k", "shape", "cout"), [(1, (2, 5, 5, 3), 4), (3, (2, 6, 4, 3), 5), (5, (1, 7, 7, 2), 3)]
)
def test_vjp_equals_automatic_float64(k, shape, cout):
  with jax.enable_x64(True):
    rng = np.random.default_rng(k)
    x = jnp.asarray(rng.normal(size=shape))
    w = jnp.asarray(rng.normal(size=(k, k, shape[-1], cout)))
    dy = jnp.asarray(rng.normal(size=(*shape[:3], cout)))
    got = _grads(conv_ops.conv2d_same, x, w, dy)
    want = _grads(_lax, x, w, dy)
    for a, b in zip(got, want, strict=True):
      assert a.dtype == jnp.float64 and a.shape == b.shape
      np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_vjp_equals_automatic_inside_scan_float32():
  """The point of the custom VJP: a shared conv applied n times under lax.scan."""
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 6))
  w = 0.2 * jax.random.normal(jax.random.key(1), (3, 3, 6, 6))

  def loss(convf, w, x):
    def body(h, _):
      return jnp.tanh(convf(h, w)) + h, None

    h, _ = jax.lax.scan(body, x, None, length=4)
    return jnp.sum(h**2)

  ga = jax.jit(jax.grad(lambda w, x: loss(conv_ops.conv2d_same, w, x), (0, 1)))(w, x)
  gb = jax.jit(jax.grad(lambda w, x: loss(_lax, w, x), (0, 1)))(w, x)
  for a, b in zip(ga, gb, strict=True):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5 * float(jnp.max(jnp.abs(b))))
  # second order still works (custom_vjp differentiates its backward rule)
  hv = jax.grad(lambda w: jnp.sum(jax.grad(lambda w: loss(conv_ops.conv2d_same, w, x))(w) ** 2))
  assert np.isfinite(np.asarray(hv(w))).all()


@pytest.mark.parametrize(
  ("strides", "padding", "rhs_dilation", "kshape"),
  [
    ((2, 2), "SAME", (1, 1), (3, 3)),
    ((1, 1), "VALID", (1, 1), (3, 3)),
    ((1, 1), "SAME", (2, 2), (3, 3)),
    ((1, 1), "SAME", (1, 1), (2, 2)),  # even kernel
    ((1, 1), ((0, 2), (1, 1)), (1, 1), (3, 3)),  # asymmetric padding
  ],
)
def test_other_convolutions_fall_back_to_lax(strides, padding, rhs_dilation, kshape):
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  w = jax.random.normal(jax.random.key(1), (*kshape, 3, 4))
  dn = jax.lax.conv_dimension_numbers(x.shape, w.shape, DN)
  kw = dict(rhs_dilation=rhs_dilation, dimension_numbers=dn)
  f = lambda x, w: conv_ops.conv_general_dilated(x, w, strides, padding, **kw)
  g = lambda x, w: jax.lax.conv_general_dilated(x, w, strides, padding, **kw)
  ya, ga = jax.value_and_grad(lambda x, w: jnp.sum(f(x, w) ** 2), (0, 1))(x, w)
  yb, gb = jax.value_and_grad(lambda x, w: jnp.sum(g(x, w) ** 2), (0, 1))(x, w)
  assert ya == yb
  for a, b in zip(ga, gb, strict=True):
    np.testing.assert_array_equal(a, b)


def test_nnx_conv_uses_it_and_same_padding_forms_agree():
  x = jax.random.normal(jax.random.key(0), (2, 6, 6, 3))
  a = conv(3, 5, kernel_size=3, rngs=nnx.Rngs(0), conv_backward="custom")
  b = conv(3, 5, kernel_size=3, rngs=nnx.Rngs(0))
  assert a.conv_general_dilated is conv_ops.conv_general_dilated
  np.testing.assert_array_equal(a(x), b(x))
  # explicit symmetric padding is recognised as 'SAME'
  w = a.kernel[...]
  dn = jax.lax.conv_dimension_numbers(x.shape, w.shape, DN)
  y = conv_ops.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dn)
  np.testing.assert_allclose(y, _lax(x, w), rtol=1e-6, atol=1e-6)


def test_bad_input(monkeypatch):
  with pytest.raises(ValueError, match="odd kernel"):
    conv_ops.conv2d_same(jnp.ones((1, 4, 4, 2)), jnp.ones((2, 2, 2, 1)))
  with monkeypatch.context() as m, pytest.raises(ValueError, match="kernel"):
    m.setattr(jaxtyping.config, "jaxtyping_disable", True)  # the channels break "b h w i"
    conv_ops.conv2d_same(jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 3, 1)))
  with pytest.raises(ValueError, match="conv_backward"):
    conv(2, 2, kernel_size=1, rngs=nnx.Rngs(0), conv_backward="fast")
  with pytest.raises(ValueError, match="precision"):
    conv(2, 2, kernel_size=1, rngs=nnx.Rngs(0), precision="ultra")
