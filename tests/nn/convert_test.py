"""VDVAE state-dict conversion: hand-built dict with the documented names/shapes, round trips."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mrflax.nn import (
  HVAE,
  HVAESpec,
  from_vdvae_state_dict,
  get_preset,
  spec_param_count,
  state_dict_shapes,
  to_vdvae_state_dict,
)

SPEC = HVAESpec(
  image_size=8,
  width=16,
  zdim=4,
  enc_blocks="8x1,8d2,4x1,4d4,1x1",
  dec_blocks="1x1,4m1,4x1,8m4",
  num_mixtures=2,
)


def _hand_built(rng):
  """The key pattern of VDVAE_REFERENCE.md §12, written out by hand (w=16, m=4, z=4, C=3, M=2)."""
  w, m, z = 16, 4, 4
  sd = {"encoder.in_conv.weight": (w, 3, 3, 3), "encoder.in_conv.bias": (w,)}

  def block(prefix, i_ch, o_ch, k):
    sd[f"{prefix}.c1.weight"] = (m, i_ch, 1, 1)
    sd[f"{prefix}.c2.weight"] = (m, m, k, k)
    sd[f"{prefix}.c3.weight"] = (m, m, k, k)
    sd[f"{prefix}.c4.weight"] = (o_ch, m, 1, 1)
    for c, o in (("c1", m), ("c2", m), ("c3", m), ("c4", o_ch)):
      sd[f"{prefix}.{c}.bias"] = (o,)

  for i, res in enumerate([8, 8, 4, 4, 1]):
    block(f"encoder.enc_blocks.{i}", w, w, 3 if res > 2 else 1)
  for i, res in enumerate([1, 4, 4, 8]):
    k = 3 if res > 2 else 1
    block(f"decoder.dec_blocks.{i}.enc", 2 * w, 2 * z, k)
    block(f"decoder.dec_blocks.{i}.prior", w, 2 * z + w, k)
    sd[f"decoder.dec_blocks.{i}.z_proj.weight"] = (w, z, 1, 1)
    sd[f"decoder.dec_blocks.{i}.z_proj.bias"] = (w,)
    block(f"decoder.dec_blocks.{i}.resnet", w, w, k)
  for k, r in enumerate([1, 4, 8]):
    sd[f"decoder.bias_xs.{k}"] = (1, w, r, r)
  sd["decoder.gain"] = (1, w, 1, 1)
  sd["decoder.bias"] = (1, w, 1, 1)
  sd["decoder.out_net.out_conv.weight"] = (20, w, 1, 1)
  sd["decoder.out_net.out_conv.bias"] = (20,)
  return {k: rng.normal(size=s).astype(np.float32) for k, s in sd.items()}


@pytest.fixture(scope="module")
def hand_sd():
  return _hand_built(np.random.default_rng(0))


def test_hand_built_state_dict_names_and_layouts(hand_sd):
  assert {k: v.shape for k, v in hand_sd.items()} == state_dict_shapes(SPEC)
  model = from_vdvae_state_dict({"module." + k: v for k, v in hand_sd.items()}, SPEC)
  np.testing.assert_array_equal(
    model.encoder.enc_blocks[1].c2.kernel[...],
    np.transpose(hand_sd["encoder.enc_blocks.1.c2.weight"], (2, 3, 1, 0)),
  )
  np.testing.assert_array_equal(
    model.decoder.dec_blocks[3].prior.c4.bias[...], hand_sd["decoder.dec_blocks.3.prior.c4.bias"]
  )
  np.testing.assert_array_equal(
    model.decoder.bias_xs[1][...], np.transpose(hand_sd["decoder.bias_xs.1"], (0, 2, 3, 1))
  )
  np.testing.assert_array_equal(model.decoder.gain[...], hand_sd["decoder.gain"].reshape(-1))
  # a 1x1 conv in NHWC equals the OIHW weight applied as a matrix on the channel axis
  x = jax.random.normal(jax.random.key(0), (1, 2, 2, 4))
  y = model.decoder.dec_blocks[0].z_proj(x)
  wt = hand_sd["decoder.dec_blocks.0.z_proj.weight"][:, :, 0, 0]
  expect = (
    np.einsum("bhwi,oi->bhwo", np.asarray(x), wt) + hand_sd["decoder.dec_blocks.0.z_proj.bias"]
  )
  np.testing.assert_allclose(y, expect, rtol=1e-5, atol=1e-5)
  # exact round trip of the state dict
  back = to_vdvae_state_dict(model)
  assert sorted(back) == sorted(hand_sd)
  for k in hand_sd:
    np.testing.assert_array_equal(back[k], hand_sd[k])


def test_model_round_trip_same_function():
  spec = get_preset("micro4")
  model = HVAE(spec, rngs=nnx.Rngs(0))
  model2 = from_vdvae_state_dict(to_vdvae_state_dict(model), spec)
  a = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  b = nnx.to_pure_dict(nnx.state(model2, nnx.Param))
  jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)
  x = jnp.zeros((1, 4, 4, 1))
  np.testing.assert_array_equal(model.encode(x)[1], model2.encode(x)[1])


def test_errors(hand_sd):
  sd = dict(hand_sd)
  del sd["decoder.gain"]
  with pytest.raises(ValueError, match=r"missing \['decoder.gain'\]"):
    from_vdvae_state_dict(sd, SPEC)
  with pytest.raises(ValueError, match=r"unexpected.*decoder\.foo"):
    from_vdvae_state_dict({**hand_sd, "decoder.foo": np.zeros(1)}, SPEC)
  bad = {**hand_sd, "encoder.in_conv.weight": np.zeros((16, 3, 1, 1), np.float32)}
  with pytest.raises(ValueError, match=r"encoder\.in_conv\.weight: expected"):
    from_vdvae_state_dict(bad, SPEC)
  with pytest.raises(ValueError, match="unshared"):
    state_dict_shapes(SPEC.replace(share=2))


def test_key_counts_of_released_configs():
  for name, (total, enc) in {
    "cifar10": (1393, 266),
    "imagenet32": (2423, 386),
    "imagenet64": (2482, 522),
  }.items():
    keys = state_dict_shapes(get_preset(name))
    assert len(keys) == total, name
    assert sum(k.startswith("encoder.") for k in keys) == enc, name
    n = sum(int(np.prod(s)) for s in keys.values())
    assert n == spec_param_count(get_preset(name)).total
