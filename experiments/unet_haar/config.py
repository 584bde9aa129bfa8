r"""Configs for issue 6, item 1: average pooling is the Haar projection, in a trained network.

THEORY §3.3: Gaussian denoising U-Nets (:class:`mrflax.nn.UNet`, noise-conditioned, σ log-uniform
in [0.1, 1] per example on images scaled to [-1, 1], MSE to the clean image) with average, max or
strided-conv downsampling (up path: nearest upsampling + 1x1 conv for all three), same widths, same
optimiser and step budget, several seeds. On a fixed test subset with fixed noise it reports

* U1 per level j: E_W^skip(j) = |Q h_j|^2 / |h_j|^2, E_W^coarse(j) = |Q c_j|^2 / |c_j|^2,
  leak(j) = |Down(h_j) - Down(ιP h_j)|^2 / |Down(h_j)|^2, and the Haar spectrum of the outputs
  against the targets (mean-removed) with the error's energy per band;
* U2 (a): test-time replacement of the skips (detail-only Q h, approximation-only ιP h, none) at
  every level at once and at each level alone, Δloss against the full skips;
* U2 (b): the average-pool net retrained with detail-only, approximation-only and no skips
  (``skip_mode`` at construction; "none" = ``skips=False``, the architecture without skip inputs).

Mean ± s.d. (ddof = 1) over seeds; the THEORY [hypothesis] verdicts use the rules written into the
JSON (``verdicts``).

Variants (``config.py:<arg>``):

* ``fashion`` (default): Fashion-MNIST at 28x28 (two levels, 28 = 7·4: skips at 28x28 and 14x14,
  bottleneck at 7x7), widths (16, 32, 32), 600 Adam steps at batch 32 (peak lr 2e-3, 50 warm-up
  steps, cosine to 0, clip 1), seeds 0-2; three poolings plus three retrained avg-pool skip
  variants = 18 trainings; the first 1,000 test images (U1 on 500). Data: the Debian IDX files,
  read with ``mrflax.data.idx_arrays`` (``apt-get install dataset-fashion-mnist``).
  Command: ``nice -n 5 python -m experiments.main
  --config=experiments/unet_haar/config.py:fashion --workdir=/tmp/unet_haar_fashion``.
  Hardware: the shared 2-core x86_64 CPU (load 5-9 from other jobs), jax 0.10.2.
  Wall time: see experiments/README.md (measured there). Writes ``results/fashion.json`` and
  ``results/fashion_{u1,u2,examples}.png``.
* ``fashion_finest``: U2 (b) with the skip replaced at the finest level (j = 2) only, the coarser
  skip kept full (per-call ``skip_mode=(mode, "full")`` in training and evaluation): the avg-pool
  net with full skips plus three retrainings, 3 seeds each, same budget and data as ``fashion``.
  Writes ``results/fashion_finest.*``.
* ``digits``: scikit-learn's 8x8 digits (1,438 train / 359 test: ``mrflax.data.digits_arrays``,
  the split of import_digits), two levels (8 -> 4 -> 2), widths (16, 32, 32), 1,000 steps at
  batch 64, seeds 0-2. Command as above with ``:digits``. Writes ``results/digits.*``.
* ``fashion32``: Fashion-MNIST padded to 32x32 with three levels (widths (16, 32, 32, 32)); ready,
  not run by default (about 1.3x the cost of ``fashion``).
* ``small``: digits, avg and conv pooling and the no-skip retraining, widths (8, 8, 8), 3 steps,
  2 seeds, 48 test images, all-level ablations only: the smoke test
  (``tests/experiments/unet_haar_test.py``); writes into the workdir only.
"""

import ml_collections

VARIANTS = ("fashion", "fashion_finest", "digits", "fashion32", "small")


def _base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.runner = "unet_haar"
  c.name = "fashion"
  c.seeds = (0, 1, 2)
  c.results_dir = "experiments/unet_haar/results"
  c.data = ml_collections.ConfigDict(
    dict(name="fashion_mnist", source="/usr/share/datasets/fashion-mnist", pad_to=0, split_seed=0)
  )
  c.model = ml_collections.ConfigDict(dict(widths=(16, 32, 32), noise_conditioning=True))
  # U1 and U2 (a): one full-skip net per pooling and seed
  c.poolings = ("avg", "max", "conv")
  # U2 (b): retrain with the skip replaced at construction ("none" = skips=False)
  # levels: "all" (skip replaced at every level, at construction) and/or "finest" (at j = J only)
  c.retrain = ml_collections.ConfigDict(
    dict(pooling="avg", skip_modes=("detail", "approx", "none"), levels=("all",))
  )
  c.optim = ml_collections.ConfigDict(
    dict(lr=2e-3, warmup_steps=50, b1=0.9, b2=0.999, grad_clip=1.0)
  )
  # trained with mrflax.training.fit in <workdir>/train/<group>/seed<s>: loss logged in windows
  # tiling the last 10% of the steps, a checkpoint every checkpoint_every steps (resumable)
  c.train = ml_collections.ConfigDict(
    dict(steps=600, batch_size=32, sigma_min=0.1, sigma_max=1.0, checkpoint_every=200)
  )
  c.eval = ml_collections.ConfigDict(
    dict(
      n_test=1000,  # test images for the losses (U2); fixed noise, the same for every model
      n_features=500,  # of which the first n_features give U1
      batch_size=500,
      seed=1234,  # eval noise
      per_level=True,  # U2 (a) at each level alone as well as at all levels
      example_sigma=0.5,  # noise level of the example figure
      n_examples=3,
    )
  )
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config of variant ``arg`` (one of ``VARIANTS``; default ``fashion``)."""
  arg = arg or "fashion"
  c = _base()
  if arg == "fashion":
    pass
  elif arg == "fashion_finest":
    c.name = arg
    c.poolings = ("avg",)
    c.retrain.levels = ("finest",)
  elif arg == "fashion32":
    c.name = "fashion32"
    c.data.pad_to = 32
    c.model.widths = (16, 32, 32, 32)
  elif arg in ("digits", "small"):
    c.name = arg
    c.data.name = "digits"
    c.data.source = ""
    c.model.widths = (16, 32, 32)
    c.train.steps = 1000
    c.train.batch_size = 64
    c.train.checkpoint_every = 250
    c.eval.n_test = 359
    c.eval.n_features = 359
    c.eval.batch_size = 359
    if arg == "small":
      c.results_dir = ""  # workdir only
      c.seeds = (0, 1)
      c.poolings = ("avg", "conv")
      c.retrain.skip_modes = ("none",)
      c.eval.per_level = False
      c.model.widths = (8, 8, 8)
      c.optim.warmup_steps = 1
      c.train.steps = 3
      c.train.batch_size = 16
      c.eval.n_test = 48
      c.eval.n_features = 32
      c.eval.batch_size = 48
      c.eval.n_examples = 1
  else:
    raise ValueError(f"unknown config variant {arg!r}: use one of {VARIANTS}")
  return c
