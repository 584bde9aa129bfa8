"""HVAE on scikit-learn's 8x8 digits: the `make demo` run (offline, a few minutes on a CPU).

Command:
  python -m experiments.main --config=experiments/digits/config.py --workdir=workdir/digits
  (variants: ``config.py:shared`` shares each resolution's decoder cells in groups of 2;
  ``config.py:tiny`` is a 40-step smoke run used by the tests)

Hardware: 2-core x86_64 CPU. Data: the 1,797 digits bundled with scikit-learn, rescaled to
uint8 (0..16 -> 0..255), 1,438 train / 359 test (fixed-seed split); imported automatically
into ``data.data_dir`` on first use.
Expected (measured 2026-11-22 on the 2-core CPU, otherwise idle): 22 s compile, 7.2 steps/s,
5.3 minutes in all; test negative ELBO of the EMA model 3.68 bits/dim (distortion 2.28 + rate
0.27 nats/dim), train loss 2.54 nats/dim at the end. This run checks that the whole pipeline
learns; it is not a benchmark result.
"""

from experiments.hvae.base import base


def get_config(arg: str | None = None):
  c = base()
  c.data.name = "digits"
  c.data.auto_import = True
  c.model.preset = "digits8"
  c.optim.lr = 2e-3
  c.optim.warmup_steps = 50
  c.optim.decay_steps = 1950
  c.optim.final_lr_fraction = 0.1
  c.optim.ema_decay = 0.995
  c.train.steps = 2000
  c.train.batch_size = 64
  c.train.steps_per_call = 10
  c.train.log_every = 200
  c.train.checkpoint_every = 1000
  c.train.eval_every = 1000  # test-split ELBO at steps 1000 and 2000 (digits have no held-out)
  c.eval.batch_size = 128
  if arg == "shared":
    c.model.share = "2"
  elif arg == "tiny":
    c.train.steps = 40
    c.train.log_every = 20
    c.train.checkpoint_every = 20
    c.train.eval_every = 20
    c.optim.warmup_steps = 5
    c.optim.decay_steps = 35
    c.eval.num_samples = 4
  elif arg:
    raise ValueError(f"unknown variant {arg!r}; choose from: shared, tiny")
  return c
