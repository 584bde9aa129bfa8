"""Released VDVAE PyTorch state dicts <-> mrflax HVAE parameters (VDVAE_REFERENCE.md §12).

Pure functions on ``dict[str, numpy.ndarray]``; loading a ``.th`` file needs torch (optional):
``{k: v.numpy() for k, v in torch.load(path, map_location="cpu").items()}``.

Layouts: conv weights OIHW -> HWIO (``transpose(2, 3, 1, 0)``); ``bias_xs.{k}`` ``[1, C, r, r]``
-> ``[1, r, r, C]``; ``gain``/``bias`` ``[1, C, 1, 1]`` -> ``[C]``; biases unchanged. Channel orders
(DMoL layout, ``concat([x, acts])``) carry over unchanged on the last axis.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mrflax.nn.hvae.model import HVAE
from mrflax.nn.hvae.spec import HVAESpec

_OIHW_TO_HWIO = (2, 3, 1, 0)
_NCHW_TO_NHWC = (0, 2, 3, 1)


def _check_convertible(spec: HVAESpec) -> None:
  if spec.share != 1 or spec.time_embedding or spec.shared_sigma or spec.step_size != "absorbed":
    raise ValueError(
      "only unshared models without time embedding, shared_sigma or explicit step size have a "
      f"VDVAE state dict (got share={spec.share!r}, time_embedding={spec.time_embedding}, "
      f"shared_sigma={spec.shared_sigma}, step_size={spec.step_size!r})"
    )


def _block_entries(prefix, path, i_ch, mid, o_ch, k):
  out = []
  for name, (ci, co, kk) in {
    "c1": (i_ch, mid, 1),
    "c2": (mid, mid, k),
    "c3": (mid, mid, k),
    "c4": (mid, o_ch, 1),
  }.items():
    out.append((f"{prefix}.{name}.weight", (*path, name, "kernel"), (co, ci, kk, kk), "conv"))
    out.append((f"{prefix}.{name}.bias", (*path, name, "bias"), (co,), "id"))
  return out


def _entries(spec: HVAESpec):
  """(torch key, mrflax path, torch shape, layout kind) for every parameter."""
  _check_convertible(spec)
  w, z, c = spec.width, spec.zdim, spec.image_channels
  out = [
    ("encoder.in_conv.weight", ("encoder", "in_conv", "kernel"), (w, c, 3, 3), "conv"),
    ("encoder.in_conv.bias", ("encoder", "in_conv", "bias"), (w,), "id"),
  ]
  for i, (res, _) in enumerate(spec.enc_pairs):
    wr, m, k = spec.width_at(res), spec.mid_at(res), 3 if res > 2 else 1
    out += _block_entries(f"encoder.enc_blocks.{i}", ("encoder", "enc_blocks", i), wr, m, wr, k)
  for i, (res, _) in enumerate(spec.dec_pairs):
    wr, m, k = spec.width_at(res), spec.mid_at(res), 3 if res > 2 else 1
    p, path = f"decoder.dec_blocks.{i}", ("decoder", "dec_blocks", i)
    out += _block_entries(f"{p}.enc", (*path, "enc"), 2 * wr, m, 2 * z, k)
    out += _block_entries(f"{p}.prior", (*path, "prior"), wr, m, 2 * z + wr, k)
    out.append((f"{p}.z_proj.weight", (*path, "z_proj", "kernel"), (wr, z, 1, 1), "conv"))
    out.append((f"{p}.z_proj.bias", (*path, "z_proj", "bias"), (wr,), "id"))
    out += _block_entries(f"{p}.resnet", (*path, "resnet"), wr, m, wr, k)
  for j, r in enumerate(spec.bias_resolutions):
    wr = spec.width_at(r)
    out.append((f"decoder.bias_xs.{j}", ("decoder", "bias_xs", j), (1, wr, r, r), "nchw"))
  out.append(("decoder.gain", ("decoder", "gain"), (1, w, 1, 1), "vec"))
  out.append(("decoder.bias", ("decoder", "bias"), (1, w, 1, 1), "vec"))
  o = spec.out_channels
  out.append(
    ("decoder.out_net.out_conv.weight", ("decoder", "out_conv", "kernel"), (o, w, 1, 1), "conv")
  )
  out.append(("decoder.out_net.out_conv.bias", ("decoder", "out_conv", "bias"), (o,), "id"))
  return out


def state_dict_shapes(spec: HVAESpec) -> dict[str, tuple[int, ...]]:
  """The VDVAE state-dict key names and PyTorch shapes implied by a spec (no allocation).

  Args:
    spec: an unshared spec without time embedding.

  Returns:
    ``{key: shape}`` in block-string order.

  Examples:
    >>> from mrflax.nn import get_preset
    >>> len(state_dict_shapes(get_preset("cifar10")))
    1393
  """
  return {k: s for k, _, s, _ in _entries(spec)}


def _to_mrflax(a: np.ndarray, kind: str) -> np.ndarray:
  if kind == "conv":
    return np.transpose(a, _OIHW_TO_HWIO)
  if kind == "nchw":
    return np.transpose(a, _NCHW_TO_NHWC)
  if kind == "vec":
    return a.reshape(-1)
  return a


def _to_torch(a: np.ndarray, kind: str, shape: tuple[int, ...]) -> np.ndarray:
  if kind == "conv":
    return np.transpose(a, (3, 2, 0, 1))
  if kind == "nchw":
    return np.transpose(a, (0, 3, 1, 2))
  return a.reshape(shape)


def _set(tree: dict, path: tuple, value) -> None:
  for p in path[:-1]:
    tree = tree[p]
  if path[-1] not in tree:
    raise KeyError(path)
  tree[path[-1]] = value


def _get(tree, path: tuple):
  for p in path:
    tree = tree[p]
  return tree


def from_vdvae_state_dict(state_dict: Mapping[str, np.ndarray], spec: HVAESpec) -> HVAE:
  """Builds an :class:`~mrflax.nn.hvae.model.HVAE` from a VDVAE PyTorch state dict.

  Accepts ``*-model.th`` keys (``module.`` prefix) and ``*-model-ema.th`` keys (no prefix).
  Fails with a ``ValueError`` listing missing, unexpected or mis-shaped keys.

  Args:
    state_dict: ``{key: array}`` with PyTorch layouts (numpy arrays or anything ``np.asarray``
      accepts).
    spec: the matching spec (unshared, no time embedding).

  Returns:
    The model, with float32 parameters.

  Examples:
    >>> from mrflax.nn import get_preset
    >>> spec = get_preset("micro4")
    >>> sd = to_vdvae_state_dict(HVAE(spec, rngs=nnx.Rngs(0)))
    >>> m = from_vdvae_state_dict({"module." + k: v for k, v in sd.items()}, spec)
    >>> sorted(to_vdvae_state_dict(m)) == sorted(sd)
    True
  """
  entries = _entries(spec)
  sd = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state_dict.items()}
  want = {k for k, *_ in entries}
  missing = sorted(want - set(sd))
  unexpected = sorted(set(sd) - want)
  bad = [
    f"{k}: expected {s}, got {tuple(np.shape(sd[k]))}"
    for k, _, s, _ in entries
    if k in sd and tuple(np.shape(sd[k])) != s
  ]
  if missing or unexpected or bad:
    raise ValueError(
      "state dict does not match the spec: "
      f"missing {missing[:10]}{'...' if len(missing) > 10 else ''} ({len(missing)}), "
      f"unexpected {unexpected[:10]}{'...' if len(unexpected) > 10 else ''} "
      f"({len(unexpected)}), mis-shaped {bad[:10]} ({len(bad)})"
    )
  abstract = nnx.eval_shape(lambda: HVAE(spec, rngs=nnx.Rngs(0)))
  graphdef, params, rest = nnx.split(abstract, nnx.Param, ...)
  pure = nnx.to_pure_dict(params)
  for k, path, _, kind in entries:
    a = _to_mrflax(np.asarray(sd[k], dtype=np.float32), kind)
    expect = _get(pure, path).shape
    if a.shape != tuple(expect):
      raise ValueError(f"{k}: converted shape {a.shape} != model shape {tuple(expect)}")
    _set(pure, path, jnp.asarray(a))
  n_leaves = len(jax.tree_util.tree_leaves(pure))
  if n_leaves != len(entries):
    raise ValueError(f"model has {n_leaves} parameters, state dict {len(entries)}")
  nnx.replace_by_pure_dict(params, pure)
  return nnx.merge(graphdef, params, rest)


def to_vdvae_state_dict(model: HVAE) -> dict[str, np.ndarray]:
  """Exports an unshared :class:`~mrflax.nn.hvae.model.HVAE` as a VDVAE state dict (no prefix).

  Args:
    model: the model.

  Returns:
    ``{key: float32 numpy array}`` in PyTorch layouts.

  Examples:
    >>> from mrflax.nn import get_preset
    >>> sd = to_vdvae_state_dict(HVAE(get_preset("micro4"), rngs=nnx.Rngs(0)))
    >>> sd["encoder.in_conv.weight"].shape
    (8, 1, 3, 3)
  """
  pure = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  out = {}
  for k, path, shape, kind in _entries(model.spec):
    out[k] = np.ascontiguousarray(_to_torch(np.asarray(_get(pure, path), np.float32), kind, shape))
  return out
