"""One command for a machine with an accelerator: the CIFAR-10 VDVAE train step, mrflax and PyTorch.

Run on a machine with one NVIDIA GPU and JAX with CUDA (needs jax, flax, optax, numpy and
jaxtyping; torch only for the peer)::

  python -m benchmarks.device_check [--vdvae_dir DIR] [--budget-s 420]

It times one training step (forward, backward, AdamW with VDVAE's settings; compile apart) of
the CIFAR-10 VDVAE (39.1M parameters, batch ``--batch``) for each mrflax variant: execution
``unrolled`` / ``scan`` / ``shared2`` (decoder cells shared in pairs, scanned), precision
``float32`` / ``bfloat16`` (the policy: bf16 convolutions, fp32 parameters, KL and likelihood)
and convolution VJP ``xla`` (JAX's own: cuDNN on GPU) / ``custom`` (mrflax.nn.conv_ops, the
formulation that is faster inside loops on XLA:CPU). With ``--vdvae_dir`` (a checkout of
openai/vdvae) and torch importable, the published PyTorch model runs the same step on the same
device in fp32 and with automatic mixed precision (``torch.autocast`` fp16 + ``GradScaler``),
and the JSON holds images/s and the mrflax / PyTorch ratios.

Variants run in priority order (:data:`ORDER`) until ``--budget-s`` of wall time is spent;
what did not fit is listed as skipped, so the command ends in time (under 8 minutes on one
GPU with the default budget). The last line of stdout is one JSON object.

``--smoke`` runs the same code path on the CPU with a tiny model (``tiny8_rgb``, batch 2,
2 repeats); ``--only`` picks variants (``tests/benchmarks/device_check_test.py`` runs two of
them, which between them reach every option).

On a machine without jaxtyping (e.g. an accelerator image with only jax/flax/optax/torch):
``pip install --target .device_deps jaxtyping`` on a machine with the registry, then carry
``.device_deps`` along; it is put on ``sys.path`` when present.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import time
from typing import Any

_DEPS = pathlib.Path(__file__).resolve().parent.parent / ".device_deps"
if _DEPS.is_dir():
  sys.path.insert(0, str(_DEPS))

# (execution, precision, convolution VJP), most informative first: what the budget cuts is the
# end of this list.
ORDER = (
  ("scan", "float32", "xla"),
  ("unrolled", "float32", "xla"),
  ("shared2", "float32", "xla"),
  ("scan", "bfloat16", "xla"),
  ("scan", "float32", "custom"),
  ("unrolled", "bfloat16", "xla"),
  ("shared2", "bfloat16", "xla"),
  ("unrolled", "float32", "custom"),
  ("shared2", "float32", "custom"),
  ("scan", "bfloat16", "custom"),
  ("unrolled", "bfloat16", "custom"),
  ("shared2", "bfloat16", "custom"),
)
PEER_AFTER = 3  # the PyTorch peer runs after this many mrflax variants


def _need(module: str) -> None:
  try:
    __import__(module)
  except ModuleNotFoundError as err:
    raise SystemExit(
      f"error: benchmarks.device_check needs {err.name!r} (jax, flax, optax, numpy, jaxtyping). "
      f"Install it, or `pip install --target .device_deps {err.name}` elsewhere and carry "
      ".device_deps/ to this machine."
    ) from err


def mrflax_variant(preset: str, batch: int, repeats: int, variant: tuple[str, str, str]) -> dict:
  """Compile time and median step time of one mrflax variant."""
  import jax

  from benchmarks.common import hvae_train_step
  from mrflax.nn import ExecPolicy, get_preset, spec_param_count

  mode, dtype, backward = variant
  spec = get_preset(preset, share=2 if mode == "shared2" else 1)
  policy = ExecPolicy(
    exec_mode="unroll" if mode == "unrolled" else "scan",
    conv_backward=backward,
    compute_dtype=None if dtype == "float32" else dtype,
  )
  b = hvae_train_step(spec, batch=batch, policy=policy)
  loss = jax.block_until_ready(b["step"]())  # warm-up
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    loss = jax.block_until_ready(b["step"]())
    times.append(time.perf_counter() - t0)
  step_s = statistics.median(times)
  return dict(
    framework="mrflax",
    mode=mode,
    dtype=dtype,
    conv_backward=backward,
    params=spec_param_count(spec).total,
    compile_s=round(b["compile_s"], 3),
    step_s=round(step_s, 5),
    step_s_min=round(min(times), 5),
    images_per_s=round(batch / step_s, 3),
    loss=float(loss),
  )


def pytorch_variants(vdvae_dir: str, preset: str, batch: int, repeats: int) -> list[dict]:
  """The published PyTorch VDVAE's train step on the same device: fp32 and AMP."""
  import torch

  from benchmarks.pytorch_vdvae import _reference, hparams_for
  from mrflax.nn import get_preset

  vae_mod, _ = _reference(vdvae_dir)
  spec = get_preset(preset)
  h = hparams_for(spec)
  device = "cuda" if torch.cuda.is_available() else "cpu"
  out = []
  for amp in (False, True):
    torch.manual_seed(0)
    model = vae_mod.VAE(h).to(device)
    opt = torch.optim.AdamW(
      model.parameters(), lr=2e-4, betas=(0.9, 0.9), eps=1e-8, weight_decay=0.01
    )
    scaler = torch.amp.GradScaler(device, enabled=amp)
    shape = (batch, spec.image_size, spec.image_size, spec.image_channels)
    x = torch.rand(*shape, device=device) * 2 - 1
    target = torch.round((x + 1) * 127.5) / 127.5 - 1

    def step(model=model, opt=opt, scaler=scaler, x=x, target=target, amp=amp):
      opt.zero_grad(set_to_none=True)
      with torch.autocast(device, dtype=torch.float16, enabled=amp):
        stats = model.forward(x, target)
      scaler.scale(stats["elbo"]).backward()
      scaler.unscale_(opt)
      torch.nn.utils.clip_grad_norm_(model.parameters(), 200.0)
      scaler.step(opt)
      scaler.update()
      if device == "cuda":
        torch.cuda.synchronize()
      return float(stats["elbo"])

    t0 = time.perf_counter()
    loss = step()  # warm-up (cuDNN autotuning, allocator)
    first_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
      t0 = time.perf_counter()
      loss = step()
      times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    out.append(
      dict(
        framework="pytorch",
        dtype="amp_fp16" if amp else "float32",
        device=device,
        torch=torch.__version__,
        first_step_s=round(first_s, 3),
        step_s=round(step_s, 5),
        step_s_min=round(min(times), 5),
        images_per_s=round(batch / step_s, 3),
        loss=loss,
      )
    )
    del model, opt
  return out


