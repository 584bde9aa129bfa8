"""Offline intersphinx inventories for JAX, Flax, optax and NumPy.

The build machines reach no documentation site, so intersphinx cannot download the projects'
``objects.inv``. Instead, ``conf.py`` writes a small inventory per project from the tables below
(the objects mrflax's signatures and docstrings mention) and points ``intersphinx_mapping`` at
those local files. The links still go to the projects' online documentation. To link another
object, add a row: ``(name, role, path relative to the project's base URL)``; ``$`` in a path
stands for the name, as in Sphinx inventories.
"""

from __future__ import annotations

import pathlib
import zlib

# project -> (base URL, version, [(name, "domain:role", uri)])
PROJECTS: dict[str, tuple[str, str, list[tuple[str, str, str]]]] = {
  "jax": (
    "https://docs.jax.dev/en/latest/",
    "0.10",
    [
      ("jax", "py:module", "jax.html#module-$"),
      ("jax.Array", "py:class", "_autosummary/$.html#$"),
      ("jax.jit", "py:function", "_autosummary/$.html#$"),
      ("jax.vmap", "py:function", "_autosummary/$.html#$"),
      ("jax.grad", "py:function", "_autosummary/$.html#$"),
      ("jax.checkpoint", "py:function", "_autosummary/$.html#$"),
      ("jax.eval_shape", "py:function", "_autosummary/$.html#$"),
      ("jax.lax.scan", "py:function", "_autosummary/$.html#$"),
      ("jax.random.key", "py:function", "_autosummary/$.html#$"),
      ("jax.distributed.initialize", "py:function", "_autosummary/$.html#$"),
      ("jax.sharding.Mesh", "py:class", "jax.sharding.html#$"),
      ("jax.sharding.NamedSharding", "py:class", "jax.sharding.html#$"),
      ("jax.sharding.PartitionSpec", "py:class", "jax.sharding.html#$"),
      ("jax.numpy", "py:module", "jax.numpy.html#module-$"),
    ],
  ),
  "flax": (
    "https://flax.readthedocs.io/en/latest/",
    "0.12",
    [
      ("flax.nnx.Module", "py:class", "api_reference/flax.nnx/module.html#$"),
      ("flax.nnx.Rngs", "py:class", "api_reference/flax.nnx/rnglib.html#$"),
      ("flax.nnx.Param", "py:class", "api_reference/flax.nnx/variables.html#$"),
      ("flax.nnx.Variable", "py:class", "api_reference/flax.nnx/variables.html#$"),
      ("flax.nnx.Optimizer", "py:class", "api_reference/flax.nnx/training/optimizer.html#$"),
      ("flax.struct.dataclass", "py:function", "api_reference/flax.struct.html#$"),
    ],
  ),
  "optax": (
    "https://optax.readthedocs.io/en/latest/",
    "0.2",
    [
      ("optax.GradientTransformation", "py:class", "api/transformations.html#$"),
      ("optax.adam", "py:function", "api/optimizers.html#$"),
      ("optax.adamw", "py:function", "api/optimizers.html#$"),
      ("optax.Schedule", "py:class", "api/optimizer_schedules.html#$"),
    ],
  ),
  "numpy": (
    "https://numpy.org/doc/stable/",
    "2",
    [
      ("numpy.ndarray", "py:class", "reference/generated/$.html#$"),
      ("numpy.dtype", "py:class", "reference/generated/$.html#$"),
      ("numpy.uint8", "py:attribute", "reference/arrays.scalars.html#$"),
      ("numpy.random.Generator", "py:class", "reference/random/generator.html#$"),
    ],
  ),
}


def write_inventory(path: pathlib.Path, project: str, version: str, rows) -> None:
  """Writes a Sphinx ``objects.inv`` (format version 2) holding ``rows``."""
  header = (
    "# Sphinx inventory version 2\n"
    f"# Project: {project}\n"
    f"# Version: {version}\n"
    "# The remainder of this file is compressed using zlib.\n"
  )
  # Sphinx expands only a trailing ``$``; expand every one here.
  body = "".join(f"{name} {role} 1 {uri.replace('$', name)} -\n" for name, role, uri in rows)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(header.encode() + zlib.compress(body.encode()))


def write_all(directory: pathlib.Path) -> dict[str, tuple[str, str]]:
  """Writes every inventory into ``directory``; returns the ``intersphinx_mapping``."""
  mapping = {}
  for name, (url, version, rows) in PROJECTS.items():
    path = directory / f"{name}.inv"
    write_inventory(path, name, version, rows)
    mapping[name] = (url, str(path))
  return mapping
