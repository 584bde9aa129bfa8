"""BP-aligned U-Net and ConvNet: family grouping = kernel=stride convolutions, shapes, residual."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mrflax.nn import count_params
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
    "1d": TN.BPUNet(v=4, s=2, num_levels=3, width=16, rngs=nnx.Rngs(0)),
    "2d": TN.BPUNet(v=3, s=4, num_levels=2, ndim=2, width=16, rngs=nnx.Rngs(0)),
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
  net = TN.BPUNet(v=4, s=2, num_levels=2, width=8, rngs=nnx.Rngs(0), **kwargs)
  out = jax.jit(lambda z, s: net(z, s))(jnp.eye(4)[None], jnp.ones(1))
  assert out.shape == (1, 4, 4) and bool(jnp.isfinite(out).all())


def test_convnet_shapes_and_parameter_count():
  v, n_c, s, L, w, hid = 3, 5, 4, 2, 8, 6
  net = TN.ConvNetClassifier(
    v=v, num_classes=n_c, s=s, num_levels=L, ndim=2, width=w, hidden=hid, rngs=nnx.Rngs(0)
  )
  assert jax.jit(lambda z, s: net(z, s))(jnp.zeros((2, 4, 4, 3)), jnp.ones(2)).shape == (2, 5)
  # by hand from the layer shapes: Dense(i, o) has i*o + o, LayerNorm(w) a scale and a bias
  dense = lambda i, o: i * o + o
  mlp = 2 * w + dense(w, hid) + dense(hid, w)  # PatchMLP: LN, fc1, fc2
  expect = dense(v, w) + mlp + L * (dense(s * w, w) + mlp) + 2 * w + dense(w, n_c)
  assert expect == 999  # 32 + 126 + 2 * (264 + 126) + 16 + 45
  assert count_params(net) == expect


def test_bad_inputs_raise(nets):
  with pytest.raises(ValueError, match="leaf shape"):
    nets["1d"](jnp.zeros((1, 6, 4)), jnp.ones(1))
  with pytest.raises(ValueError, match="v=4"):
    nets["1d"](jnp.zeros((1, 8, 3)), jnp.ones(1))
  with pytest.raises(ValueError, match="2\\*\\*ndim"):
    TN.BPUNet(v=3, s=2, num_levels=2, ndim=2, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="downsample"):
    TN.BPUNet(v=3, s=2, num_levels=2, downsample="max", rngs=nnx.Rngs(0))


# ---------------------------------------------------------------------------------------------
# ExactBPDenoiser: the exact-BP layer variant (learnable tables + exact log-domain BP)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ndim", [1, 2])
def test_exact_bp_with_true_tables_is_the_bayes_denoiser(ndim):
  from mrflax import ghm as G

  s, v, n_c, L = (2, 4, 2, 3) if ndim == 1 else (4, 3, 2, 2)
  if ndim == 1:
    model = G.random_hierarchy_model(
      jax.random.key(0), v=v, num_classes=n_c, m=2, s=s, num_levels=L
    )
  else:
    model = G.dirichlet_ghm(jax.random.key(0), v=v, num_classes=n_c, s=s, num_levels=L, ndim=2)
  net = TN.ExactBPDenoiser(v=v, num_classes=n_c, s=s, num_levels=L, ndim=ndim, rngs=nnx.Rngs(0))
  net.set_tables(model)
  sigma = jnp.array([0.3, 0.5, 0.75, 1.0, 2.0, 3.0])
  x = G.one_hot(G.sample(jax.random.key(1), model, sigma.shape[0]), v)
  z = G.add_noise(jax.random.key(2), x, sigma=sigma)
  f = jax.jit(net.denoise)(z, sigma)
  np.testing.assert_allclose(f, G.leaf_posteriors(model, z, sigma=sigma), atol=1e-5)
  with pytest.raises(ValueError, match="does not match"):
    TN.ExactBPDenoiser(
      v=v, num_classes=n_c, s=s, num_levels=L + 1, ndim=ndim, rngs=nnx.Rngs(0)
    ).set_tables(model)


def test_exact_bp_gradients_are_finite_and_tables_normalised():
  net = TN.ExactBPDenoiser(v=4, num_classes=2, s=2, num_levels=3, rngs=nnx.Rngs(0))
  z = jax.random.normal(jax.random.key(0), (5, 8, 4))
  x = jax.nn.one_hot(jax.random.randint(jax.random.key(1), (5, 8), 0, 4), 4)
  sigma = jnp.array([0.2, 0.5, 1.0, 3.0, 10.0])

  @nnx.jit
  def loss_and_grad(net):
    return nnx.value_and_grad(lambda m: jnp.mean((m.denoise(z, sigma) - x) ** 2))(net)

  loss, grads = loss_and_grad(net)
  leaves = jax.tree.leaves(grads)
  assert bool(jnp.isfinite(loss)) and len(leaves) == 1 + net.num_levels
  assert all(bool(jnp.isfinite(g).all()) for g in leaves)
  assert any(float(jnp.abs(g).max()) > 0 for g in leaves)
  ghm = net.ghm()  # concrete parameters: validated by the GHM constructor
  assert [t.shape for t in ghm.kernels] == [(2, 16), (4, 16), (4, 16)]


@pytest.mark.slow  # ~30 s on 2 shared CPU cores
def test_exact_bp_training_beats_the_per_leaf_baseline(tmp_path):
  from mrflax import ghm as G
  from mrflax.training import ghm as T

  model = G.random_hierarchy_model(jax.random.key(0), v=4, num_classes=2, m=2, s=2, num_levels=3)
  net = TN.ExactBPDenoiser(v=4, num_classes=2, s=2, num_levels=3, rngs=nnx.Rngs(0))
  net, _ = T.train_denoiser(
    jax.random.key(1), model, net, workdir=str(tmp_path), steps=300, batch_size=64,
    learning_rate=5e-2,
    warmup_steps=20, steps_per_call=100,
  )  # fmt: skip
  sigma = 0.5
  x = G.one_hot(G.sample(jax.random.key(2), model, 1000), 4)
  z = G.add_noise(jax.random.key(3), x, sigma=sigma)
  mse = lambda a: float(jnp.mean(jnp.sum((a - x) ** 2, axis=-1)))
  local = mse(G.local_denoiser(jnp.log(G.prior_marginals(model)[-1]), z, sigma=sigma))
  bp = mse(G.leaf_posteriors(model, z, sigma=sigma))
  f = mse(jax.jit(net.denoise)(z, jnp.full((1000,), sigma)))
  assert f < bp + 0.5 * (local - bp), (f, bp, local)  # more than half of the gap closed