def _ratios(rows: list[dict]) -> dict[str, float]:
  """images/s of each mrflax variant over PyTorch fp32 and over PyTorch AMP."""
  torch_rows = {r["dtype"]: r for r in rows if r.get("framework") == "pytorch"}
  out = {}
  for r in rows:
    if r.get("framework") != "mrflax":
      continue
    name = f"{r['mode']}_{r['dtype']}_{r['conv_backward']}"
    for t, tr in torch_rows.items():
      out[f"{name}_over_torch_{t}"] = round(r["images_per_s"] / tr["images_per_s"], 3)
  return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--vdvae_dir", default=None, help="checkout of openai/vdvae (PyTorch peer)")
  ap.add_argument("--preset", default=None, help="default cifar10 (tiny8_rgb with --smoke)")
  ap.add_argument("--batch", type=int, default=None, help="default 16 (2 with --smoke)")
  ap.add_argument("--repeats", type=int, default=None, help="default 10 (2 with --smoke)")
  ap.add_argument("--budget-s", type=float, default=420.0, help="wall-time budget for variants")
  ap.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU (a test)")
  ap.add_argument(
    "--only",
    default="",
    help="comma-separated variants to run, e.g. scan/float32/xla,shared2/bfloat16/custom",
  )
  args = ap.parse_args(argv)
  for module in ("numpy", "jax", "flax", "optax", "jaxtyping"):
    _need(module)
  if args.smoke:
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
  import jax

  from benchmarks.common import machine

  preset = args.preset or ("tiny8_rgb" if args.smoke else "cifar10")
  batch = args.batch or (2 if args.smoke else 16)
  repeats = args.repeats or (2 if args.smoke else 10)
  t_start = time.perf_counter()
  backend = jax.default_backend()
  print(f"[device_check] {preset}, batch {batch}, backend {backend}: {jax.devices()}", flush=True)
  if backend == "cpu" and not args.smoke:
    print("[device_check] WARNING: no accelerator found; timing the CPU", flush=True)

  rows: list[dict] = []
  skipped: list[str] = []
  peer: list[dict] | dict | None = None

  def spent() -> float:
    return time.perf_counter() - t_start

  def run_peer():
    if not args.vdvae_dir:
      return {"skipped": "no --vdvae_dir given"}
    try:
      import torch  # noqa: F401
    except ModuleNotFoundError:
      return {"skipped": "torch is not installed"}
    print("[device_check] PyTorch VDVAE (fp32, AMP) ...", flush=True)
    return pytorch_variants(args.vdvae_dir, preset, batch, repeats)

  order = ORDER
  if args.only:
    order = tuple(tuple(v.split("/")) for v in args.only.split(","))
    unknown = [v for v in order if v not in ORDER]
    if unknown:
      ap.error(f"unknown variants {unknown}; choose from {['/'.join(v) for v in ORDER]}")
  for i, variant in enumerate(order):
    if i == PEER_AFTER:
      peer = run_peer()
    if spent() > args.budget_s:
      skipped.append("/".join(variant))
      continue
    print(f"[device_check] mrflax {'/'.join(variant)} ...", flush=True)
    try:
      row = mrflax_variant(preset, batch, repeats, variant)
    except Exception as err:  # e.g. out of memory: record it, keep going
      row = dict(
        framework="mrflax",
        mode=variant[0],
        dtype=variant[1],
        conv_backward=variant[2],
        error=f"{type(err).__name__}: {str(err)[:300]}",
      )
    print(f"[device_check]   {json.dumps(row)}", flush=True)
    rows.append(row)
  if peer is None:
    peer = run_peer()
  peer_rows = peer if isinstance(peer, list) else []
  result = dict(
    benchmark="device_check",
    smoke=args.smoke,
    preset=preset,
    batch=batch,
    repeats=repeats,
    mrflax=rows,
    pytorch=peer,
    skipped_for_budget=skipped,
    ratios=_ratios([r for r in rows if "error" not in r] + peer_rows),
    wall_s=round(spent(), 1),
    **machine(),
  )
  print(json.dumps(result, sort_keys=True), flush=True)
  return result


if __name__ == "__main__":
  main()
