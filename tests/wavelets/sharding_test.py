"""A batch sharded over 4 (fake CPU) devices stays sharded and gives the same numbers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from mrflax import wavelets


def test_four_devices():
  assert jax.device_count() == 4


@pytest.mark.parametrize("axis_type", [AxisType.Auto, AxisType.Explicit])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_sharded_batch_stays_sharded(d, axis_type):
  mesh = jax.make_mesh((4,), ("data",), axis_types=(axis_type,))
  x = np.random.default_rng(0).standard_normal((8, *([8] * d), 3)).astype(np.float32)
  sharding = NamedSharding(mesh, P("data"))
  xs = jax.device_put(x, sharding)

  def round_trip(v):
    pyr = wavelets.haar_analysis(v, levels=2, ndim=d)
    up = wavelets.embed(wavelets.project(v, levels=2, ndim=d), levels=2, ndim=d)
    return pyr, wavelets.haar_synthesis(pyr), up, wavelets.l2_norm(v, ndim=d)

  with jax.set_mesh(mesh):
    pyr, recon, up, norm = jax.jit(round_trip)(xs)
  ref_pyr, ref_recon, ref_up, ref_norm = jax.jit(round_trip)(jnp.asarray(x))
  for got in [*jax.tree.leaves(pyr), recon, up, norm]:
    assert got.sharding.spec[0] == "data", got.sharding
    assert got.sharding.is_equivalent_to(NamedSharding(mesh, P("data")), got.ndim)
  for got, want in zip(
    jax.tree.leaves((pyr, recon, up, norm)),
    jax.tree.leaves((ref_pyr, ref_recon, ref_up, ref_norm)),
    strict=True,
  ):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(np.asarray(recon), x, atol=1e-5)
