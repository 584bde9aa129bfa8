r"""Configs for the HVAE claims of the multi-resolution paper (issue 6, items 2-5; THEORY §4-6).

Every run is a small VDVAE-style HVAE on scikit-learn's 8x8 digits (real data, offline, imported
automatically), 18 top-down blocks (``1x2,4m1,4x5,8m4,8x9``: 2 at 1x1, 6 at 4x4, 10 at 8x8),
width 32, zdim 8, discretised logistic likelihood, trained with the digits demo's optimiser for
``hvae.train.steps`` steps at batch 64; test ELBO of the EMA model in bits/dim on the 359 test
digits. Variants (``config.py:<arg>``):

* ``time`` (item 2, THEORY §5.4 D1/D2): per-block state RMS along depth for posterior passes and
  prior samples (trained vs init), Spearman correlation with depth within each resolution, and a
  ridge probe predicting the block index from the state (held-out R², init and shuffled-label
  controls). Uses the unshared seed-0 run of ``sharing``.
* ``sharing`` (item 3, §5.2 TS2/TS3): unshared (k = 1), shared in groups of 2, one cell per
  resolution (full), and full sharing with a FiLM time embedding, at equal depth and budget,
  seeds 0 and 1: test NLL against distinct parameters.
* ``point_mass`` (item 4, §6): the unshared baseline against a Gaussian start
  (``start_noise`` ζ ∈ {0.3, 1.0}), seeds 0 and 1: skipped updates and gradient-norm spikes during
  training, state variance growth, exposure ratio and relative increments per block for prior
  samples at τ ∈ {1.0, 0.9, 0.8, 0.7, 0.5}, non-finite fraction, sample spread and Haar spectrum
  against the data, test NLL.
* ``euler`` (item 5, §4.3 explicit step size, D4): one shared cell per resolution in explicit
  step-size mode with ``shared_sigma``, trained with N = 18 applications and with N = 36, each
  evaluated with N' ∈ {9, 18, 36} applications at the same parameters (finer / coarser Euler
  steps): test NLL and samples.
* ``all``: every experiment above, in that order (runs shared between experiments train once).
* ``fashion_sharing`` (issue 15): the sharing study on real images, Fashion-MNIST 28x28 with the
  CPU-sized run of ``experiments/fashion_mnist/config.py:cpu`` per variant (20 top-down blocks,
  619,218 parameters unshared, 2,400 steps, 54-59 minutes each on 2 idle cores): k = 1 and
  k = 2 with seeds 0 and 1, full sharing and full sharing with the time embedding with seed 0
  (``sharing_runs``). Per run: test ELBO of the EMA model on all 10,000 test images, rate,
  distortion, KL per resolution, validation curves; the importance-weighted bound (K = 64, first
  ``iw_images`` test images) of the best unshared and the best shared run; their samples and
  reconstructions. ``max_new_runs`` trains at most that many missing runs per invocation (the
  study spans sessions; 0 only reports); the JSON lists the finished rows and the pending runs.
* ``fashion_time``, ``fashion_point_mass`` (issue 15 item 4): the ``time`` probe and the
  point-mass diagnostics (no ζ runs) on the unshared seed-0 Fashion-MNIST run, on the first
  ``probe_images`` test images; ``fashion_all``: the three Fashion-MNIST experiments.
* ``small``: every experiment at toy size for the smoke test: 4 steps of a 5-block width-16
  model, one seed, no ζ runs, so one run (``k1_s0``) serves time, sharing and point mass and
  euler trains its own shared cell (two trainings in all).

Command (each experiment resumes finished runs from ``--workdir``):
  python -m experiments.main --config=experiments/hvae_claims/config.py:all \
      --workdir=/tmp/hvae_claims
  python -m experiments.main --config=experiments/hvae_claims/config.py:fashion_all \
      --workdir=/work/fashion_claims --config.max_new_runs=1   # one more run per call
Hardware: 2-core x86_64 CPU. Wall time and results: experiments/README.md (section "HVAE claims";
Fashion-MNIST, all six runs, 2026-12-07: test bits/dim k = 1 3.394 / 3.368, k = 2 3.387 / 3.361,
full sharing 3.461, full sharing + time embedding 3.411; TS2 supported, TS2-full and TS3 not).
"""

from __future__ import annotations

import ml_collections

from experiments.digits import config as digits_config
from experiments.fashion_mnist import config as fashion_config

EXPERIMENTS = ("time", "euler", "point_mass", "sharing")  # cheapest first; runs are shared
FASHION = {
  "fashion_sharing": ("fashion_sharing",),
  "fashion_time": ("time",),
  "fashion_point_mass": ("point_mass",),
  "fashion_all": ("fashion_sharing", "time", "point_mass"),
  "fashion_small": ("fashion_sharing", "time", "point_mass"),
}
#: The Fashion-MNIST sharing study, in training order (the seed-0 pair first).
FASHION_RUNS = ("k1_s0", "k2_s0", "k1_s1", "k2_s1", "kfull_s0", "kfull_time_s0")
DEC_BLOCKS = "1x2,4m1,4x5,8m4,8x9"


