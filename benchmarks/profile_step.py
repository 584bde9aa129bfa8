"""Where a train step's time goes, by operation class: mrflax (XLA's profiler) and the PyTorch
VDVAE (``torch.profiler``), one right after the other in one process (issue 14 item 1).

Classes (:data:`CLASSES`): 3x3 convolutions forward / input gradient / weight gradient, 1x1
convolutions forward / backward, the likelihood (DMoL or logistic) and the KL forward, the rest of
the forward (elementwise work, normalisation, pooling, copies), the rest of the backward, and the
optimizer. FLOPs per class come from the optimized HLO of the mrflax step (every convolution and
matrix product, ``2 x`` multiply-adds); both frameworks compute the same model, so the same
FLOPs divide both frameworks' seconds into GFLOP/s.

mrflax: the compiled step runs ``--steps`` times under ``jax.profiler.trace``; every thunk event
of the trace (XLA:CPU names each after its HLO instruction) is mapped to its instruction in
``compiled.as_text()`` and classified by what the instruction computes (convolution window and
output shape, ``dot``) and where it comes from (``op_name`` metadata: ``transpose(`` marks the
backward pass; the stack frames name the source file: ``mrflax/likelihoods``, ``optax``).
Profiles run on one thread by default (``--threads 1``: ``PJRT_NPROC=1``, single-threaded
Eigen, ``torch.set_num_threads(1)``): with XLA's intra-op pool, part of a convolution's work
runs on pool threads outside any operator's event and cannot be attributed. Per class the
table gives the class's share of the events' total time, times the step's wall time measured
without the profiler (the two agree within a few per cent on one thread: ``busy_over_wall``).
The two-thread step times and their ratio are :mod:`benchmarks.pytorch_vdvae`'s ``--bench``.
The program is profiled unrolled (``exec_mode="unroll"``): every instruction then runs once per
step and the HLO FLOPs are the step's.

PyTorch: ``torch.profiler`` over ``--steps`` steps; each operator's self time goes to the class
of its nearest classified ancestor (``aten::convolution`` / ``aten::convolution_backward`` by
the weight's kernel size, labelled ranges around VDVAE's DMoL loss, its KL and the optimizer,
``autograd::engine`` for the rest of the backward). PyTorch's ``convolution_backward`` computes
the input and the weight gradient in one operator: its row holds both.

Run: ``python -m benchmarks.profile_step --vdvae_dir DIR [--preset cifar10] [--batch 8]``
(without ``--vdvae_dir``: mrflax only). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import collections
import glob
import re
import statistics
import tempfile
import time
from collections.abc import Iterable
from typing import Any

CLASSES = (
  "conv3x3 forward",
  "conv3x3 input-grad",
  "conv3x3 weight-grad",
  "conv1x1 forward",
  "conv1x1 backward",
  "likelihood forward",
  "KL forward",
  "other forward",
  "other backward",
  "optimizer",
)
# mrflax.nn.conv_ops.DW_EINSUM (tested equal): not imported, as JAX must load after pin_threads
DW_EINSUM = "bhwo,bhwi->oi"
# PyTorch's convolution_backward gives one row for both 3x3 gradients
TORCH_CLASSES = (CLASSES[0], "conv3x3 backward", *CLASSES[3:])

_INSTR = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = (\S+?)(?:\{[^}]*\})? (\w[\w\-]*)\((.*)$")
_COMP = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) \(.*\{$")
_SHAPE = re.compile(r"^[a-z0-9]+\[([\d,]*)\]")


def _dims(shape: str) -> tuple[int, ...]:
  m = _SHAPE.match(shape)
  if not m:
    return ()
  return tuple(int(d) for d in m.group(1).split(",") if d)


def _prod(xs: Iterable[int]) -> int:
  out = 1
  for x in xs:
    out *= x
  return out


def _stack_files(text: str) -> dict[int, str]:
  """``stack_frame_id -> "file:function | parent file:function | ..."`` from the HLO header."""
  files, funcs, locs, frames = {}, {}, {}, {}
  section = None
  for line in text.splitlines():
    s = line.strip()
    if s in ("FileNames", "FunctionNames", "FileLocations", "StackFrames"):
      section = s
      continue
    if s.startswith(("%", "ENTRY")):  # the computations begin: the tables are done
      break
    m = re.match(r"^(\d+) (.*)$", s)
    if not m or section is None:
      continue
    k, rest = int(m.group(1)), m.group(2)
    if section == "FileNames":
      files[k] = rest.strip('"')
    elif section == "FunctionNames":
      funcs[k] = rest.strip('"')
    elif section == "FileLocations":
      f = re.search(r"file_name_id=(\d+)", rest)
      g = re.search(r"function_name_id=(\d+)", rest)
      locs[k] = (int(f.group(1)) if f else 0, int(g.group(1)) if g else 0)
    elif section == "StackFrames":
      loc = re.search(r"file_location_id=(\d+)", rest)
      par = re.search(r"parent_frame_id=(\d+)", rest)
      frames[k] = (int(loc.group(1)) if loc else 0, int(par.group(1)) if par else 0)
  out = {}
  for k in frames:
    chain, seen, cur = [], set(), k
    while cur in frames and cur not in seen:
      seen.add(cur)
      loc, par = frames[cur]
      fi, fn = locs.get(loc, (0, 0))
      chain.append(f"{files.get(fi, '?')}:{funcs.get(fn, '?')}")
      cur = par
    out[k] = " | ".join(chain)
  return out


def parse_hlo(text: str) -> dict[str, dict[str, Any]]:
  """Every instruction of an HLO module's text: ``name -> dict(opcode, shape, op_name, frames,
  calls, heavy=[(opcode, flops, window, out_dims)])``, ``heavy`` listing the convolutions and dots
  it computes (its own, or inside the computation it calls, recursively)."""
  frames = _stack_files(text)
  comps: dict[str, list[dict]] = collections.defaultdict(list)
  instrs: dict[str, dict[str, Any]] = {}
  comp = None
  for line in text.splitlines():
    m = _COMP.match(line)
    if m:
      comp = m.group(1)
      continue
    m = _INSTR.match(line)
    if not m or comp is None:
      continue
    name, shape, opcode, rest = m.groups()
    op_name = re.search(r'op_name="([^"]*)"', rest)
    frame = re.search(r"stack_frame_id=(\d+)", rest)
    calls = re.findall(r"(?:calls|body|condition|to_apply)=%?([\w.\-]+)", rest)
    d = dict(
      name=name,
      comp=comp,
      opcode=opcode,
      shape=shape,
      operands=re.findall(r"%([\w.\-]+)", rest.split(")", 1)[0]),
      op_name=op_name.group(1) if op_name else "",
      frames=frames.get(int(frame.group(1)), "") if frame else "",
      calls=calls,
      rest=rest,
    )
    comps[comp].append(d)
    instrs[name] = d
  shapes = {n: _dims(d["shape"]) for n, d in instrs.items()}

  def own_heavy(d):
    if d["opcode"] == "convolution":
      out = shapes[d["name"]]
      win = re.search(r"window=\{size=([\dx]+)", d["rest"])
      window = win_size = tuple(int(x) for x in win.group(1).split("x")) if win else (1, 1)
      labels = re.search(r"dim_labels=(\w+)_(\w+)->(\w+)", d["rest"])
      lhs = shapes.get(d["operands"][0], ()) if d["operands"] else ()
      cin = lhs[labels.group(1).index("f")] if labels and lhs else 1
      groups = re.search(r"feature_group_count=(\d+)", d["rest"])
      cin //= int(groups.group(1)) if groups else 1
      o, i = (labels.group(3), labels.group(1)) if labels else ("b01f", "b01f")
      spatial = tuple(out[o.index(c)] for c in "01" if c in o)
      lhs_spatial = tuple(lhs[i.index(c)] for c in "01" if c in i) if lhs else spatial
      if spatial != lhs_spatial:  # a weight gradient (XLA's form: the window spans the image)
        window = spatial
      flops = 2 * _prod(out) * _prod(win_size) * cin
      return [("convolution", flops, window, spatial != lhs_spatial)]
    if d["opcode"] == "dot":
      lhs = shapes.get(d["operands"][0], ()) if d["operands"] else ()
      cd = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", d["rest"])
      k = _prod(lhs[int(i)] for i in cd.group(1).split(",") if i) if cd and lhs else 1
      return [("dot", 2 * _prod(shapes[d["name"]]) * k, (), False)]
    return []

  cache: dict[str, list] = {}

  def comp_heavy(c):
    if c not in cache:
      cache[c] = []
      for d in comps.get(c, []):
        cache[c] += own_heavy(d)
        if d["opcode"] not in ("while", "conditional", "call"):
          for cc in d["calls"]:
            cache[c] += comp_heavy(cc)
    return cache[c]

  for d in instrs.values():
    heavy = own_heavy(d)
    if d["opcode"] == "fusion":
      for cc in d["calls"]:
        heavy += comp_heavy(cc)
    d["heavy"] = heavy
  return instrs


def classify_instruction(d: dict[str, Any]) -> str | None:
  """The class (:data:`CLASSES`) of one parsed instruction; ``None`` for containers (while,
  call, conditional: their children are events of their own) and parameters."""
  if d["opcode"] in ("while", "conditional", "call", "parameter", "tuple", "get-tuple-element"):
    return None
  backward = "transpose(" in d["op_name"]
  heavy = d.get("heavy", [])
  if heavy:
    op, _, window, weight_grad = max(heavy, key=lambda h: h[1])
    if DW_EINSUM in d["op_name"]:  # the custom VJP's 3x3 weight gradient
      return "conv3x3 weight-grad"
    k3 = op == "convolution" and _prod(window) > 1
    if k3:
      if weight_grad:
        return "conv3x3 weight-grad"
      return "conv3x3 input-grad" if backward else "conv3x3 forward"
    return "conv1x1 backward" if backward or weight_grad else "conv1x1 forward"
  files = d["frames"]
  if "optax" in files:
    return "optimizer"
  if backward:
    return "other backward"
  if "likelihoods/gaussian" in files.split(" | ")[0] or "gaussian_kl" in files:
    return "KL forward"
  if "mrflax/likelihoods" in files:
    return "likelihood forward"
  return "other forward"


def _hlo_flops(instrs: dict[str, dict[str, Any]]) -> dict[str, float]:
  """FLOPs per class of the instructions of an unrolled program (each runs once)."""
  fused = {cc for d in instrs.values() if d["opcode"] == "fusion" for cc in d["calls"]}
  out: dict[str, float] = collections.defaultdict(float)
  for d in instrs.values():
    c = classify_instruction(d)
    if c is not None and d["comp"] not in fused:  # thunks: not inside a fusion
      out[c] += sum(h[1] for h in d.get("heavy", []))
  return dict(out)


def thread_time_by_class(
  events: Iterable[tuple[str, float]], instrs: dict[str, dict[str, Any]]
) -> tuple[dict[str, float], dict[str, float]]:
  """Sums event durations (``(name, ns)``) per class; names that are no instruction (thunk
  executor bookkeeping, waits) go to the second dict, by name."""
  per: dict[str, float] = collections.defaultdict(float)
  unmapped: dict[str, float] = collections.defaultdict(float)
  for name, ns in events:
    d = instrs.get(name)
    if d is None:
      unmapped[name] += ns
      continue
    c = classify_instruction(d)
    if c is not None:
      per[c] += ns
  return dict(per), dict(unmapped)


def top_instructions(
  events: Iterable[tuple[str, float]], instrs: dict[str, dict[str, Any]], classes: set[str], n: int
) -> list[tuple[str, str, float]]:
  """The ``n`` costliest kinds of instruction of ``classes``: ``(class, kind, ns)`` where kind is
  the last two parts of the ``op_name`` (what JAX op made it) plus the HLO fusion kind."""
  per: dict[tuple[str, str], float] = collections.defaultdict(float)
  for name, ns in events:
    d = instrs.get(name)
    c = classify_instruction(d) if d else None
    if c in classes:
      kind = re.sub(r"\.\d+$", "", d["name"])
      op = "/".join(re.sub(r"\(.*\)", "()", d["op_name"]).split("/")[-2:])
      per[(c, f"{kind} [{op}]")] += ns
  return [(c, k, v) for (c, k), v in _top(per, n)]


def profile_mrflax(
  spec,
  *,
  batch: int,
  steps: int,
  conv_backward: str,
  exec_mode: str = "unroll",
  remat: str = "none",
) -> dict[str, Any]:
  """Profiles the mrflax train step (see the module docstring).

  Unrolled (the default), every instruction runs once per step and the HLO FLOPs per class are
  the step's; with ``exec_mode="scan"`` a loop body's instructions run once per iteration (their
  events add up to the step's seconds) but the HLO counts the body once, so no FLOPs are given.
  """
  import jax
  from jax.profiler import ProfileData

  from benchmarks.common import hvae_train_step
  from mrflax.nn import ExecPolicy

  policy = ExecPolicy(conv_backward=conv_backward, exec_mode=exec_mode, remat=remat)
  b = hvae_train_step(spec, batch=batch, policy=policy)
  compiled = b["compiled"]
  instrs = parse_hlo(compiled.as_text())
  flops = _hlo_flops(instrs) if exec_mode == "unroll" else {}
  jax.block_until_ready(b["step"]())
  wall = []
  for _ in range(steps):
    t0 = time.perf_counter()
    jax.block_until_ready(b["step"]())
    wall.append(time.perf_counter() - t0)
  step_s = statistics.median(wall)
  with tempfile.TemporaryDirectory() as tmp:
    with jax.profiler.trace(tmp):
      for _ in range(steps):
        jax.block_until_ready(b["step"]())
    path = glob.glob(f"{tmp}/**/*.xplane.pb", recursive=True)[0]
    pd = ProfileData.from_file(path)
    events = []
    for plane in pd.planes:
      if plane.name != "/host:CPU":
        continue
      for line in plane.lines:
        if line.name == "python":
          continue
        events += [(ev.name, ev.duration_ns) for ev in line.events]
  per, unmapped = thread_time_by_class(events, instrs)
  busy = sum(per.values())
  others = top_instructions(events, instrs, {"other forward", "other backward"}, 12)
  seconds = {c: step_s * per.get(c, 0.0) / busy for c in CLASSES}
  return dict(
    step_s=round(step_s, 4),
    compile_s=round(b["compile_s"], 1),
    conv_backward=conv_backward,
    exec_mode=exec_mode,
    remat=remat,
    thread_busy_s_per_step=round(busy / 1e9 / steps, 4),
    busy_over_wall=round(busy / 1e9 / steps / step_s, 3),
    seconds=_round(seconds),
    flops=_round(flops, 0),
    gflops_per_s=_rates(flops, seconds),
    unmapped_top={k: round(v / 1e9 / steps, 4) for k, v in _top(unmapped, 5)},
    other_top=[[c, k, round(step_s * v / busy, 4)] for c, k, v in others],
  )


def _top(d: dict[str, float], n: int):
  return sorted(d.items(), key=lambda kv: -kv[1])[:n]


def _round(d: dict[str, float], nd: int = 4) -> dict[str, float]:
  return {k: round(v, nd) for k, v in d.items()}


def _rates(flops: dict[str, float], seconds: dict[str, float]) -> dict[str, float]:
  return {
    c: round(flops[c] / seconds[c] / 1e9, 1)
    for c in flops
    if flops.get(c) and seconds.get(c, 0) > 0
  }


# --- PyTorch -------------------------------------------------------------------------------------


def classify_torch_event(name: str, ancestors: list[tuple[str, list]], shapes: list) -> str:
  """The class (:data:`TORCH_CLASSES`) of one ``torch.profiler`` event from its name, its input
  shapes and its ancestors (``(name, input_shapes)``, nearest first)."""
  chain = [(name, shapes), *ancestors]
  for n, sh in chain:
    if n in ("mrflax::optimizer",):
      return "optimizer"
    if n == "mrflax::dmol":
      return "likelihood forward"
    if n == "mrflax::kl":
      return "KL forward"
    if n in ("aten::convolution_backward", "aten::convolution"):
      # (input, weight, bias, ...) forward; (grad_output, input, weight, ...) backward
      wi = 2 if n.endswith("backward") else 1
      w = sh[wi] if len(sh) > wi else []
      k = "conv3x3" if len(w) == 4 and w[2] * w[3] > 1 else "conv1x1"
      return f"{k} backward" if n.endswith("backward") else f"{k} forward"
  if any(n.startswith("autograd::engine") for n, _ in chain):
    return "other backward"
  return "other forward"


def profile_torch(vdvae_dir: str, spec, *, batch: int, steps: int) -> dict[str, Any]:
  """Profiles the PyTorch VDVAE's train step (see the module docstring)."""
  import torch
  from torch.profiler import ProfilerActivity, profile, record_function

  from benchmarks.pytorch_vdvae import _reference, torch_train_step

  vae_mod, helpers = _reference(vdvae_dir)

  def labelled(fn, label):
    def wrapped(*a, **kw):
      with record_function(label):
        return fn(*a, **kw)

    return wrapped

  # VDVAE's DmolNet.nll calls discretized_mix_logistic_loss from vae_helpers; DecBlock the KL
  patches = [
    (helpers, "discretized_mix_logistic_loss", "mrflax::dmol"),
    (vae_mod, "gaussian_analytical_kl", "mrflax::kl"),
  ]
  saved = [(mod, attr, getattr(mod, attr)) for mod, attr, _ in patches]
  for mod, attr, label in patches:
    setattr(mod, attr, labelled(getattr(mod, attr), label))
  opt_step = torch.optim.AdamW.step
  torch.optim.AdamW.step = labelled(opt_step, "mrflax::optimizer")
  try:
    _, step = torch_train_step(vae_mod, spec, batch)
    step()
    wall = []
    for _ in range(steps):
      t0 = time.perf_counter()
      step()
      wall.append(time.perf_counter() - t0)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
      for _ in range(steps):
        step()
  finally:
    for mod, attr, fn in saved:
      setattr(mod, attr, fn)
    torch.optim.AdamW.step = opt_step
  step_s = statistics.median(wall)
  per: dict[str, float] = collections.defaultdict(float)
  for ev in prof.events():
    anc, p = [], ev.cpu_parent
    while p is not None:
      anc.append((p.name, p.input_shapes or []))
      p = p.cpu_parent
    per[classify_torch_event(ev.name, anc, ev.input_shapes or [])] += ev.self_cpu_time_total
  total = sum(per.values())
  seconds = {c: per.get(c, 0.0) / 1e6 / steps for c in TORCH_CLASSES}
  return dict(
    step_s=round(step_s, 4),
    profiled_s_per_step=round(total / 1e6 / steps, 4),
    torch=torch.__version__,
    threads=torch.get_num_threads(),
    seconds=_round(seconds),
  )


def merge_for_torch(flops: dict[str, float]) -> dict[str, float]:
  """mrflax's FLOPs per class in PyTorch's classes (the two 3x3 gradients summed)."""
  out = {c: flops.get(c, 0.0) for c in TORCH_CLASSES if c in CLASSES}
  out["conv3x3 backward"] = flops.get("conv3x3 input-grad", 0.0) + flops.get(
    "conv3x3 weight-grad", 0.0
  )
  return out


def main(argv: list[str] | None = None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--vdvae_dir", default=None, help="checkout of openai/vdvae (PyTorch side)")
  ap.add_argument("--preset", default="cifar10", help="cifar10, fashion32_rgb, or a preset name")
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--steps", type=int, default=2, help="steps timed and profiled per framework")
  ap.add_argument("--conv-backward", default="xla", choices=("xla", "custom"))
  ap.add_argument(
    "--exec-mode",
    default="unroll",
    choices=("unroll", "scan"),
    help="scan: seconds per class of the scanned step (no FLOPs: the HLO counts a body once)",
  )
  ap.add_argument("--remat", default="none", choices=("none", "block", "resolution"))
  ap.add_argument(
    "--threads",
    type=int,
    default=1,
    help="XLA:CPU and PyTorch threads (1: every second lands "
    "in an operator's event; with more, XLA's pool work partly runs outside them)",
  )
  args = ap.parse_args(argv)
  from benchmarks.scan import pin_threads

  pinned = pin_threads(args.threads)  # before JAX is imported
  try:
    import torch

    torch.set_num_threads(args.threads)
  except ImportError:
    pass
  from benchmarks.common import emit, machine, matmul_flops_per_s
  from benchmarks.pytorch_vdvae import bench_spec

  spec = bench_spec(args.preset)
  peak = matmul_flops_per_s()
  result: dict[str, Any] = dict(
    benchmark="profile_step",
    preset=args.preset,
    batch=args.batch,
    steps=args.steps,
    threads=pinned["threads"],
    pinned_env=pinned["env"],
    matmul_peak_flops_per_s=round(peak),
  )
  m = profile_mrflax(
    spec,
    batch=args.batch,
    steps=args.steps,
    conv_backward=args.conv_backward,
    exec_mode=args.exec_mode,
    remat=args.remat,
  )
  result["mrflax"] = m
  _print_table("mrflax", m["seconds"], m["flops"], m["step_s"])
  for c, k, v in m["other_top"]:
    print(f"[profile_step]     {c:15s} {v:7.3f} s  {k}", flush=True)
  if args.vdvae_dir:
    t = profile_torch(args.vdvae_dir, spec, batch=args.batch, steps=args.steps)
    t["gflops_per_s"] = _rates(merge_for_torch(m["flops"]), t["seconds"])
    result["torch"] = t
    _print_table("pytorch", t["seconds"], merge_for_torch(m["flops"]), t["step_s"])
  emit({**result, **machine()})


def _print_table(who: str, seconds: dict, flops: dict, step_s: float) -> None:
  print(f"[profile_step] {who}: step {step_s:.3f} s", flush=True)
  for c, s in seconds.items():
    f = flops.get(c, 0.0)
    rate = f"{f / s / 1e9:7.1f} GFLOP/s" if f and s > 0 else ""
    print(f"[profile_step]   {c:22s} {s:8.3f} s  {rate}", flush=True)


if __name__ == "__main__":
  main()
