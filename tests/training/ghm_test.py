"""Short training runs: the U-Net beats the per-leaf baseline, the ConvNet beats chance; resume."""

import jax
import jax.numpy as jnp
import optax
import pytest
from flax import nnx

from mrflax import ghm as G
from mrflax import training
from mrflax.nn import tree_nets as TN
from mrflax.training import ghm as T


@pytest.fixture(scope="module")
def rhm():
  return G.random_hierarchy_model(jax.random.key(0), v=8, num_classes=8, m=2, s=2, num_levels=3)


def _mse(a, b):
  return float(jnp.mean(jnp.sum((a - b) ** 2, -1)))


@pytest.mark.slow
def test_unet_beats_the_per_leaf_baseline(rhm, tmp_path):
  net = TN.BPUNet(v=8, s=2, num_levels=3, width=32, rngs=nnx.Rngs(0))
  net, hist = T.train_denoiser(
    jax.random.key(1),
    rhm,
    net,
    workdir=str(tmp_path),
    steps=500,
    batch_size=128,
    learning_rate=3e-3,
    steps_per_call=100,
  )
  assert hist.loss[-1] < hist.loss[0]
  sigma = 0.5
  x = G.one_hot(G.sample(jax.random.key(2), rhm, 1000), 8)
  z = G.add_noise(jax.random.key(3), x, sigma=sigma)
  d_star = G.leaf_posteriors(rhm, z, sigma=sigma)
  local = G.local_denoiser(jnp.log(G.prior_marginals(rhm)[-1]), z, sigma=sigma)
  f = T.predict(T.pure_denoiser(net), z, jnp.full((1000,), sigma))
  mse_bp, mse_local, mse_net = _mse(x, d_star), _mse(x, local), _mse(x, f)
  assert mse_bp < mse_net < mse_local
  # Close to THEORY §7.7's CI bar (excess below half of the local-minus-BP gap): this run
  # measured 0.47 of the gap; the assertion leaves a margin.
  assert _mse(f, d_star) < 0.6 * (mse_local - mse_bp)


@pytest.mark.slow
def test_convnet_beats_chance_by_a_wide_margin(rhm, tmp_path):
  net = TN.ConvNetClassifier(v=8, num_classes=8, s=2, num_levels=3, width=32, rngs=nnx.Rngs(0))
  net, _ = T.train_classifier(
    jax.random.key(1), rhm, net, workdir=str(tmp_path), sigma=0.5, steps=300, batch_size=128
  )
  levels = G.sample_levels(jax.random.key(2), rhm, 2000)
  z = G.add_noise(jax.random.key(3), G.one_hot(levels[-1], 8), sigma=0.5)
  logits = T.predict(T.pure_logits(net), z, jnp.full((2000,), 0.5))
  acc = float(jnp.mean(jnp.argmax(logits, -1) == levels[0]))
  bp_acc = float(jnp.mean(jnp.argmax(G.root_posterior(rhm, z, sigma=0.5), -1) == levels[0]))
  assert acc > 0.5  # chance is 1/8
  assert acc <= bp_acc + 0.03  # and BP is the ceiling (up to sampling noise)


def test_fixed_training_set_and_state_is_written_back(tmp_path):
  rhm = G.random_hierarchy_model(jax.random.key(0), v=4, num_classes=4, m=2, s=2, num_levels=2)
  levels = G.sample_levels(jax.random.key(5), rhm, 64)
  net = TN.BPUNet(v=4, s=2, num_levels=2, width=8, rngs=nnx.Rngs(0))
  before = jax.tree.map(jnp.copy, nnx.state(net, nnx.Param))
  net2, hist = T.train_denoiser(
    jax.random.key(1),
    rhm,
    net,
    workdir=str(tmp_path),
    steps=6,
    batch_size=16,
    steps_per_call=3,
    train_leaves=levels[-1],
  )
  assert hist.step == [3, 6] and len(hist.loss) == 2
  after = nnx.state(net2, nnx.Param)
  diffs = jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), before, after))
  assert max(diffs) > 0  # the trained weights came back from the jitted step


