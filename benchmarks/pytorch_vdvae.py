"""Against the published PyTorch VDVAE: converter equivalence and train-step speed, one machine.

Needs PyTorch (``pip install torch``; the ``convert`` extra) and a checkout of openai/vdvae
(``git clone https://github.com/openai/vdvae``; only ``vae.py`` and ``vae_helpers.py`` are
imported). Nothing of that repository is part of mrflax.

* ``--check``: builds the reference ``VAE`` for a small config with random weights (every
  zero-initialised piece perturbed), converts its ``state_dict`` with
  :func:`mrflax.nn.convert.from_vdvae_state_dict`, and compares, in float64: the encoder
  activations at every resolution, the decoder output given the same latents (the reference's
  ``forward_manual_latents`` against mrflax's prior pass with given latents), the DMoL
  likelihood of that output, and ``to_vdvae_state_dict`` back against the original.
* ``--bench``: one training step (forward, backward, ``torch.optim.AdamW`` with VDVAE's
  settings) of the reference model for a preset (default CIFAR-10, batch 8), fp32, timed like
  mrflax's ``benchmarks/hvae_step.py`` (warm-up, median of ``--repeats``), and the same step of
  mrflax in this process right after (``--mrflax-mode``), so both run on the same machine state.

The last line is one JSON object.

Run: ``python -m benchmarks.pytorch_vdvae --vdvae_dir DIR --check`` or ``... --bench``.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
import types

import numpy as np

from benchmarks.common import emit, machine

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


def _reference(vdvae_dir: str):
  sys.path.insert(0, vdvae_dir)
  return importlib.import_module("vae"), importlib.import_module("vae_helpers")


def _hparams(**kw) -> types.SimpleNamespace:
  return types.SimpleNamespace(**{**SMALL, **kw})


def check(vae_mod, helpers) -> dict:
  import jax
  import jax.numpy as jnp
  import torch

  from mrflax import likelihoods as lk
  from mrflax.nn import convert, presets

  torch.manual_seed(0)
  h = _hparams()
  ref = vae_mod.VAE(h).double()
  with torch.no_grad():  # perturb every parameter: zero-initialised parts must matter too
    for p in ref.parameters():
      p.add_(0.05 * torch.randn_like(p))
      p.copy_(p.float().double())  # float32-representable: mrflax stores float32 parameters
  state = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
  spec = presets.from_vdvae_hparams(vars(h))
  out: dict = {"keys": len(state)}
  with jax.enable_x64(True):
    model = convert.from_vdvae_state_dict(state, spec)
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
    back = convert.to_vdvae_state_dict(model)
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


def bench(vae_mod, preset: str, batch: int, repeats: int, mrflax_mode: str) -> dict:
  import torch

  from benchmarks.common import hvae_train_step
  from mrflax.nn import presets

  spec = presets.get(preset)
  h = _hparams(
    width=spec.width,
    zdim=spec.zdim,
    enc_blocks=spec.enc_blocks,
    dec_blocks=spec.dec_blocks,
    image_size=spec.image_size,
    image_channels=spec.image_channels,
    num_mixtures=spec.num_mixtures,
  )
  torch.manual_seed(0)
  model = vae_mod.VAE(h)
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

  step()
  times = []
  for i in range(repeats):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
    print(f"[pytorch_vdvae] torch step {i}: {times[-1]:.2f} s", flush=True)
  torch_s = statistics.median(times)
  b = hvae_train_step(presets.get(preset, exec_mode=mrflax_mode), batch=batch)
  b["step"]()
  jt = []
  for i in range(repeats):
    t0 = time.perf_counter()
    import jax

    jax.block_until_ready(b["step"]())
    jt.append(time.perf_counter() - t0)
    print(f"[pytorch_vdvae] mrflax step {i}: {jt[-1]:.2f} s", flush=True)
  jax_s = statistics.median(jt)
  return dict(
    preset=preset,
    batch=batch,
    torch=torch.__version__,
    torch_threads=torch.get_num_threads(),
    torch_step_s=round(torch_s, 3),
    mrflax_mode=mrflax_mode,
    mrflax_step_s=round(jax_s, 3),
    mrflax_compile_s=round(b["compile_s"], 1),
    speedup_mrflax_over_torch=round(torch_s / jax_s, 3),
    flops=b["flops"],
  )


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--vdvae_dir", required=True, help="checkout of openai/vdvae")
  ap.add_argument("--check", action="store_true")
  ap.add_argument("--bench", action="store_true")
  ap.add_argument("--preset", default="cifar10")
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--mrflax-mode", default="unroll", choices=("unroll", "scan"))
  args = ap.parse_args()
  vae_mod, helpers = _reference(args.vdvae_dir)
  result: dict = {"benchmark": "pytorch_vdvae"}
  if args.check:
    result["check"] = check(vae_mod, helpers)
    print(f"[pytorch_vdvae] check: {result['check']}", flush=True)
  if args.bench:
    result["bench"] = bench(vae_mod, args.preset, args.batch, args.repeats, args.mrflax_mode)
  emit({**result, **machine()})


if __name__ == "__main__":
  main()