def hvae_base() -> ml_collections.ConfigDict:
  """The HVAE run every experiment starts from (the digits demo with a deeper decoder)."""
  c = digits_config.get_config()
  c.model.preset = "digits8"
  c.model.exec_mode = "scan"
  c.model.overrides = ml_collections.ConfigDict({"dec_blocks": DEC_BLOCKS})
  c.train.steps = 1500
  c.train.eval_every = 0
  c.train.log_every = 50
  c.train.checkpoint_every = 1500
  c.optim.decay_steps = 1450
  c.eval.num_samples = 12
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg in FASHION:
    return fashion(arg)
  c = ml_collections.ConfigDict()
  c.runner = "hvae_claims"
  c.experiments = EXPERIMENTS if arg in (None, "", "all", "small") else (arg,)
  if any(e not in EXPERIMENTS for e in c.experiments):
    raise ValueError(
      f"unknown experiment {arg!r}; choose from {', '.join(EXPERIMENTS)}, all, small, "
      f"{', '.join(FASHION)}"
    )
  c.hvae = hvae_base()
  c.prefix = ""  # results are <prefix><experiment>.json
  c.probe_images = 0  # test images the state probes use (0: all 359)
  c.seeds = (0, 1)
  c.shares = ("1", "2", "full")
  c.zetas = (0.3, 1.0)
  c.temperatures = (1.0, 0.9, 0.8, 0.7, 0.5)
  c.num_prior_samples = 256
  c.time_embedding_runs = True  # sharing: also full sharing with a FiLM time embedding
  c.euler_eval_blocks = ("1x1,4m1,4x2,8m4,8x4", DEC_BLOCKS, "1x4,4m1,4x11,8m4,8x19")
  c.euler_train = (1, 2)  # which of euler_eval_blocks are also trained
  c.results_dir = "experiments/hvae_claims/results"
  if arg == "small":  # the smoke test: every code path, as few compilations as possible
    c.hvae.train.steps = 4
    c.hvae.train.log_every = 2
    c.hvae.train.checkpoint_every = 4
    c.hvae.train.steps_per_call = 1
    c.hvae.optim.warmup_steps = 1
    c.hvae.optim.decay_steps = 3
    c.hvae.optim.ema_decay = 0.5  # the EMA model moves away from the initialisation in 4 steps
    c.hvae.eval.num_samples = 4
    c.hvae.eval.temperatures = (1.0, 0.5)
    # the smallest model every diagnostic runs on: 3 blocks at 8x8 (Spearman needs 3, the depth
    # probe 2); the compile time of the train step dominates the test, hence also the XLA
    # convolution backward and no scan
    c.hvae.model.exec_mode = "unroll"
    c.hvae.model.overrides = ml_collections.ConfigDict(
      dict(
        dec_blocks="1x1,4m1,8m4,8x2",
        enc_blocks="8d2,4d4,1x1",
        width=16,
        zdim=4,
        conv_backward="xla",
      )
    )
    # one run (k1_s0) serves time, sharing and point_mass; euler trains its one shared cell
    c.euler_eval_blocks = ("1x1,4m1,8m4", "1x1,4m1,8m4,8x2")
    c.seeds = (0,)
    c.shares = ("1",)
    c.time_embedding_runs = False
    c.euler_train = (1,)
    c.zetas = ()
    c.temperatures = (1.0, 0.5)
    c.num_prior_samples = 16
    c.results_dir = ""  # the workdir
  return c


def fashion(arg: str) -> ml_collections.ConfigDict:
  """The Fashion-MNIST study (issue 15): see the module docstring."""
  c = ml_collections.ConfigDict()
  c.runner = "hvae_claims"
  c.experiments = FASHION[arg]
  c.hvae = fashion_config.get_config("cpu")
  c.prefix = "fashion_"
  c.sharing_runs = FASHION_RUNS
  c.max_new_runs = -1  # trainings per invocation: -1 every missing run, 0 none (report only)
  c.seeds = (0,)  # time / point_mass: the unshared run of the first seed
  c.zetas = ()
  c.temperatures = (1.0, 0.9, 0.8, 0.7, 0.5)
  c.num_prior_samples = 256
  c.probe_images = 1000  # states of 1,000 images at 32x32x64: ~2 GB per posterior pass
  c.iw_samples = 64
  c.iw_chunk = 16
  c.iw_images = 500  # K = 64 on 500 images: 32,000 posterior passes, ~5 minutes idle
  c.results_dir = "experiments/hvae_claims/results"
  if arg == "fashion_small":  # the smoke test: a tiny model, a few steps, two runs
    h = c.hvae
    h.train.steps = 4
    h.train.log_every = 2
    h.train.eval_every = 2
    h.train.checkpoint_every = 4
    h.train.steps_per_call = 1
    h.train.batch_size = 8
    h.optim.warmup_steps = 1
    h.optim.decay_steps = 3
    h.optim.ema_decay = 0.5
    h.eval.batch_size = 16
    h.eval.num_samples = 2
    h.model.exec_mode = "unroll"
    h.model.overrides = ml_collections.ConfigDict(
      dict(
        dec_blocks="1x1,4m1,8m4,16m8,32m16,32x2",
        enc_blocks="32d2,16d2,8d2,4d4,1x1",
        width=8,
        zdim=2,
        conv_backward="xla",
      )
    )
    c.sharing_runs = ("k1_s0", "kfull_s0")
    c.temperatures = (1.0, 0.5)
    c.num_prior_samples = 8
    c.probe_images = 16
    c.iw_samples = 4
    c.iw_chunk = 2
    c.iw_images = 16
    c.results_dir = ""
  return c
