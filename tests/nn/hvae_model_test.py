"""The VDVAE-exact HVAE: reference re-derivation, init, sampling, sharing, scan == unroll."""

import math

import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest
from flax import nnx

from mrflax import likelihoods as lk
from mrflax.nn import (
  HVAE,
  DecBlock,
  ExecPolicy,
  from_vdvae_hparams,
  get_preset,
  preset_names,
  spec_param_count,
  spec_param_count_full,
)
from mrflax.nn.hvae.decoder import _temperatures


def _ref_forward(model, x, key):
  """VDVAE's forward pass written out literally from VDVAE_REFERENCE.md §4-5 (dict xs)."""
  s = model.spec
  h = model.encoder.in_conv(x)
  acts = {s.image_size: h}
  for blk in model.encoder.enc_blocks:
    h = blk(h)
    r = h.shape[1]
    if h.shape[-1] != s.width_at(r):
      h = jnp.pad(h, ((0, 0), (0, 0), (0, 0), (0, s.width_at(r) - h.shape[-1])))
    acts[r] = h
  dec = model.decoder
  xs = {r: dec.bias_xs[i][...] for i, r in enumerate(s.bias_resolutions)}
  keys = jax.random.split(key, s.num_applications)
  kls, zs = [], []
  for i, (res, mixin) in enumerate(s.dec_pairs):
    blk = dec.dec_blocks[i]
    a = acts[res]
    xx = xs.get(res, jnp.zeros_like(a))
    if xx.shape[0] != a.shape[0]:
      xx = jnp.repeat(xx, a.shape[0], axis=0)
    if mixin is not None:
      f = res // mixin
      xx = xx + jnp.repeat(jnp.repeat(xs[mixin][..., : xx.shape[-1]], f, axis=1), f, axis=2)
    q = blk.enc(jnp.concatenate([xx, a], axis=-1))
    z_ = s.zdim
    qm, qv = q[..., :z_], q[..., z_:]
    feats = blk.prior(xx)
    pm, pv, xpp = feats[..., :z_], feats[..., z_ : 2 * z_], feats[..., 2 * z_ :]
    xx = xx + xpp
    eps = jax.random.normal(keys[i], qm.shape)
    z = jnp.exp(qv) * eps + qm
    kl = -0.5 + pv - qv + 0.5 * (jnp.exp(qv) ** 2 + (qm - pm) ** 2) / jnp.exp(pv) ** 2
    xx = xx + blk.z_proj(z)
    xx = blk.resnet(xx)
    xs[res] = xx
    kls.append(kl)
    zs.append(z)
  g, b = dec.gain[...].reshape(1, 1, 1, -1), dec.bias[...].reshape(1, 1, 1, -1)
  out = dec.out_conv(xs[s.image_size] * g + b)
  return acts, out, kls, zs


_ref_forward_jit = jax.jit(_ref_forward)
_forward = jax.jit(lambda m, x, k: m.forward(x, k))
_forward_and_loss = jax.jit(lambda m, x, t, k: (m.forward(x, k), m.loss(x, t, k)))
_prior = jax.jit(lambda m, k, lat, t: m.decoder(None, k, latents=lat, temperature=t, batch_size=2))


@pytest.fixture(scope="module")
def rgb_model():
  spec = get_preset("tiny8_rgb", custom_width_str="4:24,1:32", no_bias_above=4)
  model = HVAE(spec, rngs=nnx.Rngs(0))
  # perturb every parameter so zero-initialised pieces (prior c4, biases) are exercised
  params = nnx.state(model, nnx.Param)
  leaves, tree = jax.tree_util.tree_flatten(params)
  leaves = jax.jit(
    lambda ls: [
      p + 0.05 * jax.random.normal(jax.random.fold_in(jax.random.key(1), i), p.shape)
      for i, p in enumerate(ls)
    ]
  )(leaves)
  nnx.update(model, jax.tree_util.tree_unflatten(tree, leaves))
  return model


@pytest.fixture(scope="module")
def rgb_batch():
  x = jax.random.uniform(jax.random.key(2), (2, 8, 8, 3), minval=-1, maxval=1)
  target = jnp.round((x + 1) * 127.5) / 127.5 - 1
  return x, target


