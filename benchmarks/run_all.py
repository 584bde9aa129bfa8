"""`make bench`: runs every benchmark and records its JSON line in benchmarks/results/.

Each benchmark is a module ``benchmarks.<name>`` whose last line of output is one JSON object.
This runner executes them one after the other (never in parallel: they time the machine), stores
``benchmarks/results/<name>.json``, then rewrites the table of the latest run at the top of
``benchmarks/README.md`` (:mod:`benchmarks.report`); the sections below it are hand-written
readings of recorded runs.

Run: ``python -m benchmarks.run_all [name ...]``.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import time

from benchmarks import report

# the CIFAR-10 VDVAE train step at batch 8, three timed steps (benchmarks/hvae_step.py)
_CIFAR10_STEP = ["--preset", "cifar10", "--batch", "8", "--repeats", "3"]

# the peer: VDVAE_DIR is substituted when the benchmark runs (:func:`peer_missing`)
_PEER = ["--vdvae_dir", "$VDVAE_DIR"]
# mrflax's fastest CPU form of the VDVAE step (benchmarks/README.md, "Settling scan vs unrolled")
_FASTEST = ["--mrflax-mode", "scan", "--mrflax-remat", "block"]
_CUSTOM = ["--conv-backward", "custom"]  # the profile: the CPU default VJP, unrolled

BENCHMARKS = {
  # name: extra command-line arguments, or (module, arguments) when one module runs twice
  "wavelets": [],
  "ghm_bp": [],
  # the unrolled compile-time growth with depth was recorded once (README); not every run
  "scan": ["--skip-unrolled-compile"],
  # issue 14 item 5: scan vs unrolled at depth 16, 60 paired rounds on pinned threads, interval
  "scan_settle": ("scan", ["--settle"]),
  "scan_settle_block": ("scan", ["--settle", "--scan-remat", "block"]),
  "hvae_step": [*_CIFAR10_STEP, "--mode", "unrolled"],
  "hvae_step_scan": ("hvae_step", [*_CIFAR10_STEP, "--mode", "scan"]),
  "hvae_step_shared": ("hvae_step", [*_CIFAR10_STEP, "--mode", "shared", "--share", "2"]),
  "hvae_step_bf16": (
    "hvae_step",
    [*_CIFAR10_STEP, "--mode", "unrolled", "--compute-dtype", "bfloat16"],
  ),
  "inference": [],
  "memory": [],
  "train_throughput": ["--config", "fashion_mnist", "--batch", "32", "--repeats", "10"],
  "train_throughput_cifar10": (
    "train_throughput",
    ["--config", "vdvae_cifar10", "--batch", "8", "--repeats", "2"],
  ),
  # issue 14 items 1-2, against the PyTorch VDVAE: need torch and a clone of openai/vdvae named
  # by the VDVAE_DIR environment variable (skipped, not failed, without them)
  "pytorch_vdvae_cifar10": (
    "pytorch_vdvae",
    [*_PEER, "--bench", "--preset", "cifar10", "--batch", "8", "--rounds", "5", *_FASTEST],
  ),
  "pytorch_vdvae_fashion32_rgb": (
    "pytorch_vdvae",
    [*_PEER, "--bench", "--preset", "fashion32_rgb", "--batch", "32", "--rounds", "5", *_FASTEST],
  ),
  "profile_step_cifar10": (
    "profile_step",
    [*_PEER, "--preset", "cifar10", "--batch", "8", "--steps", "1", *_CUSTOM],
  ),
  "profile_step_fashion32_rgb": (
    "profile_step",
    [*_PEER, "--preset", "fashion32_rgb", "--batch", "32", "--steps", "2", *_CUSTOM],
  ),
  # the fastest mrflax form (scan, block remat): seconds per class only (a loop body's HLO is
  # counted once, so no FLOPs); recomputed forward work lands in the backward classes
  "profile_step_fashion32_rgb_scan": (
    "profile_step",
    [
      *_PEER,
      *("--preset", "fashion32_rgb", "--batch", "32", "--steps", "2", *_CUSTOM),
      *("--exec-mode", "scan", "--remat", "block"),
    ],
  ),
}


def _command(name: str) -> tuple[str, list[str]]:
  entry = BENCHMARKS[name]
  return entry if isinstance(entry, tuple) else (name, entry)


def peer_missing(extra: list[str], env: dict[str, str]) -> str | None:
  """Why a benchmark against the PyTorch VDVAE cannot run here (``None``: it can)."""
  if "$VDVAE_DIR" not in extra:
    return None
  d = env.get("VDVAE_DIR")
  if not d or not (pathlib.Path(d) / "vae.py").exists():
    return (
      f"VDVAE_DIR={d!r} is not a clone of openai/vdvae (no vae.py there): "
      "git clone https://github.com/openai/vdvae and set VDVAE_DIR to it"
    )
  if importlib.util.find_spec("torch") is None:
    return "PyTorch is not installed: pip install torch (CPU build: torch==2.13.0 here)"
  return None


HERE = pathlib.Path(__file__).parent


def main(names: list[str]) -> int:
  names = names or [n for n in BENCHMARKS if (HERE / f"{_command(n)[0]}.py").exists()]
  out_dir = HERE / "results"
  out_dir.mkdir(exist_ok=True)
  failed = []
  for name in names:
    if name not in BENCHMARKS:
      print(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
      return 2
    module, extra = _command(name)
    why = peer_missing(extra, dict(os.environ))
    if why:
      print(f"== {name}: skipped ({why})", flush=True)
      continue
    extra = [os.environ["VDVAE_DIR"] if a == "$VDVAE_DIR" else a for a in extra]
    cmd = [sys.executable, "-m", f"benchmarks.{module}", *extra]
    print(f"== {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    # stream the benchmark's progress as it comes (some run for many minutes), keep its stdout
    lines = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1) as proc:
      for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        if line.strip():
          lines.append(line)
    if proc.returncode or not lines:
      print(f"== {name}: FAILED (exit code {proc.returncode})", file=sys.stderr)
      failed.append(name)
      continue
    try:
      result = json.loads(lines[-1])
    except json.JSONDecodeError:
      print(f"{name}: last line is not JSON", file=sys.stderr)
      failed.append(name)
      continue
    result["wall_s"] = time.perf_counter() - t0
    result["recorded"] = datetime.date.today().isoformat()
    (out_dir / f"{name}.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"== {name}: ok in {result['wall_s']:.1f} s -> benchmarks/results/{name}.json")
  report.main()  # rewrite the table in benchmarks/README.md from every recorded result
  if failed:
    print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
