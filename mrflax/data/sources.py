"""Opening datasets: presence checks with actionable errors, then TFDS random-access sources."""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from mrflax._optional import import_optional
from mrflax.data.registry import DatasetSpec, HeldOut, get_spec


class DatasetNotFoundError(FileNotFoundError):
  """A dataset is not in the data directory; the message says where we looked and the fix."""


def default_data_dir() -> str:
  """``$MRFLAX_DATA_DIR``, else ``~/tensorflow_datasets`` (the TFDS default)."""
  return os.environ.get("MRFLAX_DATA_DIR", os.path.expanduser("~/tensorflow_datasets"))


def _locations(spec: DatasetSpec, data_dir: pathlib.Path) -> list[tuple[pathlib.Path, bool]]:
  """Candidate dataset directories, with whether TFDS can read them by registered name."""
  out = [(data_dir / spec.tfds_name / spec.version, spec.registered)]
  if spec.registered:
    out.append((data_dir / spec.local_name / "1.0.0", False))
  return out


def _find(name: str, data_dir) -> tuple[pathlib.Path, bool, pathlib.Path]:
  """(dataset directory, readable by registered name, data_dir root), or the error."""
  spec = get_spec(name)
  root = pathlib.Path(data_dir if data_dir is not None else default_data_dir()).expanduser()
  candidates = _locations(spec, root)
  for path, registered in candidates:
    if (path / "dataset_info.json").exists():
      return path, registered, root
  looked = "\n".join(f"    {p}/dataset_info.json" for p, _ in candidates)
  lines = [
    f"Dataset {name!r} ({spec.tfds_name} {spec.version}) not found under {root}.",
    f"  Looked for:\n{looked}",
  ]
  if spec.offline_hint:
    lines.append("  Offline: " + spec.offline_hint.replace("DATA_DIR", str(root)))
  if spec.online_hint:
    lines.append("  " + spec.online_hint.replace("DATA_DIR", repr(str(root))))
  lines.append("  Or point --config.data.data_dir / $MRFLAX_DATA_DIR at the folder that has it.")
  raise DatasetNotFoundError("\n".join(lines))


def find_dataset(name: str, *, data_dir: str | os.PathLike | None = None) -> pathlib.Path:
  """The directory holding dataset ``name``, or :class:`DatasetNotFoundError` with the remedy."""
  return _find(name, data_dir)[0]


def tfds_source(tfds_name: str, split: str, *, data_dir: str | os.PathLike | None) -> Sequence[Any]:
  """``tfds.data_source`` for a registered TFDS dataset (no download, no TensorFlow)."""
  tfds = import_optional("tensorflow_datasets", extra="data", purpose="reading a TFDS dataset")
  return tfds.data_source(tfds_name, split=split, data_dir=data_dir, download=False)


def open_source(
  name: str, split: str, *, data_dir: str | os.PathLike | None = None
) -> Sequence[dict[str, Any]]:
  """A random-access source of ``{"image": uint8 [h, w, c], "label": int}`` examples.

  Checks that the dataset exists first (TFDS itself fails on a missing dataset with a misleading
  error about the TFRECORD format), then opens it with ``tfds.data_source`` for stock datasets or
  from its directory for datasets mrflax imported offline.

  A held-out split (``spec.heldout``, e.g. CIFAR-10's ``"vdvae_train"`` / ``"vdvae_valid"``)
  is cut from its base split by the registry's rule, applied to the examples in their original
  order (:func:`original_positions`).

  Args:
    name: a dataset of :data:`mrflax.data.DATASETS`.
    split: a split name of that dataset (slicing such as ``"train[:90%]"`` is accepted for
      stored splits).
    data_dir: TFDS data directory (default :func:`default_data_dir`).

  Raises:
    DatasetNotFoundError: the dataset is absent (the message names where we looked and the
      command that gets it).
    ValueError: unknown dataset or split.
  """
  spec = get_spec(name)
  base_split = split.split("[", 1)[0]
  if spec.heldout is not None and base_split in spec.heldout.names:
    if base_split != split:
      raise ValueError(f"held-out split {base_split!r} cannot be sliced; got {split!r}")
    base = open_source(name, spec.heldout.base, data_dir=data_dir)
    path, registered, _ = _find(name, data_dir)
    cache_key = (str(path), spec.heldout.base, len(base))
    if cache_key not in _POSITIONS:  # reading a stock split's ids takes seconds: once
      _POSITIONS[cache_key] = original_positions(base, stock=registered)
    return heldout_source(base, spec.heldout, split, positions=_POSITIONS[cache_key])
  if base_split not in spec.splits:
    raise ValueError(f"dataset {name!r} has splits {spec.all_splits}; got {split!r}")
  path, registered, root = _find(name, data_dir)
  if registered:
    return tfds_source(spec.tfds_name, split, data_dir=root)
  tfds = import_optional("tensorflow_datasets", extra="data", purpose="reading a TFDS dataset")
  return tfds.builder_from_directory(path).as_data_source(split=split)


