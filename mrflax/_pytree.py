"""Frozen dataclasses as pytrees whose rebuilds skip ``__init__`` (and so its type checks)."""

from __future__ import annotations

import dataclasses

import jax


def pytree_dataclass(cls: type) -> type:
  """Registers a frozen dataclass as a pytree: its fields are children, ``static`` ones metadata.

  As ``jax.tree_util.register_dataclass`` (same children, key paths and metadata), except that
  unflattening does not call ``__init__``. JAX rebuilds pytrees with leaves that are not arrays
  (``object()`` sentinels in ``vmap``'s axis handling, ``ShapeDtypeStruct`` under ``eval_shape``,
  ``None`` or shapes under ``tree.map``), so the field annotations, checked at construction by
  jaxtyping in the test run, describe what code *constructs*, not every tree JAX builds.

  Examples:
    >>> import dataclasses
    >>> import jax
    >>> @pytree_dataclass
    ... @dataclasses.dataclass(frozen=True)
    ... class Pair:
    ...   a: jax.Array
    ...   n: int = dataclasses.field(default=1, metadata=dict(static=True))
    >>> jax.tree.map(lambda x: x.shape, Pair(jax.numpy.zeros(2)))
    Pair(a=(2,), n=1)
  """
  fields = dataclasses.fields(cls)
  data = tuple(f.name for f in fields if not f.metadata.get("static", False))
  meta = tuple(f.name for f in fields if f.metadata.get("static", False))

  def flatten_with_keys(obj):
    children = tuple((jax.tree_util.GetAttrKey(n), getattr(obj, n)) for n in data)
    return children, tuple(getattr(obj, n) for n in meta)

  def flatten(obj):
    return tuple(getattr(obj, n) for n in data), tuple(getattr(obj, n) for n in meta)

  def unflatten(aux, children):
    obj = object.__new__(cls)
    for n, v in (*zip(data, children, strict=True), *zip(meta, aux, strict=True)):
      object.__setattr__(obj, n, v)
    return obj

  jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
  return cls
