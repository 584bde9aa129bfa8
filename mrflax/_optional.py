"""Imports of optional dependencies: a missing one raises an ImportError naming its extra.

``pip install mrflax`` installs the library's core (JAX, Flax, optax, Orbax, Grain). These
pieces need more and import it only when called:

- ``mrflax[data]`` (``tensorflow-datasets``): on-disk TFDS datasets, ``mrflax.data.import_*``,
  ``open_source``, ``tfds_source``;
- ``mrflax[tensorboard]`` (``tensorboard``): event files written by ``MetricWriter``;
- ``mrflax[plots]`` (``matplotlib``): ``mrflax.evaluation.save_kl_plot``;
- ``mrflax[digits]`` (``scikit-learn``): ``mrflax.data.digits_arrays`` and ``import_digits``.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def import_optional(module: str, *, extra: str, purpose: str) -> ModuleType:
  """``importlib.import_module(module)``, or an ImportError that says which extra to install."""
  try:
    return importlib.import_module(module)
  except ImportError as err:
    package = module.split(".")[0]
    raise ImportError(
      f"{purpose} needs the optional dependency {package!r}: pip install 'mrflax[{extra}]'"
    ) from err


def is_available(module: str) -> bool:
  """Whether ``module`` imports (without raising)."""
  try:
    importlib.import_module(module)
  except ImportError:
    return False
  return True
