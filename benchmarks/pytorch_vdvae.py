"""Against the published PyTorch VDVAE: converter equivalence and train-step speed, one machine.

Needs PyTorch (``pip install torch``; the ``convert`` extra) and a checkout of openai/vdvae
(``git clone https://github.com/openai/vdvae``; only ``vae.py`` and ``vae_helpers.py`` are
imported). Nothing of that repository is part of mrflax.

* ``--check``: builds the reference ``VAE`` for a small config with random weights (every
  zero-initialised piece perturbed), converts its ``state_dict`` with
  :func:`mrflax.nn.from_vdvae_state_dict`, and compares, in float64: the encoder
  activations at every resolution, the decoder output given the same latents (the reference's
  ``forward_manual_latents`` against mrflax's prior pass with given latents), the DMoL
  likelihood of that output, and ``to_vdvae_state_dict`` back against the original.
* ``--bench``: one training step (forward, backward, ``torch.optim.AdamW`` with VDVAE's
  settings) of the reference model for a preset (``--preset``: default CIFAR-10, batch 8; or
  ``fashion32_rgb``, the CPU experiments' model with 3 channels and the DMoL), fp32, and the
  same step of mrflax (``--mrflax-mode``, ``--mrflax-remat``) interleaved with it round by round
  in this process (:func:`bench`): the speed-up with a 95% interval, each step's fraction of
  the matmul peak measured in the same run, and the goal of issue 14 item 2.
* ``--freeze DIR``: needs only torch and numpy (no jax, no mrflax). For each config of
  ``FROZEN`` builds the reference ``VAE`` in float64 with perturbed random weights as in
  ``--check`` and writes ``DIR/vdvae_<name>.npz``: the state dict, an input batch and target,
  the encoder activations, one posterior pass with recorded noise (states entering each block,
  noise, latents, KL per block, decoder output, DMoL NLL, rate, ELBO), a prior pass with given
  latents, and a DMoL case that reaches every branch of the loss. ``tests/nn/reference/``
  holds the files, their README and ``tests/nn/pytorch_reference_test.py`` (torch-free).

The last line is one JSON object.

Run: ``python -m benchmarks.pytorch_vdvae --vdvae_dir DIR --check`` (or ``--bench``, or
``--freeze tests/nn/reference``).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import statistics
import subprocess
import sys
import types

import numpy as np

SMALL = dict(
  width=16,
  zdim=4,
  enc_blocks="8x1,8d2,4x1,4d4,1x1",
  dec_blocks="1x1,4m1,4x1,8m4",
  image_size=8,
  image_channels=3,
  num_mixtures=2,
  custom_width_str="",
  bottleneck_multiple=0.25,
  no_bias_above=64,
  dataset="cifar10",
)


# --freeze: the configs written to tests/nn/reference (all reach pooling and unpooling steps).
FROZEN = {
  "tiny": {},
  # per-resolution widths (encoder channel padding, mixin channel slicing) and no start state at
  # the image resolution (no_bias_above)
  "tiny_widths": dict(custom_width_str="4:24,1:32", no_bias_above=4),
}


def _reference(vdvae_dir: str):
  sys.path.insert(0, vdvae_dir)
  return importlib.import_module("vae"), importlib.import_module("vae_helpers")


def _hparams(**kw) -> types.SimpleNamespace:
  return types.SimpleNamespace(**{**SMALL, **kw})


def hparams_for(spec) -> types.SimpleNamespace:
  """VDVAE hyper-parameters that build the same model as the mrflax ``spec``."""
  return _hparams(
    width=spec.width,
    zdim=spec.zdim,
    enc_blocks=spec.enc_blocks,
    dec_blocks=spec.dec_blocks,
    image_size=spec.image_size,
    image_channels=spec.image_channels,
    num_mixtures=spec.num_mixtures,
  )


def check(vae_mod, helpers) -> dict:
  import jax
  import jax.numpy as jnp
  import torch

  from mrflax import likelihoods as lk
  from mrflax.nn import from_vdvae_hparams, from_vdvae_state_dict, to_vdvae_state_dict

  torch.manual_seed(0)
  h = _hparams()
  ref = vae_mod.VAE(h).double()
  with torch.no_grad():  # perturb every parameter: zero-initialised parts must matter too
    for p in ref.parameters():
      p.add_(0.05 * torch.randn_like(p))
      p.copy_(p.float().double())  # float32-representable: mrflax stores float32 parameters
  state = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
  spec = from_vdvae_hparams(vars(h))
  out: dict = {"keys": len(state)}
  with jax.enable_x64(True):
    model = from_vdvae_state_dict(state, spec)
    model = jax.tree.map(lambda a: a.astype(jnp.float64) if a.dtype == jnp.float32 else a, model)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(2, 8, 8, 3))
    target = np.round((x + 1) * 127.5) / 127.5 - 1
    acts_ref = ref.encoder(torch.from_numpy(x))
    acts = model.encode(jnp.asarray(x))
    out["encoder_max_abs_diff"] = {
      str(r): float(np.max(np.abs(np.asarray(acts[r]) - a.detach().numpy().transpose(0, 2, 3, 1))))
      for r, a in acts_ref.items()
    }
    pairs = spec.dec_pairs
    latents = [rng.normal(size=(2, r, r, spec.zdim)) for r, _ in pairs]
    px = ref.decoder.forward_manual_latents(
      2, [torch.from_numpy(z.transpose(0, 3, 1, 2).copy()) for z in latents]
    )
    logits_ref = ref.decoder.out_net(px).detach().numpy()
    logits = np.asarray(model.decode(jax.random.key(0), latents=[jnp.asarray(z) for z in latents]))
    out["decoder_max_abs_diff"] = float(np.max(np.abs(logits - logits_ref)))
    nll_ref = helpers.discretized_mix_logistic_loss(
      torch.from_numpy(target), torch.from_numpy(logits_ref)
    ).numpy()
    nll = np.asarray(lk.dmol_nll(jnp.asarray(logits_ref), jnp.asarray(target), num_mixtures=2))
    out["dmol_max_abs_diff"] = float(np.max(np.abs(nll - nll_ref)))
    out["dmol_nats_per_dim"] = nll_ref.tolist()
    back = to_vdvae_state_dict(model)
    out["roundtrip_max_abs_diff"] = max(
      float(np.max(np.abs(back[k] - v))) for k, v in state.items()
    )
    out["roundtrip_same_keys"] = sorted(back) == sorted(state)
  tol = 1e-10
  out["passed"] = bool(
    max(out["encoder_max_abs_diff"].values()) < tol
    and out["decoder_max_abs_diff"] < tol
    and out["dmol_max_abs_diff"] < tol
    and out["roundtrip_max_abs_diff"] == 0.0
    and out["roundtrip_same_keys"]
  )
  return out


def _nhwc(t) -> np.ndarray:
  return np.ascontiguousarray(t.detach().numpy().transpose(0, 2, 3, 1))


def _peer_commit(vdvae_dir: str) -> str:
  try:
    return subprocess.run(
      ["git", "-C", vdvae_dir, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown"


def _dmol_stress(rng: np.random.Generator, m: int) -> tuple[np.ndarray, np.ndarray]:
  """DMoL parameters and targets that reach every branch of VDVAE's loss.

  Means in ``[-1.2, 1.2]``, log-scales in ``[-8, 0.5]`` (some clamped at -7, some so narrow that
  the bin mass falls below 1e-5), large coefficients and mixture logits; targets on the 8-bit
  grid with both edges present.
  """
  b, r = 2, 8
  logits = rng.normal(scale=2.0, size=(b, r, r, m))
  per_c = np.concatenate(
    [
      rng.uniform(-1.2, 1.2, size=(b, r, r, 3, m)),
      rng.uniform(-8.0, 0.5, size=(b, r, r, 3, m)),
      rng.normal(scale=1.5, size=(b, r, r, 3, m)),
    ],
    axis=-1,
  ).reshape(b, r, r, 9 * m)
  target = rng.integers(0, 256, size=(b, r, r, 3)) / 127.5 - 1
  target[0, 0, :4] = -1.0
  target[1, 0, :4] = 1.0
  return np.concatenate([logits, per_c], axis=-1), target


def _dmol_branches(params: np.ndarray, x: np.ndarray) -> dict[str, int]:
  """How many (sub-pixel, mixture) terms take each branch of VDVAE's DMoL loss (8-bit)."""
  m = params.shape[-1] // 10
  p = params[..., m:].reshape(*x.shape, 3 * m)
  mean, log_s = p[..., :m], np.maximum(p[..., m : 2 * m], -7.0)
  c = np.tanh(p[..., 2 * m :])
  xe = x[..., None]
  mu = np.stack(
    [
      mean[..., 0, :],
      mean[..., 1, :] + c[..., 0, :] * xe[..., 0, :],
      mean[..., 2, :] + c[..., 1, :] * xe[..., 0, :] + c[..., 2, :] * xe[..., 1, :],
    ],
    axis=-2,
  )
  inv = np.exp(-log_s)

  def sigmoid(v):
    return 0.5 + 0.5 * np.tanh(v / 2)

  delta = sigmoid(inv * (xe - mu + 1 / 255)) - sigmoid(inv * (xe - mu - 1 / 255))
  xb = np.broadcast_to(xe, mu.shape)
  low, high = xb < -0.999, xb > 0.999
  mid = ~low & ~high
  return dict(
    low_edge=int(low.sum()),
    high_edge=int(high.sum()),
    bin=int((mid & (delta > 1e-5)).sum()),
    density=int((mid & (delta <= 1e-5)).sum()),
  )


