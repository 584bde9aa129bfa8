"""HVAE on dynamically binarised MNIST padded to 32x32 (Bernoulli likelihood, loss on 28x28).

Command: (import local MNIST IDX files once, or prepare TFDS mnist on a networked machine)
  python -m experiments.import_data mnist --source DIR_WITH_MNIST_IDX_FILES
  python -m experiments.main --config=experiments/mnist/config.py --workdir=workdir/mnist
  (``:shared`` shares decoder cells in groups of 2; ``:tiny`` is a smoke run)

Hardware: one GPU (a 2-core CPU manages about one step per second on this preset).
Data: MNIST 60,000 train / 10,000 test, re-binarised with a fresh Bernoulli draw per example and
epoch; the test ELBO uses one fixed draw. Metric: nats per image (the binarised-MNIST convention).
Expected: Efficient-VDVAE reports 79.09 nats with a much larger model; this small preset has not
been run by mrflax yet.
"""

from experiments.hvae.base import apply_variant, base


def get_config(arg: str | None = None):
  c = base()
  c.data.name = "mnist"
  c.data.binarize = "dynamic"
  c.data.pad_to = 32
  c.model.preset = "mnist32"
  c.optim.lr = 1e-3
  c.optim.warmup_steps = 200
  c.optim.decay_steps = 99800
  c.optim.ema_decay = 0.999
  c.train.steps = 100000
  c.train.batch_size = 64
  c.train.steps_per_call = 10
  c.train.log_every = 500
  c.train.checkpoint_every = 5000
  c.train.eval_every = 10000  # test-split ELBO (no held-out split), best checkpoint kept
  c.eval.batch_size = 250
  return apply_variant(c, arg, default_share="2")
