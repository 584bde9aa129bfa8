"""The shared skeleton of every HVAE experiment config (sections data, model, optim, train, eval).

Dataset configs start from :func:`base` and override what differs; the command line overrides
any field (``--config.train.steps=100``); a typo'd key is an error (the config is locked).
"""

from __future__ import annotations

import ml_collections

from mrflax.data import default_data_dir


def base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.runner = "hvae"
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.name = "digits"
  c.data.data_dir = default_data_dir()
  c.data.bits = 8
  c.data.binarize = "none"  # none | dynamic | static
  c.data.pad_to = 0  # 0: no padding
  c.data.auto_import = False  # only datasets with an offline importer (digits)
  c.data.train_split = ""  # "": the dataset's training split
  c.data.valid_split = ""  # periodic evaluation; "": the held-out split if any, else the test one

  c.model = ml_collections.ConfigDict()
  c.model.preset = "digits8"
  c.model.share = "1"  # decoder cells shared in groups of K per resolution, or "full"
  c.model.time_embedding = False  # sinusoidal time features through zero-initialised FiLM
  c.model.exec_mode = "unroll"  # unroll | scan (repeated applications; ExecPolicy)
  c.model.overrides = ml_collections.ConfigDict()  # HVAESpec or ExecPolicy fields (routed)

  # VDVAE's optimisation (AdamW, betas 0.9/0.9, warm-up 100, clip 200, skip 400); 0 = off
  c.optim = ml_collections.ConfigDict()
  c.optim.optimizer = "adamw"
  c.optim.lr = 2e-4
  c.optim.warmup_steps = 100
  c.optim.decay_steps = 0
  c.optim.final_lr_fraction = 0.0
  c.optim.b1 = 0.9
  c.optim.b2 = 0.9
  c.optim.eps = 1e-8
  c.optim.weight_decay = 0.01
  c.optim.grad_clip = 200.0
  c.optim.skip_threshold = 400.0
  c.optim.adaptive_skip = 0.0
  c.optim.adaptive_after = 100
  c.optim.ema_decay = 0.9999

  c.train = ml_collections.ConfigDict()
  c.train.steps = 1000
  c.train.batch_size = 32
  c.train.steps_per_call = 1
  c.train.log_every = 100
  c.train.checkpoint_every = 500
  c.train.keep_checkpoints = 3
  c.train.max_consecutive_skips = 100
  c.train.eval_every = 0  # steps between validation ELBOs of the EMA model (keeps the best); 0: off

  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 64
  c.eval.num_samples = 16
  c.eval.temperatures = (1.0, 0.9, 0.8, 0.7)
  c.eval.iw_samples = 0  # K of the importance-weighted test bound; 0: off
  c.eval.iw_chunk = 0  # samples per vmapped call (memory); 0: all K at once
  return c


def apply_variant(
  c: ml_collections.ConfigDict, arg: str | None, *, default_share: str
) -> ml_collections.ConfigDict:
  """The variants every HVAE config understands (the part after ``config.py:``).

  * ``""``: the config as documented;
  * ``"shared"`` / ``"sharedK"`` / ``"sharedfull"``: decoder cells shared in groups of ``K``
    per resolution (``"shared"`` means ``K = default_share``);
  * ``"tiny"``: a few steps at a small batch, for smoke tests.
  """
  if not arg:
    return c
  if arg.startswith("shared"):
    k = arg[len("shared") :] or default_share
    if not (k == "full" or k.isdigit()):
      raise ValueError(f"bad sharing variant {arg!r}: use shared, shared2, shared3, sharedfull")
    c.model.share = k
    return c
  if arg == "tiny":
    c.train.steps = 4
    c.train.log_every = 2
    c.train.checkpoint_every = 2
    c.train.eval_every = 4
    c.train.steps_per_call = 1
    c.train.batch_size = 8
    c.optim.warmup_steps = 1
    c.eval.num_samples = 2
    return c
  raise ValueError(f"unknown variant {arg!r}; choose from: shared[K|full], tiny")
