"""HVAE on Fashion-MNIST (28x28 grey levels padded to 32x32, loss on the central 28x28).

Command:
  make data && python -m experiments.import_data fashion_mnist   # once, offline
  python -m experiments.main --config=experiments/fashion_mnist/config.py --workdir=workdir/fmnist
  (``:shared`` shares decoder cells in groups of 2 per resolution; ``:tiny`` is a smoke run)

Hardware: written for a 2-core CPU (about 1-2 s per step at batch 32 on this preset; 20k steps
is an overnight run) or one GPU. Data: Debian's dataset-fashion-mnist IDX files imported as TFDS
fashion_mnist 3.0.1 (60,000 train / 10,000 test), 8-bit discretised logistic likelihood.
Expected: not yet measured by mrflax (the experiments issue records it in experiments/README.md).
"""

from experiments.hvae.base import apply_variant, base


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
  return apply_variant(c, arg, default_share="2")