def freeze_one(vae_mod, helpers, overrides: dict, seed: int = 0) -> dict[str, np.ndarray]:
  """The frozen reference arrays of one config (float64 computation; see ``--freeze``)."""
  import torch

  torch.set_default_dtype(torch.float64)  # VDVAE's pad_channels / DMoL build default-dtype zeros
  torch.manual_seed(seed)
  h = _hparams(**overrides)
  ref = vae_mod.VAE(h).double().eval()
  with torch.no_grad():  # perturb every parameter: zero-initialised parts must matter too
    for p in ref.parameters():
      p.add_(0.05 * torch.randn_like(p))
      p.copy_(p.float().double())  # float32-representable: mrflax stores float32 parameters
  out: dict[str, np.ndarray] = {
    "hparams_json": np.array(json.dumps(vars(h), sort_keys=True)),
  }
  for k, v in ref.state_dict().items():
    out[f"state_dict/{k}"] = v.detach().numpy().astype(np.float32)
  rng = np.random.default_rng(seed)
  b, s, c = 2, h.image_size, h.image_channels
  x = rng.normal(size=(b, s, s, c))
  target = rng.integers(0, 256, size=(b, s, s, c)) / 127.5 - 1
  target[0, 0, :2] = -1.0
  target[1, 0, :2] = 1.0
  out["x"], out["target"] = x, target
  dec = ref.decoder
  blocks = list(dec.dec_blocks)

  # posterior noise, fixed in advance (NCHW), consumed in block order by the patched sampler
  eps = [rng.normal(size=(b, h.zdim, blk.base, blk.base)) for blk in blocks]
  queue = list(eps)

  def draw(mu, logsigma):
    e = torch.from_numpy(queue.pop(0))
    assert e.shape == mu.shape, (e.shape, mu.shape)
    return torch.exp(logsigma) * e + mu

  states: list = []  # the state entering each block, after any mixin (the input of its prior)
  final: dict = {}  # each block's output state
  hooks = [blk.prior.register_forward_pre_hook(lambda _m, a: states.append(a[0])) for blk in blocks]
  hooks += [
    blk.register_forward_hook(lambda m, _a, o, i=i: final.__setitem__(i, o[0][m.base]))
    for i, blk in enumerate(blocks)
  ]
  original = vae_mod.draw_gaussian_diag_samples
  vae_mod.draw_gaussian_diag_samples = draw
  try:
    with torch.no_grad():
      xt, tt = torch.from_numpy(x), torch.from_numpy(target)
      acts = ref.encoder(xt)
      px_z, stats = dec.forward(acts, get_latents=True)
      assert not queue
      last = max(i for i, blk in enumerate(blocks) if blk.base == h.image_size)
      states.append(final[last])  # the final state at the image resolution, before gain/bias
      logits = dec.out_net(px_z)
      distortion = helpers.discretized_mix_logistic_loss(tt, logits, low_bit=False)
      assert torch.equal(distortion, dec.out_net.nll(px_z, tt))
      kl = [st["kl"].sum(dim=(2, 3)) for st in stats]
      rate = sum(k.sum(dim=1) for k in kl) / np.prod(x.shape[1:])
      queue.extend(eps)  # VAE.forward itself, on the same noise: the same loss terms
      whole = ref.forward(xt, tt)
      assert not queue
      assert torch.allclose(whole["elbo"], (distortion + rate).mean(), rtol=1e-14, atol=0)
      assert torch.allclose(whole["rate"], rate.mean(), rtol=1e-14, atol=0)
  finally:
    vae_mod.draw_gaussian_diag_samples = original
    for hk in hooks:
      hk.remove()
  n = len(blocks)
  assert len(states) == 2 * n + 1  # pre-hooks fired in both posterior passes
  states = states[: n + 1]  # the first pass, then its final state (the second pass follows)
  for r, a in acts.items():
    out[f"enc_act/{r}"] = _nhwc(a)
  for i in range(n):
    out[f"post/state/{i}"] = _nhwc(states[i])
    out[f"post/eps/{i}"] = np.ascontiguousarray(eps[i].transpose(0, 2, 3, 1))
    out[f"post/z/{i}"] = _nhwc(stats[i]["z"])
    out[f"post/kl/{i}"] = kl[i].numpy()
  out[f"post/state/{n}"] = _nhwc(states[n])
  out["post/logits"] = logits.numpy()
  out["post/distortion"] = distortion.numpy()
  out["post/rate"] = rate.numpy()
  out["post/elbo"] = whole["elbo"].numpy()

  # prior pass with given latents (VDVAE's forward_manual_latents)
  zs = [rng.normal(size=(b, blk.base, blk.base, h.zdim)) for blk in blocks]
  with torch.no_grad():
    pz = dec.forward_manual_latents(b, [torch.from_numpy(z.transpose(0, 3, 1, 2)) for z in zs])
    out["prior/logits"] = dec.out_net(pz).numpy()
  for i, z in enumerate(zs):
    out[f"prior/z/{i}"] = z

  # DMoL alone, every branch
  params, t = _dmol_stress(rng, h.num_mixtures)
  out["dmol/logits"], out["dmol/target"] = params, t
  out["dmol/nll"] = helpers.discretized_mix_logistic_loss(
    torch.from_numpy(t), torch.from_numpy(params), low_bit=False
  ).numpy()
  br = _dmol_branches(params, t)
  assert min(br.values()) > 0, br
  out["dmol/branch_counts_json"] = np.array(json.dumps(br))
  return out


