"""Test setup: 4 fake CPU devices, no silent rank promotion, fixed seeds."""

import os

os.environ.setdefault("XLA_FLAGS", "")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax

jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_numpy_rank_promotion", "raise")
# Not "jax_numpy_dtype_promotion=strict": it breaks optax.adam/adamw in these versions.
