"""VDVAE on ImageNet 32x32 with the reference hyperparameters (VDVAE_REFERENCE.md §8).

Command:
  python -m experiments.main --config=experiments/imagenet32/config.py --workdir=workdir/i32
  (``:shared`` = groups of 3 per resolution; ``:sharedK`` / ``:sharedfull``; ``:tiny`` smoke)

Hardware: GPUs or a TPU slice (global batch 256, as the reference's 8 x 32 GPUs); 119,280,868
parameters. Data: the van den Oord 32x32 variant, as TFDS downsampled_imagenet/32x32 2.0.0 or
imported from local files with mrflax.data.import_arrays (its TFDS URLs are reported dead).
Expected (reference, openai/vdvae): 3.80 bits/dim; not yet run by mrflax.
"""

from experiments.hvae.base import apply_variant, base


def get_config(arg: str | None = None):
  c = base()
  c.data.name = "imagenet32"
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
  c.eval.batch_size = 100
  return apply_variant(c, arg, default_share="3")