def freeze(vae_mod, helpers, vdvae_dir: str, out_dir: str, command: str) -> dict:
  import torch

  os.makedirs(out_dir, exist_ok=True)
  meta = dict(
    command=command,
    torch=torch.__version__,
    numpy=np.__version__,
    peer="openai/vdvae",
    peer_commit=_peer_commit(vdvae_dir),
    date=datetime.date.today().isoformat(),
  )
  written = {}
  dtype = torch.get_default_dtype()
  for seed, (name, overrides) in enumerate(FROZEN.items()):
    try:
      arrays = freeze_one(vae_mod, helpers, overrides, seed=seed)
    finally:
      torch.set_default_dtype(dtype)  # --bench after --freeze builds its model in float32
    arrays["meta_json"] = np.array(json.dumps(meta, sort_keys=True))
    path = os.path.join(out_dir, f"vdvae_{name}.npz")
    np.savez_compressed(path, **arrays)
    written[path] = dict(
      bytes=os.path.getsize(path),
      arrays=len(arrays),
      dmol_branches=json.loads(str(arrays["dmol/branch_counts_json"])),
    )
  return dict(meta=meta, written=written)


# --bench: the goals of issue 14 item 2 (mrflax images/s over PyTorch's, same CPU, one process).
BENCH_GOALS = {"cifar10": 1.25, "fashion32_rgb": 1.5}