class IndexedSource(Sequence):
  """A random-access view ``source[indices[i]]`` (a subset in a given order)."""

  def __init__(self, source: Sequence[Any], indices: np.ndarray):
    self.source = source
    self.indices = np.asarray(indices, np.int64)

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, i):
    if isinstance(i, slice):
      return [self[j] for j in range(*i.indices(len(self)))]
    return self.source[int(self.indices[i])]


_ID_NUMBER = re.compile(rb"(\d+)$")
_POSITIONS: dict[tuple[str, str, int], np.ndarray | None] = {}


def original_positions(source: Sequence[dict[str, Any]], *, stock: bool) -> np.ndarray | None:
  """Where each example of the original order sits in ``source`` (``None``: same order).

  mrflax's importers write examples in their original order (``disable_shuffling``). Stock TFDS
  datasets are stored in a hashed order; CIFAR-10's records carry an ``id`` such as
  ``b"train_00042"`` (the position in the stacked batches), from which the order is rebuilt
  (every record is read once: a few seconds for 50,000 images).

  Raises:
    ValueError: a stock dataset whose records have no numeric ``id``.
  """
  if not stock:
    return None
  n = len(source)
  numbers = np.empty(n, np.int64)
  for i in range(n):
    ex = source[i]
    ident = ex.get("id") if isinstance(ex, dict) else None
    if isinstance(ident, str):
      ident = ident.encode()
    match = _ID_NUMBER.search(ident) if isinstance(ident, bytes) else None
    if match is None:
      raise ValueError(
        "this stock TFDS dataset is stored in a hashed order and its records have no numeric "
        "'id', so the original order (and the reference split) cannot be rebuilt; import the "
        "source files with an mrflax importer instead"
      )
    numbers[i] = int(match.group(1))
  if not np.array_equal(np.sort(numbers), np.arange(n)):
    raise ValueError(f"record ids are not a permutation of 0..{n - 1}")
  positions = np.empty(n, np.int64)
  positions[numbers] = np.arange(n)
  return positions


def heldout_source(
  source: Sequence[Any], heldout: HeldOut, part: str, *, positions: np.ndarray | None = None
) -> IndexedSource:
  """One part (``heldout.train_name`` or ``heldout.valid_name``) of a held-out split.

  Args:
    source: the base split.
    heldout: the rule (:class:`mrflax.data.HeldOut`).
    part: which part.
    positions: :func:`original_positions` of ``source`` (``None``: stored in original order).

  Examples:
    >>> from mrflax.data import HeldOut
    >>> rule = HeldOut(base="train", size=2, seed=42, method="tail", rule="example")
    >>> list(heldout_source(list("abcdef"), rule, "vdvae_valid"))
    ['e', 'd']
  """
  if part not in heldout.names:
    raise ValueError(f"part must be one of {heldout.names}, got {part!r}")
  idx = heldout.indices(len(source))[part]
  return IndexedSource(source, idx if positions is None else np.asarray(positions)[idx])