def test_matches_reference_forward(rgb_model, rgb_batch):
  x, target = rgb_batch
  key = jax.random.key(5)
  acts_ref, out_ref, kls_ref, zs_ref = _ref_forward_jit(rgb_model, x, key)
  acts = rgb_model.encode(x)
  assert sorted(acts) == [1, 4, 8]
  assert acts[1].shape == (2, 1, 1, 32) and acts[4].shape == (2, 4, 4, 24)
  for r in acts:
    np.testing.assert_allclose(acts[r], acts_ref[r], rtol=1e-6, atol=1e-6)
  dec, (loss, m) = _forward_and_loss(rgb_model, x, target, key)
  np.testing.assert_allclose(dec.out, out_ref, rtol=1e-5, atol=1e-6)
  assert len(dec.kl) == 4
  for kl, kl_ref, z, z_ref in zip(dec.kl, kls_ref, dec.latents, zs_ref, strict=True):
    np.testing.assert_allclose(kl, jnp.sum(kl_ref, axis=(1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(z, z_ref, rtol=1e-5, atol=1e-6)
  distortion = lk.dmol_nll(out_ref, target, num_mixtures=2)
  rate = sum(jnp.sum(k, axis=(1, 2, 3)) for k in kls_ref) / (8 * 8 * 3)
  np.testing.assert_allclose(loss, jnp.mean(distortion + rate), rtol=1e-5)
  np.testing.assert_allclose(m["rate"], jnp.mean(rate), rtol=1e-5)
  np.testing.assert_allclose(jnp.sum(m["kl_per_block"]), m["rate"], rtol=1e-5)
  assert float(m["rate"]) > 0


def test_log_ratio_is_the_sample_log_weight(rgb_model, rgb_batch):
  x, _ = rgb_batch
  dec = _forward(rgb_model, x, jax.random.key(5))
  assert len(dec.log_ratio) == 4 and dec.log_ratio[0].shape == (2,)
  # E_q[log p(z_i) - log q(z_i) | z_<i] = -KL_i(z_<i): the per-sample difference has mean zero
  xb = jnp.repeat(x[:1], 512, axis=0)
  d = _forward(rgb_model, xb, jax.random.key(6))
  total = np.zeros(512)
  for lr, k in zip(d.log_ratio, d.kl, strict=True):
    diff = np.asarray(lr) + np.asarray(jnp.sum(k, axis=-1))
    assert abs(diff.mean()) < 4 * diff.std() / math.sqrt(diff.size) + 1e-6
    total += diff
  assert float(np.mean(sum(np.asarray(jnp.sum(k, axis=-1)) for k in d.kl))) > 0.5
  assert abs(total.mean()) < 4 * total.std() / math.sqrt(total.size)
  # a wrong sign or a missing log-det term would be far outside: e.g. log q - log p
  wrong = -np.asarray(sum(d.log_ratio)) + np.asarray(sum(jnp.sum(k, axis=-1) for k in d.kl))
  assert abs(wrong.mean()) > 10 * wrong.std() / math.sqrt(wrong.size)
  # prior mode: no posterior, zero log-ratios
  prior = _prior(rgb_model, jax.random.key(8), (), jnp.ones((4,)))
  assert all(float(jnp.max(jnp.abs(lr))) == 0.0 for lr in prior.log_ratio)


def test_given_latents_reproduce_posterior_decode(rgb_model, rgb_batch):
  x, _ = rgb_batch
  dec = _forward_and_loss(rgb_model, x, x, jax.random.key(7))[0]
  out = _prior(rgb_model, jax.random.key(8), dec.latents, jnp.full((4,), 0.3)).out
  np.testing.assert_allclose(out, dec.out, rtol=1e-5, atol=1e-6)
  # first k from the posterior: the first k latents are kept, the rest differ
  d2 = _prior(rgb_model, jax.random.key(9), dec.latents[:2], jnp.full((4,), 1.0))
  for i in range(2):
    np.testing.assert_array_equal(d2.latents[i], dec.latents[i])
  assert not np.allclose(d2.latents[3], dec.latents[3])
  rec = jax.jit(lambda m, x, k: m.reconstruct(x, k, num_posterior=2))(
    rgb_model, x, key := jax.random.key(3)
  )
  assert rec.shape == x.shape and float(jnp.max(jnp.abs(rec))) <= 1.0
  with pytest.raises(ValueError, match="num_posterior"):
    rgb_model.reconstruct(x, key, num_posterior=5)


def test_temperature_semantics_and_errors(rgb_model, rgb_batch, monkeypatch):
  key = jax.random.key(4)
  a = _prior(rgb_model, key, (), jnp.full((4,), 0.7))
  np.testing.assert_array_equal(_temperatures(0.7, 4), _temperatures([0.7] * 4, 4))
  # the noise scales with the temperature: block 0 (prior state is the learned constant)
  c = _prior(rgb_model, key, (), jnp.full((4,), 0.35))
  mean0 = rgb_model.decoder.dec_blocks[0].parts(
    jnp.broadcast_to(rgb_model.decoder.bias_xs[0][...], (2, 1, 1, 32))
  )["p_mean"]
  np.testing.assert_allclose(c.latents[0] - mean0, 0.5 * (a.latents[0] - mean0), rtol=1e-4)
  for bad in (0.0, -1.0, [1.0, 1.0, 0.0, 1.0], float("nan")):
    with pytest.raises(ValueError, match="temperature"):
      rgb_model.sample(key, batch_size=1, temperature=bad)
  with pytest.raises(ValueError, match="4 values"):
    rgb_model.sample(key, batch_size=1, temperature=[1.0, 1.0])
  with pytest.raises(ValueError, match="expected images"):
    rgb_model.encode(jnp.zeros((1, 8, 8, 1)))
  with monkeypatch.context() as m, pytest.raises(ValueError, match="targets"):
    m.setattr(jaxtyping.config, "jaxtyping_disable", True)  # the sizes break "b h w c"
    rgb_model.loss(jnp.zeros((1, 8, 8, 3)), jnp.zeros((1, 4, 4, 3)), key)
  with pytest.raises(ValueError, match="latent 0"):
    rgb_model.decode(key, latents=[jnp.zeros((1, 2, 2, 4))])
  with pytest.raises(ValueError, match="batch_size"):
    rgb_model.decode(key)


def test_init_scalings_and_prior_at_init():
  spec = get_preset("tiny8_rgb")
  model = HVAE(spec, rngs=nnx.Rngs(3))
  n_dec, n_enc = spec.num_applications, len(spec.enc_pairs)
  mid = spec.mid_at(8)
  for blk in model.encoder.enc_blocks:
    bound = math.sqrt(1 / n_enc) / math.sqrt(mid)
    k = np.abs(np.asarray(blk.c4.kernel[...]))
    assert k.max() <= bound and k.max() > 0.8 * bound
    assert np.all(np.asarray(blk.c4.bias[...]) == 0)
  for blk in model.decoder.dec_blocks:
    k = np.abs(np.asarray(blk.z_proj.kernel[...]))
    assert k.max() <= math.sqrt(1 / n_dec) / math.sqrt(spec.zdim)
    k = np.abs(np.asarray(blk.resnet.c4.kernel[...]))
    assert k.max() <= math.sqrt(1 / n_dec) / math.sqrt(mid)
    k = np.abs(np.asarray(blk.enc.c4.kernel[...]))  # posterior: no extra scaling
    assert k.max() > 0.8 / math.sqrt(mid)
    assert np.all(np.asarray(blk.prior.c4.kernel[...]) == 0)
    assert np.all(np.asarray(blk.prior.c4.bias[...]) == 0)
  # first-layer bound = 1/sqrt(fan_in) (PyTorch default)
  k = np.abs(np.asarray(model.encoder.in_conv.kernel[...]))
  assert k.max() <= 1 / math.sqrt(27) and k.max() > 0.8 / math.sqrt(27)
  # at init the prior is N(0, I) and adds nothing to the state
  p = model.decoder.dec_blocks[1].parts(jax.random.normal(jax.random.key(0), (1, 4, 4, 16)))
  assert all(float(jnp.max(jnp.abs(p[k]))) == 0 for k in ("p_mean", "p_logstd", "h_prior"))
  assert all(float(jnp.max(jnp.abs(b[...]))) == 0 for b in model.decoder.bias_xs)


def _pure(tree):
  return nnx.to_pure_dict(tree)


def _copy_common(dst, src):
  out = {}
  for k, v in dst.items():
    out[k] = _copy_common(v, src[k]) if isinstance(v, dict) else src[k]
  return out


def test_time_embedding_is_identity_at_init(grey_batch):
  spec = get_preset("micro4", share=2)
  m_emb = HVAE(spec.replace(time_embedding=True, time_frequencies=3), rngs=nnx.Rngs(0))
  m_no = HVAE(spec, rngs=nnx.Rngs(1))
  st = nnx.state(m_no, nnx.Param)
  pure = _copy_common(_pure(st), _pure(nnx.state(m_emb, nnx.Param)))
  nnx.replace_by_pure_dict(st, pure)
  nnx.update(m_no, st)
  key = jax.random.key(1)
  la, ma = _loss_only(m_emb, grey_batch, key)
  lb, mb = _loss_only(m_no, grey_batch, key)
  np.testing.assert_allclose(la, lb, rtol=1e-6)
  np.testing.assert_allclose(ma["kl_per_block"], mb["kl_per_block"], rtol=1e-6)
  film = m_emb.decoder.dec_blocks[0].prior.film
  assert film is not None and film.scale.kernel.shape == (6, 2)
  # the embedding receives gradient (it is not dead): one block with FiLM
  blk = DecBlock(res=4, width=8, zdim=2, num_applications=2, film_features=4, rngs=nnx.Rngs(0))
  h = jax.random.normal(jax.random.key(0), (1, 4, 4, 8))
  emb = jnp.ones((4,))

  def f(b):
    return jnp.sum(b(h, h, jax.random.key(1), emb=emb)[0] ** 2)

  g = nnx.grad(f)(blk)
  g = g if isinstance(g, nnx.State) else nnx.state(g)  # graph mode: State; tree mode: a module
  assert float(jnp.max(jnp.abs(g["resnet"]["film"]["shift"]["kernel"][...]))) > 0
  # times: global (i + 1/2)/N or local within the resolution
  np.testing.assert_allclose(m_emb.decoder._times(), [0.125, 0.375, 0.625, 0.875])
  local = HVAE(spec.replace(time_embedding=True, time_local=True), rngs=nnx.Rngs(0))
  np.testing.assert_allclose(local.decoder._times(), [0.5, 1 / 6, 0.5, 5 / 6])


def _grads_wrt_params(model, x, key):
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def f(p):
    m = nnx.merge(graphdef, p, rest, copy=True)
    loss, metrics = m.loss(x, x, key)
    return loss, metrics

  (loss, metrics), grads = jax.value_and_grad(f, has_aux=True)(params)
  return loss, metrics, grads


_step = jax.jit(_grads_wrt_params)
_loss_only = jax.jit(lambda m, x, k: m.loss(x, x, k))


@pytest.fixture(scope="module")
def grey_batch():
  x = jax.random.uniform(jax.random.key(11), (2, 4, 4, 1), minval=-1, maxval=1)
  return jnp.round((x + 1) * 127.5) / 127.5 - 1


@pytest.fixture(scope="module")
def reference_results(grey_batch):
  cache = {}

  def get(share):
    if share not in cache:
      model = HVAE(get_preset("micro4", share=share), rngs=nnx.Rngs(0))
      cache[share] = _step(model, grey_batch, jax.random.key(3))
    return cache[share]

  return get


@pytest.mark.parametrize(
  ("share", "mode", "unroll"),
  [
    pytest.param(1, "scan", 1, marks=pytest.mark.slow),
    (2, "scan", 1),
    pytest.param(2, "scan_block_remat", 2, marks=pytest.mark.slow),
    pytest.param("full", "scan", 1, marks=pytest.mark.slow),
  ],
)
def test_scan_equals_unrolled(share, mode, unroll, grey_batch, reference_results):
  spec = get_preset("micro4", share=share)
  remat = "block" if mode == "scan_block_remat" else "none"  # the old exec mode "remat"
  policy = ExecPolicy(exec_mode="scan", remat=remat, scan_unroll=unroll)
  model = HVAE(spec, policy=policy, rngs=nnx.Rngs(0))
  loss, metrics, grads = _step(model, grey_batch, jax.random.key(3))
  if share == "full":
    ref = _step(
      model.__class__(spec, policy=ExecPolicy(exec_mode="unroll"), rngs=nnx.Rngs(0)),
      grey_batch,
      jax.random.key(3),
    )
  else:
    ref = reference_results(share)
  np.testing.assert_allclose(loss, ref[0], rtol=1e-5)
  np.testing.assert_allclose(metrics["kl_per_block"], ref[1]["kl_per_block"], rtol=1e-5, atol=1e-7)
  ga, gb = jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(ref[2])
  assert len(ga) == len(gb)
  scale = max(float(jnp.max(jnp.abs(g))) for g in gb)
  for a, b in zip(ga, gb, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize(
  ("mode", "remat"),
  [
    ("unroll", "block"),
    ("unroll", "resolution"),
    pytest.param("scan", "resolution", marks=pytest.mark.slow),
  ],
)
def test_remat_policies_equal_no_remat(mode, remat, grey_batch, reference_results):
  spec = get_preset("micro4", share=2)
  policy = ExecPolicy(exec_mode=mode, remat=remat, remat_overrides=((1, "none"),))
  assert policy.remat_at(4) == remat and policy.remat_at(1) == "none"
  loss, _, grads = _step(HVAE(spec, policy=policy, rngs=nnx.Rngs(0)), grey_batch, jax.random.key(3))
  ref = reference_results(2)
  np.testing.assert_allclose(loss, ref[0], rtol=1e-5)
  ga, gb = jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(ref[2])
  scale = max(float(jnp.max(jnp.abs(g))) for g in gb)
  for a, b in zip(ga, gb, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale)
  with pytest.raises(ValueError, match="remat"):
    ExecPolicy(remat="layer")
  with pytest.raises(TypeError, match="remat"):  # an execution knob, not an architecture field
    get_preset("micro4", remat="block")


def test_shared_model_structure(reference_results):
  spec = get_preset("micro4", share=2)
  assert spec.dec_program == (0, 1, 1, 2)
  model = HVAE(spec, rngs=nnx.Rngs(0))
  assert len(model.decoder.dec_blocks) == 3
  # init scaling by the number of applications (4), not of cells (3)
  k = np.abs(np.asarray(model.decoder.dec_blocks[2].z_proj.kernel[...]))
  bound = math.sqrt(1 / 4) / math.sqrt(2)
  assert k.max() <= bound and k.max() > 0.7 * bound
  # gradients reach every shared cell
  grads = reference_results(2)[2]
  for c in range(3):
    g = grads["decoder"]["dec_blocks"][c]["resnet"]["c1"]["kernel"][...]
    assert float(jnp.max(jnp.abs(g))) > 0


@pytest.mark.parametrize(
  ("share", "components", "mode"),
  [
    (2, ("prior", "residual"), "scan"),
    pytest.param("full", ("posterior", "z_proj"), "scan_block_remat", marks=pytest.mark.slow),
  ],
)
def test_component_mask_scan_equals_unrolled(share, components, mode, grey_batch):
  spec = get_preset("micro4", share=share, share_components=components)
  remat = "block" if mode == "scan_block_remat" else "none"  # the old exec mode "remat"
  model = HVAE(spec, policy=ExecPolicy(exec_mode="scan", remat=remat), rngs=nnx.Rngs(0))
  dec = model.decoder
  own = tuple(c for c in ("posterior", "prior", "z_proj", "residual") if c not in components)
  assert spec.own_parts == own and len(dec.dec_own) == spec.num_applications == 4
  for blk in dec.dec_blocks:  # the cells hold the shared parts only
    assert (blk.enc is None) == ("posterior" not in components)
    assert (blk.resnet is None) == ("residual" not in components)
  for blk in dec.dec_own:
    assert (blk.enc is None) == ("posterior" in components)
  # parameter count: cells x shared parts + applications x own parts
  full = spec_param_count(get_preset("micro4", share=share))
  unshared = spec_param_count(get_preset("micro4"))
  c = spec_param_count(spec)
  assert full.decoder_cells < c.decoder_cells < unshared.decoder_cells
  ref = HVAE(spec, policy=ExecPolicy(exec_mode="unroll"), rngs=nnx.Rngs(0))
  loss, metrics, grads = _step(model, grey_batch, jax.random.key(3))
  loss_r, metrics_r, grads_r = _step(ref, grey_batch, jax.random.key(3))
  np.testing.assert_allclose(loss, loss_r, rtol=1e-5)
  kl, kl_r = metrics["kl_per_block"], metrics_r["kl_per_block"]
  np.testing.assert_allclose(kl, kl_r, rtol=1e-5, atol=1e-7)
  ga, gb = jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(grads_r)
  scale = max(float(jnp.max(jnp.abs(g))) for g in gb)
  for a, b in zip(ga, gb, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale)
  # every application's own parts receive gradient
  for i in range(4):
    g = grads["decoder"]["dec_own"][i]
    assert max(float(jnp.max(jnp.abs(x))) for x in jax.tree_util.tree_leaves(g)) > 0


def test_custom_conv_backward_matches_xla_in_the_model(grey_batch):
  """conv_backward="custom" (mrflax.nn.conv_ops): same loss and gradients, scanned and shared."""
  spec = get_preset("micro4", share=2)
  custom = ExecPolicy(exec_mode="scan", conv_backward="custom")
  loss, _, grads = _step(HVAE(spec, policy=custom, rngs=nnx.Rngs(0)), grey_batch, jax.random.key(3))
  xla = HVAE(spec, policy=custom.replace(conv_backward="xla"), rngs=nnx.Rngs(0))
  loss_r, _, grads_r = _step(xla, grey_batch, jax.random.key(3))
  np.testing.assert_allclose(loss, loss_r, rtol=1e-6)
  ga, gb = jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(grads_r)
  scale = max(float(jnp.max(jnp.abs(g))) for g in gb)
  assert scale > 0
  # float32 sums in a different order: entries near zero differ by up to ~1e-6 of the largest
  # gradient (8.6e-7 seen). A wrong VJP is off by O(scale); the exact equality is checked in
  # float64 in conv_ops_test.
  for a, b in zip(ga, gb, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("shared_sigma", [False, True])
def test_explicit_step_size_changes_applications_at_fixed_parameters(shared_sigma, grey_batch):
  """THEORY.md §4.3: with one shared cell per resolution, N can change without new parameters."""
  spec = get_preset("micro4", share="full", step_size="explicit", shared_sigma=shared_sigma)
  finer = spec.replace(dec_blocks="1x2,4m1,4x5")  # 8 applications instead of 4
  c4, c8 = spec_param_count(spec), spec_param_count(finer)
  assert (c8.total, c8.decoder_cells, c8.num_applications) == (c4.total, c4.decoder_cells, 8)
  m4 = HVAE(spec, rngs=nnx.Rngs(0))
  params = nnx.state(m4, nnx.Param)
  leaves, tree = jax.tree_util.tree_flatten(params)  # perturb: exercise zero-initialised parts
  keys = jax.random.split(jax.random.key(9), len(leaves))
  leaves = [p + 0.2 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys, strict=True)]
  nnx.update(m4, jax.tree_util.tree_unflatten(tree, leaves))
  m8 = HVAE(finer, rngs=nnx.Rngs(1))
  nnx.update(m8, nnx.state(m4, nnx.Param))  # the same parameter tree fits
  assert m8.decoder.dec_blocks[1].dt == 1 / 8 and m4.decoder.dec_blocks[1].dt == 1 / 4
  xb = jnp.repeat(grey_batch, 64, axis=0)
  out4, out8 = _forward(m4, xb, jax.random.key(0)), _forward(m8, xb, jax.random.key(0))
  assert len(out4.kl) == 4 and len(out8.kl) == 8
  r4 = float(jnp.mean(sum(jnp.sum(k, -1) for k in out4.kl)))
  r8 = float(jnp.mean(sum(jnp.sum(k, -1) for k in out8.kl)))
  if shared_sigma:
    # only the drift (Girsanov) term: sum_i O(dt) stays of the same size as N doubles
    assert 0.5 < r8 / r4 < 1.5, (r4, r8)
  else:
    # the variance-mismatch term does not shrink with dt: the rate grows with N
    assert r8 / r4 > 1.5, (r4, r8)


def test_param_counts_reference_table():
  expect = {
    "cifar10": (39_145_700, 7_497_888, 31_647_812),
    "imagenet32": (119_280_868, 18_931_712, 100_349_156),
    "imagenet64": (125_005_860, 26_450_816, 98_555_044),
  }
  for name, (total, enc, dec) in expect.items():
    c = spec_param_count(get_preset(name))
    assert (c.total, c.encoder, c.decoder) == (total, enc, dec), name


def test_param_counts_sharing_table_5_1():
  # THEORY.md Table 5.1 (millions, 2 decimals): total and decoder-block parameters
  table = {
    ("cifar10", 1): (39.15, 31.09),
    ("cifar10", 2): (24.48, 16.42),
    ("cifar10", 3): (19.35, 11.29),
    ("cifar10", 4): (17.15, 9.09),
    ("cifar10", "full"): (11.28, 3.22),
    ("imagenet32", 2): (70.78, 51.10),
    ("imagenet32", 3): (55.21, 35.53),
    ("imagenet32", 4): (47.43, 27.75),
    ("imagenet32", "full"): (25.38, 5.70),
  }
  for (name, k), (total, cells) in table.items():
    c = spec_param_count(get_preset(name, share=k))
    assert round(c.total / 1e6, 2) == total, (name, k)
    assert round(c.decoder_cells / 1e6, 2) == cells, (name, k)
    assert c.num_applications == len(get_preset(name).dec_pairs)
  # exact: k=2 CIFAR-10 decoder cells = 1 x 290,848 + 22 x 733,216
  assert spec_param_count(get_preset("cifar10", share=2)).decoder_cells == 16_421_600


@pytest.mark.parametrize(
  "overrides",
  [
    dict(),
    dict(share=2, time_embedding=True, time_frequencies=4),
    dict(custom_width_str="4:24,1:32", no_bias_above=4),
    dict(share="full", share_components=("prior", "residual"), shared_sigma=True),
  ],
)
def test_count_params_equals_whole_model_shapes(overrides):
  spec = get_preset("tiny8_rgb", **overrides)
  assert spec_param_count(spec) == spec_param_count_full(spec)
  model = HVAE(spec, rngs=nnx.Rngs(0))
  n = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)))
  assert n == spec_param_count(spec).total


@pytest.mark.slow
def test_cifar10_count_from_whole_model_shapes():
  c = spec_param_count_full(get_preset("cifar10"))
  assert (c.total, c.encoder, c.decoder) == (39_145_700, 7_497_888, 31_647_812)


def test_from_vdvae_hparams_and_presets():
  hp = dict(
    width=384,
    zdim=16,
    enc_blocks="32x11,32d2,16x6,16d2,8x6,8d2,4x3,4d4,1x3",
    dec_blocks="1x1,4m1,4x2,8m4,8x5,16m8,16x10,32m16,32x21",
    bottleneck_multiple=0.25,
    custom_width_str="",
    no_bias_above=64,
    num_mixtures=10,
    image_size=32,
    image_channels=3,
    lr=2e-4,
    ema_rate=0.9999,
  )
  assert from_vdvae_hparams(hp) == get_preset("cifar10")
  assert from_vdvae_hparams({**hp, "dataset": "ffhq_256"}).bits == 5
  with pytest.raises(ValueError, match="missing"):
    from_vdvae_hparams({"width": 3})
  with pytest.raises(ValueError, match="unknown preset"):
    get_preset("cifar100")
  for name in preset_names():
    assert get_preset(name).num_applications >= 1


def test_bernoulli_mnist_preset_loss_on_crop():
  spec = get_preset("tiny8", likelihood="bernoulli", crop=1)
  assert spec.data_dims == 36
  model = HVAE(spec, rngs=nnx.Rngs(0))
  x = (jax.random.uniform(jax.random.key(0), (2, 8, 8, 1)) < 0.5).astype(jnp.float32)
  _, m = model.loss(x, x, jax.random.key(1))
  dec = model.forward(x, jax.random.key(1))
  np.testing.assert_allclose(
    m["distortion"], jnp.mean(lk.bernoulli_nll(dec.out, x, crop=1)), rtol=1e-6
  )
  s = model.sample(jax.random.key(2), batch_size=2)
  assert set(np.unique(np.asarray(s)).tolist()) <= {0.0, 1.0}


def test_encoder_scan_equals_unrolled():
  spec = get_preset("micro4", enc_blocks="4x3,4d4,1x2")
  x = jax.random.normal(jax.random.key(0), (2, 4, 4, 1))
  enc = jax.jit(lambda m, x: m.encode(x))
  a = enc(HVAE(spec, rngs=nnx.Rngs(0)), x)
  policy = ExecPolicy(exec_overrides=((4, "scan"), (1, "scan")), remat_overrides=((1, "block"),))
  b = enc(HVAE(spec, policy=policy, rngs=nnx.Rngs(0)), x)
  assert sorted(a) == sorted(b) == [1, 4]
  for r in a:
    np.testing.assert_allclose(a[r], b[r], rtol=1e-5, atol=1e-6)


def _conv_fns(m):
  """The ``conv_general_dilated`` of every convolution of a model."""
  convs = [x for _, x in nnx.iter_graph(m) if isinstance(x, nnx.Conv)]
  assert len(convs) > 10
  return {c.conv_general_dilated for c in convs}


@pytest.mark.parametrize(("backend", "want"), [("cpu", "custom"), ("gpu", "xla"), ("tpu", "xla")])
def test_conv_backward_auto_resolves_by_backend(backend, want, monkeypatch):
  """Default ``conv_backward="auto"``: the custom VJP on XLA:CPU, XLA's own on GPU / TPU."""
  from mrflax.nn import conv_ops

  fns = {"custom": conv_ops.conv_general_dilated, "xla": jax.lax.conv_general_dilated}
  monkeypatch.setattr(jax, "default_backend", lambda: backend)
  assert ExecPolicy().conv_backward == "auto"  # the default
  assert ExecPolicy().resolved().conv_backward == want
  spec = get_preset("micro4")
  m = HVAE(spec, policy=ExecPolicy(exec_overrides=((4, "scan"),)), rngs=nnx.Rngs(0))
  assert m.policy.conv_backward == want
  assert _conv_fns(m) == {fns[want]}  # every conv, stem, stacks and head
  assert _conv_fns(HVAE(spec, rngs=nnx.Rngs(0))) == {fns[want]}
  # explicit choices are kept as given, on any backend
  for given in ("custom", "xla"):
    m = HVAE(spec, policy=ExecPolicy(conv_backward=given), rngs=nnx.Rngs(0))
    assert m.policy.conv_backward == given and _conv_fns(m) == {fns[given]}


def test_bfloat16_policy_elbo_close_to_float32(rgb_batch):
  """Precision policy: bf16 convolutions, float32 parameters, state, KL and likelihood."""
  _, target = rgb_batch
  spec = get_preset("tiny8_rgb")
  ref = HVAE(spec, rngs=nnx.Rngs(0))
  bf16 = ExecPolicy(compute_dtype="bfloat16", conv_backward="custom")
  bf = HVAE(spec, policy=bf16, rngs=nnx.Rngs(0))
  assert bf.decoder.dec_blocks[1].resnet.c2.dtype == jnp.bfloat16
  assert bf.decoder.dec_blocks[1].resnet.c2.kernel[...].dtype == jnp.float32  # fp32 parameters
  loss_ref, m_ref, g_ref = _step(ref, target, jax.random.key(4))
  loss_bf, m_bf, g_bf = _step(bf, target, jax.random.key(4))
  assert loss_bf.dtype == jnp.float32 and m_bf["kl_per_block"].dtype == jnp.float32
  # stated tolerance: the negative ELBO within 1% of float32 (bf16 has an 8-bit mantissa)
  np.testing.assert_allclose(loss_bf, loss_ref, rtol=1e-2)
  np.testing.assert_allclose(m_bf["rate"], m_ref["rate"], rtol=5e-2)
  assert float(jnp.abs(loss_bf - loss_ref)) > 0  # the policy is really in effect
  for a in jax.tree_util.tree_leaves(g_bf):
    assert a.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(a)))
  ga = jnp.concatenate([g.ravel() for g in jax.tree_util.tree_leaves(g_bf)])
  gb = jnp.concatenate([g.ravel() for g in jax.tree_util.tree_leaves(g_ref)])
  cos = float(jnp.dot(ga, gb) / (jnp.linalg.norm(ga) * jnp.linalg.norm(gb)))
  assert cos > 0.99, cos


