"""Small host-side helpers of the training driver: array digests and host copies."""

from __future__ import annotations

import hashlib
from typing import Any

import jax
import numpy as np


def host_array(x) -> np.ndarray:
  """A numpy copy of a replicated (or host) array, on any process of a multi-process run.

  Examples:
    >>> import jax.numpy as jnp
    >>> host_array(jnp.arange(3)).tolist()
    [0, 1, 2]
  """
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    return np.asarray(x.addressable_data(0))
  return np.asarray(jax.device_get(x))


def params_digest(tree: Any) -> str:
  """SHA-256 of the bytes of every array leaf (in tree order): equal digests, equal weights.

  Examples:
    >>> import jax.numpy as jnp
    >>> params_digest({"w": jnp.zeros(2)}) == params_digest({"w": jnp.zeros(2)})
    True
    >>> params_digest({"w": jnp.zeros(2)}) == params_digest({"w": jnp.ones(2)})
    False
  """
  h = hashlib.sha256()
  for x in jax.tree.leaves(tree):
    h.update(np.ascontiguousarray(host_array(x)).tobytes())
  return h.hexdigest()
