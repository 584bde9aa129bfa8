"""VDVAE on ImageNet 32x32 with the reference hyperparameters (VDVAE_REFERENCE.md §8).

Command:
  python -m experiments.main --config=experiments/imagenet32/config.py --workdir=workdir/i32
  (``:shared`` = groups of 3 per resolution; ``:sharedK`` / ``:sharedfull``; ``:tiny`` smoke)

Hardware: GPUs or a TPU slice (global batch 256, as the reference's 8 x 32 GPUs); 119,280,868
parameters. Data: the van den Oord 32x32 variant, imported from train_32x32.tar and
valid_32x32.tar (SHA-256 checked; TFDS's download URLs are reported dead) with
  python -m experiments.import_data imagenet32 --source DIR_WITH_TARS --data_dir DATA_DIR
then VDVAE's split: seed-42 permutation of the sorted training images, last 5,000 -> validation
(periodic evaluation, best checkpoint); test = the official validation tar. (A stock TFDS copy
stores images in hashed order without ids, so the held-out split needs the imported copy.)
Expected (reference, openai/vdvae): 3.80 bits/dim; not yet run by mrflax.
"""

from experiments.hvae.base import apply_variant, base


def get_config(arg: str | None = None):
  c = base()
  c.data.name = "imagenet32"
  # VDVAE's split: seed-42 permutation of the (sorted) training images, last 5,000 held out;
  # test = the official validation tar
  c.data.train_split = "vdvae_train"
  c.data.valid_split = "vdvae_valid"
  c.model.preset = "imagenet32"
  c.optim.lr = 1.5e-4
  c.optim.warmup_steps = 100
  c.optim.weight_decay = 0.01
  c.optim.grad_clip = 200.0
  c.optim.skip_threshold = 300.0
  c.optim.ema_decay = 0.999
  c.train.steps = 1_000_000
  c.train.batch_size = 256
  c.train.log_every = 1000
  c.train.checkpoint_every = 10000
  c.train.eval_every = 10000  # validation ELBO of the EMA model; the best checkpoint is kept
  c.eval.batch_size = 100
  return apply_variant(c, arg, default_share="3")