def test_bad_arguments_raise(rhm, tmp_path):
  w = str(tmp_path)
  net = TN.BPUNet(v=8, s=2, num_levels=3, width=8, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="loss"):
    T.train_denoiser(jax.random.key(0), rhm, net, workdir=w, steps=1, loss="l1")
  with pytest.raises(ValueError, match="sigma_min"):
    T.train_denoiser(jax.random.key(0), rhm, net, workdir=w, steps=1, sigma_min=0.0)
  with pytest.raises(ValueError, match="8 leaves"):
    T.train_denoiser(
      jax.random.key(0), rhm, net, workdir=w, steps=1, train_leaves=jnp.zeros((4, 7), int)
    )
  clf = TN.ConvNetClassifier(v=8, num_classes=8, s=2, num_levels=3, width=8, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="train_labels"):
    T.train_classifier(
      jax.random.key(0),
      rhm,
      clf,
      workdir=w,
      sigma=0.5,
      steps=1,
      train_leaves=jnp.zeros((4, 8), int),
    )
  with pytest.raises(ValueError, match="multiple of steps_per_call"):
    T.train_denoiser(jax.random.key(0), rhm, net, workdir=w, steps=5, steps_per_call=2)


def test_schedule_is_adam_with_warmup_then_cosine():
  """The one optimizer factory reproduces optax's Adam + warm-up cosine on the step counter."""
  cfg = T.step_config(learning_rate=2e-3, steps=40, warmup_steps=10)
  want = optax.warmup_cosine_decay_schedule(0.0, 2e-3, 10, 40)
  for t in (0, 5, 10, 17, 39, 40):
    assert float(cfg.learning_rate(jnp.array(t))) == pytest.approx(float(want(t)), abs=1e-9)
  params = {"w": jnp.array([1.0, -2.0])}
  grads = {"w": jnp.array([0.3, 0.1])}
  tx = cfg.transform()
  u, _ = tx.update(grads, tx.init(params), params)
  ref, _ = optax.adam(1.0).update(grads, optax.adam(1.0).init(params), params)
  assert jnp.allclose(-u["w"], ref["w"], atol=1e-7)  # the step scales by -lr


def _digest(net):
  return training.params_digest(nnx.state(net, nnx.Param))


def test_interrupted_training_resumes_bit_for_bit_and_a_finished_run_is_loaded(tmp_path):
  rhm = G.random_hierarchy_model(jax.random.key(0), v=4, num_classes=4, m=2, s=2, num_levels=2)
  make = lambda: TN.BPUNet(v=4, s=2, num_levels=2, width=8, rngs=nnx.Rngs(0))
  kw = dict(batch_size=16, steps_per_call=2, checkpoint_every=2, warmup_steps=2)
  full, hist = T.train_denoiser(
    jax.random.key(1), rhm, make(), workdir=str(tmp_path / "full"), steps=8, **kw
  )
  # the "interrupted" run dies at step 4, before that step's checkpoint: it resumes from step 2
  part = str(tmp_path / "part")

  def crash(step, _):
    if step == 4:
      raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    T.train_denoiser(jax.random.key(1), rhm, make(), workdir=part, steps=8, on_log=crash, **kw)
  resumed, hist2 = T.train_denoiser(jax.random.key(1), rhm, make(), workdir=part, steps=8, **kw)
  assert _digest(resumed) == _digest(full)
  assert hist2.step == hist.step == [2, 4, 6, 8] and hist2.loss == hist.loss
  # a finished run is loaded, not trained again (and a different key would have changed it)
  again, hist3 = T.train_denoiser(
    jax.random.key(9), rhm, make(), workdir=str(tmp_path / "full"), steps=8, **kw
  )
  assert _digest(again) == _digest(full) and hist3 == hist
  other, _ = T.train_denoiser(
    jax.random.key(9), rhm, make(), workdir=str(tmp_path / "other"), steps=8, **kw
  )
  assert _digest(other) != _digest(full)
