r"""Optimisers and schedules driven by the train state's own step counter.

The learning rate is a function of ``TrainState.step``, the iteration counter with skipped
iterations included (VDVAE semantics: a skipped update still advances the schedule), not of
optax's internal count, which only accepted updates advance (a skipped update leaves the optimizer
state untouched). A restored run resumes the schedule exactly.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int


def warmup_cosine(
  step: Int[Array, ""] | int,
  *,
  lr: float,
  warmup_steps: int = 0,
  decay_steps: int | None = None,
  final_fraction: float = 0.0,
) -> Float[Array, ""]:
  r"""Linear warm-up to ``lr``, then optional cosine decay to ``final_fraction * lr``.

  .. math::
    \eta(t) = \eta \cdot \min(1, t / T_w) \quad (t < T_w), \qquad
    \eta(t) = \eta \big[f + (1 - f)\tfrac12(1 + \cos(\pi \min(1, \tfrac{t - T_w}{T_d})))\big].

  ``decay_steps=None`` keeps ``lr`` constant after the warm-up (VDVAE).

  Examples:
    >>> from mrflax.training.optim import warmup_cosine
    >>> [round(float(warmup_cosine(t, lr=1.0, warmup_steps=4, decay_steps=4)), 3)
    ...  for t in (0, 2, 4, 6, 8, 100)]
    [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
  """
  t = jnp.asarray(step, jnp.float32)
  warm = jnp.minimum(1.0, t / warmup_steps) if warmup_steps > 0 else jnp.ones(())
  if decay_steps is None:
    return lr * warm
  progress = jnp.clip((t - warmup_steps) / max(decay_steps, 1), 0.0, 1.0)
  cosine = final_fraction + (1 - final_fraction) * 0.5 * (1 + jnp.cos(jnp.pi * progress))
  return lr * jnp.where(t < warmup_steps, warm, cosine)


def make_transform(
  name: str = "adamw",
  *,
  b1: float = 0.9,
  b2: float = 0.9,
  eps: float = 1e-8,
  weight_decay: float = 0.0,
) -> optax.GradientTransformation:
  r"""The direction of an update, before the learning rate (which the train step applies).

  * ``"adamw"`` (VDVAE): Adam moments plus decoupled weight decay,
    :math:`u = \hat m / (\sqrt{\hat v} + \epsilon) + \lambda \theta`; the step is :math:`-\eta u`.
    With ``weight_decay=0`` and ``b2=0.999`` this is optax's Adam (the GHM networks,
    :func:`mrflax.training.ghm.step_config`).
  * ``"adamax"`` (Efficient-VDVAE): :math:`u = \hat m / \max(\beta_2 u, |g|)` plus decay.

  Examples:
    >>> import jax.numpy as jnp
    >>> from mrflax.training.optim import make_transform
    >>> tx = make_transform("adamw", weight_decay=0.0)
    >>> u, _ = tx.update({"w": jnp.array([3.0])}, tx.init({"w": jnp.zeros(1)}),
    ...                  {"w": jnp.zeros(1)})
    >>> round(float(u["w"][0]), 4)   # first Adam step is sign(g)
    1.0
  """
  if name == "adamw":
    base = optax.scale_by_adam(b1=b1, b2=b2, eps=eps)
  elif name == "adamax":
    base = optax.scale_by_adamax(b1=b1, b2=b2, eps=eps)
  else:
    raise ValueError(f"optimizer must be 'adamw' or 'adamax', got {name!r}")
  if weight_decay:
    return optax.chain(base, optax.add_decayed_weights(weight_decay))
  return base