def bench_spec(preset: str):
  """The ``HVAESpec`` of a ``--bench`` preset: a name of :func:`mrflax.nn.get_preset`, or
  ``"fashion32_rgb"``: the Fashion-MNIST preset's blocks and widths (``fashion32``) with 3
  channels, the DMoL and no crop, so that the PyTorch VDVAE can build the same model."""
  import dataclasses

  from mrflax.nn import get_preset

  if preset == "fashion32_rgb":
    base = get_preset("fashion32")
    return dataclasses.replace(base, image_channels=3, likelihood="dmol", crop=0)
  return get_preset(preset)


def torch_train_step(vae_mod, spec, batch: int, *, seed: int = 0):
  """The PyTorch VDVAE's train step for ``spec`` (fp32; AdamW with VDVAE's settings, gradient
  clipping at 200 as in its ``train.py``) on a fixed random batch: ``step() -> loss``."""
  import torch

  torch.manual_seed(seed)
  model = vae_mod.VAE(hparams_for(spec))
  opt = torch.optim.AdamW(
    model.parameters(), lr=2e-4, betas=(0.9, 0.9), eps=1e-8, weight_decay=0.01
  )
  x = torch.rand(batch, spec.image_size, spec.image_size, 3) * 2 - 1
  target = torch.round((x + 1) * 127.5) / 127.5 - 1

  def step():
    opt.zero_grad(set_to_none=True)
    stats = model.forward(x, target)
    stats["elbo"].backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 200.0)
    opt.step()
    return float(stats["elbo"])

  return model, step


