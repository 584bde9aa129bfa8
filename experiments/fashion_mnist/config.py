"""HVAE on Fashion-MNIST (28x28 grey levels padded to 32x32, loss on the central 28x28).

Command:
  make data && python -m experiments.import_data fashion_mnist   # once, offline
  python -m experiments.main --config=experiments/fashion_mnist/config.py:cpu \
      --workdir=workdir/fmnist_cpu
  (``:cpu`` is the CPU-sized run below; no variant is the long accelerator run; ``:shared``,
  ``:shared2``, ``:sharedfull`` share decoder cells, ``:cpu_shared2`` etc. combine both;
  ``:tiny`` is a smoke run)

Model (preset ``fashion32``): a VDVAE-style hierarchy at 1, 4, 8, 16 and 32 pixels, 20 top-down
blocks (``1x1,4m1,4x2,8m4,8x3,16m8,16x4,32m16,32x6``), width 64, zdim 8, 619,218 parameters
unshared; 8-bit discretised logistic likelihood on the central 28x28 (``crop=2``).

Data: Debian's dataset-fashion-mnist IDX files imported as TFDS fashion_mnist 3.0.1. ``:cpu``
trains on the first 55,000 training images and validates (EMA model, every 300 steps) on the
last 5,000; the 10,000 test images are read once, by the final evaluation.

``:cpu``: 2,400 steps at batch 32 (1.4 epochs), AdamW lr 1e-3 (200 warm-up steps, cosine decay),
EMA 0.995, scanned decoder with per-block remat (since 2026-12-07; before, no remat).
Hardware: a 2-core x86_64 CPU. Wall time, measured on an idle machine (2026-12-07, the fully
shared run of the study, whose step costs what the unshared one does: sharing saves parameters,
not compute): 0.71 steps/s with block remat, 54 minutes of steps, 59 minutes in all with the 8
validations and the test evaluation (unshared without remat: ~1.45 s per step, 65-70 minutes).
Expected, as measured (2026-12-06, seed 0, unshared, on the same CPU
shared with other jobs: 100 minutes at 0.40 steps/s): test negative ELBO of the EMA model
3.394 bits/dim (distortion 2.164 + rate 0.189 nats/dim), IW bound (K = 64, first 500 test
images) 3.337, no skipped updates; experiments/README.md, section "Fashion-MNIST". The sharing study
``experiments/hvae_claims/config.py:fashion_sharing`` runs exactly this config per variant.

The long run (no variant): 20,000 steps, test-split ELBO every 5,000 steps; an overnight run on
the CPU, not yet measured by mrflax.
"""

from experiments.hvae.base import apply_variant, base


def cpu(c):
  """The CPU-sized run (about 60 minutes on 2 cores); see the module docstring."""
  c.data.train_split = "train[:55000]"
  c.data.valid_split = "train[55000:]"
  c.model.exec_mode = "scan"
  # per-block remat: 20-25% faster on XLA:CPU than none (benchmarks/README.md, "Settling scan
  # vs unrolled"); the first three runs of the sharing study trained without it (same maths)
  c.model.overrides["remat"] = "block"
  c.optim.warmup_steps = 200
  c.optim.decay_steps = 2200
  # the EMA must forget the initialisation within the run: 0.999 keeps 0.999**2400 = 9% of it
  # at the end (the validation ELBO of the EMA lagged the training loss by 1.7 bits/dim at step
  # 600); 0.995 averages over ~200 steps and keeps 6e-6 of it
  c.optim.ema_decay = 0.995
  c.train.steps = 2400
  c.train.log_every = 100
  c.train.checkpoint_every = 600
  c.train.eval_every = 300
  c.eval.batch_size = 500
  c.eval.num_samples = 16
  return c


def get_config(arg: str | None = None):
  c = base()
  c.data.name = "fashion_mnist"
  c.data.pad_to = 32
  c.model.preset = "fashion32"
  c.optim.lr = 1e-3
  c.optim.warmup_steps = 200
  c.optim.decay_steps = 19800
  c.optim.ema_decay = 0.999
  c.train.steps = 20000
  c.train.batch_size = 32
  c.train.steps_per_call = 10
  c.train.log_every = 200
  c.train.checkpoint_every = 2000
  c.train.eval_every = 5000  # test-split ELBO (no held-out split), best checkpoint kept
  c.eval.batch_size = 250
  if arg and arg.startswith("cpu"):
    c = cpu(c)
    arg = arg[len("cpu") :].lstrip("_")
  return apply_variant(c, arg, default_share="2")
