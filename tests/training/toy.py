"""A tiny NNX regression model shared by the training tests (compiles in well under a second)."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mrflax.training.steps import StepConfig, Trainer


class Toy(nnx.Module):
  def __init__(self, *, rngs):
    self.conv = nnx.Conv(2, 4, (3, 3), rngs=rngs)
    self.out = nnx.Linear(4, 1, rngs=rngs)

  def __call__(self, x):
    return self.out(jnp.mean(jax.nn.gelu(self.conv(x)), axis=(1, 2)))[:, 0]


def toy_loss(model, batch, key):
  noise = 0.01 * jax.random.normal(key, batch["y"].shape)
  err = model(batch["x"]) - batch["y"] + noise
  mse = jnp.mean(err**2)
  return mse, {"mse": mse, "per_example": err**2}


def make_batch(seed, n=8, scale=1.0):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n, 4, 4, 2)).astype(np.float32)
  y = (scale * x.mean(axis=(1, 2, 3))).astype(np.float32)
  return {"x": x, "y": y}


CFG = StepConfig(
  lr=1e-2, warmup_steps=2, weight_decay=0.01, grad_clip=5.0, skip_threshold=50.0, ema_decay=0.9
)


def make(cfg=CFG, seed=0):
  model = Toy(rngs=nnx.Rngs(seed))
  trainer = Trainer(model, toy_loss, cfg)
  return trainer, trainer.init_state(model, jax.random.key(seed))


def toy_source(n=64, seed=0):
  """An in-memory dataset of (x, y) examples for the toy regression."""
  rng = np.random.default_rng(seed)
  xs = rng.standard_normal((n, 4, 4, 2)).astype(np.float32)
  return [{"x": x, "y": np.float32(x.mean())} for x in xs]


def toy_iter(batch_size=8, seed=0):
  """A checkpointable Grain iterator over :func:`toy_source`."""
  from mrflax import data

  ds = data.train_dataset(
    toy_source(),
    global_batch=batch_size,
    seed=seed,
    preprocess=lambda ex: ex,
    process_index=0,
    process_count=1,
  )
  return iter(ds)