def bench(
  vae_mod,
  preset: str,
  batch: int,
  rounds: int,
  mrflax_mode: str,
  mrflax_remat: str = "none",
  warmup_rounds: int = 1,
) -> dict:
  """PyTorch's and mrflax's train step of one model, interleaved round by round in one process.

  Each round runs both steps once (PyTorch first in even rounds, mrflax first in odd ones:
  :func:`benchmarks.common.paired_rounds`); ``speedup`` is PyTorch's step time over mrflax's
  (same batch, so images/s of mrflax over PyTorch's), its geometric mean over the rounds with a
  95% interval (:func:`benchmarks.common.ratio_stats`). Both steps' FLOP rates are given as
  fractions of a dense matmul peak measured in the same process, from the model's FLOPs (XLA's
  count of the unrolled mrflax step; the two programs compute the same model).
  """
  import torch

  from benchmarks.common import (
    hvae_train_step,
    matmul_flops_per_s,
    paired_rounds,
    ratio_stats,
    unrolled_flops,
  )
  from mrflax.nn import ExecPolicy, spec_param_count

  spec = bench_spec(preset)
  model, torch_step = torch_train_step(vae_mod, spec, batch)
  torch_params = sum(p.numel() for p in model.parameters())
  policy = ExecPolicy(exec_mode=mrflax_mode, remat=mrflax_remat)
  b = hvae_train_step(spec, batch=batch, policy=policy)
  print(f"[pytorch_vdvae] {preset}: mrflax compile {b['compile_s']:.1f} s", flush=True)
  flops = unrolled_flops(spec, batch=batch, policy=policy)
  peak = matmul_flops_per_s()
  print(f"[pytorch_vdvae] matmul peak {peak / 1e9:.1f} GFLOP/s, step {flops:.3g} FLOPs", flush=True)
  t = paired_rounds(torch_step, b["step"], rounds=rounds, warmup_rounds=warmup_rounds)
  torch_s, jax_s = statistics.median(t["a"]), statistics.median(t["b"])
  st = ratio_stats(t["a"], t["b"])
  goal = BENCH_GOALS.get(preset)
  print(
    f"[pytorch_vdvae] {preset} batch {batch}: torch {torch_s:.3f} s, mrflax ({mrflax_mode}, "
    f"remat {mrflax_remat}) {jax_s:.3f} s per step; mrflax/torch images/s "
    f"{st['geomean']:.3f} [{st['ci_low']:.3f}, {st['ci_high']:.3f}]"
    + (f", goal >= {goal}: {'met' if st['ci_low'] >= goal else 'not met'}" if goal else ""),
    flush=True,
  )
  return dict(
    preset=preset,
    batch=batch,
    params_mrflax=spec_param_count(spec).total,
    params_torch=int(torch_params),
    torch=torch.__version__,
    torch_threads=torch.get_num_threads(),
    torch_step_s=round(torch_s, 4),
    torch_images_per_s=round(batch / torch_s, 3),
    mrflax_mode=mrflax_mode,
    mrflax_remat=mrflax_remat,
    mrflax_step_s=round(jax_s, 4),
    mrflax_images_per_s=round(batch / jax_s, 3),
    mrflax_compile_s=round(b["compile_s"], 1),
    rounds=rounds,
    warmup_rounds=warmup_rounds,
    times_s={"torch": [round(x, 4) for x in t["a"]], "mrflax": [round(x, 4) for x in t["b"]]},
    speedup_mrflax_over_torch=round(st["geomean"], 3),
    speedup_ci=[round(st["ci_low"], 3), round(st["ci_high"], 3)],
    speedup_goal=goal,
    goal_met=None if goal is None else bool(st["ci_low"] >= goal),
    flops=flops,
    matmul_peak_flops_per_s=round(peak),
    torch_peak_fraction=round(flops / torch_s / peak, 3),
    mrflax_peak_fraction=round(flops / jax_s / peak, 3),
  )


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--vdvae_dir", required=True, help="checkout of openai/vdvae")
  ap.add_argument("--check", action="store_true")
  ap.add_argument("--bench", action="store_true")
  ap.add_argument("--freeze", metavar="DIR", help="write the frozen references (torch only)")
  ap.add_argument("--preset", default="cifar10")
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--rounds", type=int, default=3, help="--bench: paired rounds kept")
  ap.add_argument("--warmup-rounds", type=int, default=1, help="--bench: rounds discarded")
  ap.add_argument("--mrflax-mode", default="unroll", choices=("unroll", "scan"))
  ap.add_argument("--mrflax-remat", default="none", choices=("none", "block", "resolution"))
  args = ap.parse_args()
  vae_mod, helpers = _reference(args.vdvae_dir)
  result: dict = {"benchmark": "pytorch_vdvae"}
  if args.freeze:
    command = "python -m benchmarks.pytorch_vdvae " + " ".join(sys.argv[1:])
    result["freeze"] = freeze(vae_mod, helpers, args.vdvae_dir, args.freeze, command)
    if not (args.check or args.bench):
      print(json.dumps(result), flush=True)
      return
  from benchmarks.common import emit, machine

  if args.check:
    result["check"] = check(vae_mod, helpers)
    print(f"[pytorch_vdvae] check: {result['check']}", flush=True)
  if args.bench:
    result["bench"] = bench(
      vae_mod,
      args.preset,
      args.batch,
      args.rounds,
      args.mrflax_mode,
      args.mrflax_remat,
      args.warmup_rounds,
    )
  emit({**result, **machine()})


if __name__ == "__main__":
  main()