def test_states_and_gaussian_start(grey_batch):
  spec = get_preset("micro4", share=2)
  model = HVAE(spec, policy=ExecPolicy(exec_mode="scan"), rngs=nnx.Rngs(0))
  f = jax.jit(lambda m, x, k: m.forward(x, k, return_states=True))
  out = f(model, grey_batch, jax.random.key(0))
  assert out.states is not None and len(out.states) == spec.num_applications + 1
  assert [h.shape[1] for h in out.states] == [1, 4, 4, 4, 4]
  np.testing.assert_array_equal(
    out.states[0], jnp.broadcast_to(model.decoder.bias_xs[0][...], out.states[0].shape)
  )
  assert _forward(model, grey_batch, jax.random.key(0)).states is None
  # the states are the real trajectory: block 2 maps states[2] to states[3] with latent 2
  blk = model.decoder.dec_blocks[spec.dec_program[2]]
  acts = model.encode(grey_batch)
  eps = (out.latents[2] - blk.parts(out.states[2], acts[4])["q_mean"]) / jnp.exp(
    blk.parts(out.states[2], acts[4])["q_logstd"]
  )
  nxt = blk.step_from_eps(out.states[2], acts[4], eps).x
  np.testing.assert_allclose(nxt, out.states[3], rtol=1e-4, atol=1e-5)
  # Gaussian start (THEORY 6.4 b): the first state is bias + zeta * N(0, I), in both passes
  noisy = HVAE(spec.replace(start_noise=0.5), rngs=nnx.Rngs(0))
  xb = jnp.repeat(grey_batch, 64, axis=0)
  h0 = f(noisy, xb, jax.random.key(1)).states[0]
  assert abs(float(jnp.std(h0)) - 0.5) < 0.05
  prior = jax.jit(lambda m, k: m.decoder(None, k, batch_size=128, return_states=True))
  assert abs(float(jnp.std(prior(noisy, jax.random.key(2)).states[0])) - 0.5) < 0.05
  with pytest.raises(ValueError, match="start_noise"):
    get_preset("micro4", start_noise=-1.0)
