"""mrflax against frozen outputs of the published PyTorch VDVAE (openai/vdvae), without torch.

``tests/nn/reference/vdvae_*.npz`` were written once by ``benchmarks/pytorch_vdvae.py --freeze``
(command, torch version and peer commit in ``tests/nn/reference/README.md`` and in each file's
``meta_json``). Each test converts the stored PyTorch state dict with
:func:`mrflax.nn.from_vdvae_state_dict`, runs mrflax in float64 on the stored input,
noise and latents, and compares every stored array elementwise to ``RTOL`` relative (the
absolute floor is ``RTOL`` times the array's largest magnitude, so entries near zero do not need
a relative match).

Tolerance: the reference ran in float64 with float32-representable weights, and mrflax in
float64 agrees to ~1e-15 (the DMoL case with its sub-1e-5 bins to ~2e-13). ``RTOL = 1e-10``
is far inside issue 12's 1e-5, on purpose: at these weight scales a tanh-approximate GELU moves
the encoder activations by only ~2e-6 relative and would pass a 1e-5 check.
"""

import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mrflax import likelihoods as lk
from mrflax.nn import from_vdvae_hparams, from_vdvae_state_dict, to_vdvae_state_dict

pytestmark = pytest.mark.slow  # ~1 min on 2 cores: float64 eager passes of two models

RTOL = 1e-10
REF_DIR = pathlib.Path(__file__).parent / "reference"
FILES = ("vdvae_tiny.npz", "vdvae_tiny_widths.npz")
PEER_COMMIT = "ea35b490313bc33e7f8ac63dd8132f3cc1a729b4"


@functools.cache
def _load(name: str) -> dict[str, np.ndarray]:
  with np.load(REF_DIR / name) as f:  # plain arrays and 0-d strings: no pickle
    return {k: f[k] for k in f.files}


def _state_dict(ref: dict) -> dict[str, np.ndarray]:
  p = "state_dict/"
  return {k[len(p) :]: v for k, v in ref.items() if k.startswith(p)}


def _spec(ref: dict):
  return from_vdvae_hparams(json.loads(str(ref["hparams_json"])))


@functools.cache
def _model64(name: str):
  """The converted model with float64 parameters (call under ``jax.enable_x64``)."""
  ref = _load(name)
  model = from_vdvae_state_dict(_state_dict(ref), _spec(ref))
  return jax.tree.map(lambda a: a.astype(jnp.float64) if a.dtype == jnp.float32 else a, model)


def _close(got, want: np.ndarray, what: str) -> None:
  got = np.asarray(got)
  assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
  assert got.dtype == np.float64, f"{what}: {got.dtype}"
  atol = RTOL * float(np.max(np.abs(want)))
  np.testing.assert_allclose(got, want, rtol=RTOL, atol=atol, err_msg=what)


def _n_blocks(ref: dict) -> int:
  return sum(k.startswith("post/kl/") for k in ref)


@pytest.fixture(params=FILES)
def name(request):
  with jax.enable_x64(True):
    yield request.param


def test_reference_file_and_state_dict_round_trip(name):
  ref = _load(name)
  meta = json.loads(str(ref["meta_json"]))
  assert meta["peer"] == "openai/vdvae" and meta["peer_commit"] == PEER_COMMIT
  assert meta["torch"].startswith("2.13.0")
  sd = _state_dict(ref)
  model = from_vdvae_state_dict({"module." + k: v for k, v in sd.items()}, _spec(ref))
  back = to_vdvae_state_dict(model)
  assert sorted(back) == sorted(sd)
  for k, v in sd.items():
    np.testing.assert_array_equal(back[k], v, err_msg=k)


def test_encoder_activations(name):
  ref = _load(name)
  model = _model64(name)
  acts = model.encode(jnp.asarray(ref["x"]))
  want = {int(k.split("/")[1]): v for k, v in ref.items() if k.startswith("enc_act/")}
  assert sorted(acts) == sorted(want)
  for r, a in want.items():
    _close(acts[r], a, f"encoder activation at resolution {r}")


def test_posterior_pass_given_the_reference_latents(name):
  """States entering every block, KL per block, DMoL parameters, distortion, rate and ELBO."""
  ref = _load(name)
  model = _model64(name)
  spec = model.spec
  n = _n_blocks(ref)
  assert n == spec.num_applications
  acts = model.encode(jnp.asarray(ref["x"]))
  zs = [jnp.asarray(ref[f"post/z/{i}"]) for i in range(n)]
  dec = model.decoder(acts, jax.random.key(0), latents=zs, return_states=True)
  for i in range(n + 1):
    _close(dec.states[i], ref[f"post/state/{i}"], f"decoder state entering block {i}")
  for i in range(n):
    _close(dec.kl[i], ref[f"post/kl/{i}"], f"KL of block {i}")
  _close(dec.out, ref["post/logits"], "DMoL parameters (posterior pass)")
  target = jnp.asarray(ref["target"])
  distortion = model.nll(dec.out, target)
  _close(distortion, ref["post/distortion"], "distortion (nats/dim)")
  _close(model.nll(jnp.asarray(ref["post/logits"]), target), ref["post/distortion"], "DMoL NLL")
  rate = sum(jnp.sum(k, axis=-1) for k in dec.kl) / spec.data_dims
  _close(rate, ref["post/rate"], "rate (nats/dim)")
  _close(jnp.mean(distortion + rate), ref["post/elbo"], "negative ELBO (nats/dim)")


def test_posterior_latents_from_the_reference_noise(name):
  """``z = q_mean + exp(q_logstd) * eps`` and the KL, block by block from the reference states."""
  ref = _load(name)
  model = _model64(name)
  acts = model.encode(jnp.asarray(ref["x"]))
  for i, (res, _) in enumerate(model.spec.dec_pairs):
    step = model.decoder.dec_blocks[i].step_from_eps(
      jnp.asarray(ref[f"post/state/{i}"]), acts[res], jnp.asarray(ref[f"post/eps/{i}"])
    )
    _close(step.z, ref[f"post/z/{i}"], f"posterior latent of block {i}")
    _close(step.kl, ref[f"post/kl/{i}"], f"KL of block {i} (from the reference state)")


def test_prior_pass_given_latents(name):
  """VDVAE's ``forward_manual_latents`` against mrflax's prior pass with all latents given."""
  ref = _load(name)
  model = _model64(name)
  zs = [jnp.asarray(ref[f"prior/z/{i}"]) for i in range(_n_blocks(ref))]
  out = model.decode(jax.random.key(0), latents=zs)
  _close(out, ref["prior/logits"], "DMoL parameters (prior pass)")


def test_dmol_nll_every_branch(name):
  ref = _load(name)
  branches = json.loads(str(ref["dmol/branch_counts_json"]))
  assert set(branches) == {"low_edge", "high_edge", "bin", "density"}
  assert min(branches.values()) > 0
  nll = lk.dmol_nll(
    jnp.asarray(ref["dmol/logits"]),
    jnp.asarray(ref["dmol/target"]),
    num_mixtures=_spec(ref).num_mixtures,
  )
  _close(nll, ref["dmol/nll"], "DMoL NLL, every branch")
