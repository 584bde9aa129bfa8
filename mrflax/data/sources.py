"""Opening datasets: presence checks with actionable errors, then TFDS random-access sources."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from typing import Any

from mrflax.data.registry import DatasetSpec, get_spec


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
  import tensorflow_datasets as tfds

  return tfds.data_source(tfds_name, split=split, data_dir=data_dir, download=False)


def open_source(
  name: str, split: str, *, data_dir: str | os.PathLike | None = None
) -> Sequence[dict[str, Any]]:
  """A random-access source of ``{"image": uint8 [h, w, c], "label": int}`` examples.

  Checks that the dataset exists first (TFDS itself fails on a missing dataset with a misleading
  error about the TFRECORD format), then opens it with ``tfds.data_source`` for stock datasets or
  from its directory for datasets mrflax imported offline.

  Args:
    name: a dataset of :data:`mrflax.data.DATASETS`.
    split: a split name of that dataset (slicing such as ``"train[:90%]"`` is accepted).
    data_dir: TFDS data directory (default :func:`default_data_dir`).

  Raises:
    DatasetNotFoundError: the dataset is absent (the message names where we looked and the
      command that gets it).
    ValueError: unknown dataset or split.
  """
  spec = get_spec(name)
  base_split = split.split("[", 1)[0]
  if base_split not in spec.splits:
    raise ValueError(f"dataset {name!r} has splits {spec.splits}; got {split!r}")
  path, registered, root = _find(name, data_dir)
  if registered:
    return tfds_source(spec.tfds_name, split, data_dir=root)
  import tensorflow_datasets as tfds

  return tfds.builder_from_directory(path).as_data_source(split=split)
