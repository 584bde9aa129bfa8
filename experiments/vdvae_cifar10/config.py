"""VDVAE on CIFAR-10 with the reference hyperparameters (VDVAE_REFERENCE.md §8).

Command:
  python -m experiments.main --config=experiments/vdvae_cifar10/config.py --workdir=workdir/c10
  (``:shared`` = decoder cells shared in groups of 3 per resolution, about half the parameters,
  THEORY.md Table 5.1; ``:sharedK`` / ``:sharedfull`` for other group sizes; ``:tiny`` smoke)

Hardware: GPUs or a TPU slice (global batch 32, as the reference's 16 x 2 GPUs); 39,145,700
parameters. Data: TFDS cifar10 3.0.2 (prepare on a networked machine with
file_format="array_record"), split as VDVAE does: 45,000 train / 5,000 validation (periodic
evaluation, best checkpoint) / 10,000 test; the stored order is rebuilt from the records' ids.
Importance-weighted test bound: add --config.eval.iw_samples=K [--config.eval.iw_chunk=C].
Expected (reference, openai/vdvae): 2.87 bits/dim test NLL after
about 1.1M iterations; mrflax has not run this configuration to completion.
"""

from experiments.hvae.base import apply_variant, base


def get_config(arg: str | None = None):
  c = base()
  c.data.name = "cifar10"
  # VDVAE's split (VDVAE_REFERENCE.md §10): 45,000 train / 5,000 validation cut from the
  # training batches with sklearn's train_test_split(random_state=11172018); test = 10,000
  c.data.train_split = "vdvae_train"
  c.data.valid_split = "vdvae_valid"
  c.model.preset = "cifar10"
  c.optim.lr = 2e-4
  c.optim.warmup_steps = 100
  c.optim.weight_decay = 0.01
  c.optim.grad_clip = 200.0
  c.optim.skip_threshold = 400.0
  c.optim.ema_decay = 0.9999
  c.train.steps = 1_100_000
  c.train.batch_size = 32
  c.train.log_every = 1000
  c.train.checkpoint_every = 10000
  c.train.eval_every = 10000  # validation ELBO of the EMA model; the best checkpoint is kept
  c.eval.batch_size = 100
  return apply_variant(c, arg, default_share="3")
