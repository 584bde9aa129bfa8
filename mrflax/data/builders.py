"""Offline importers: write TFDS ``array_record`` datasets from local files, without TensorFlow.

Three sources, one on-disk format (read back by :func:`mrflax.data.open_source`):

* IDX files (MNIST, Fashion-MNIST; the Debian package ``dataset-fashion-mnist`` installs the
  latter under ``/usr/share/datasets/fashion-mnist``): :func:`import_idx`. The dataset is written
  under its stock TFDS name and version, so readers cannot tell it from a TFDS download.
* scikit-learn's bundled 8x8 digits: :func:`import_digits`.
* in-memory uint8 arrays (e.g. a local ImageNet32 copy): :func:`import_arrays`.

Images are stored PNG-encoded (``tfds.features.Image``, encoded with Pillow), exactly as the stock
TFDS builders store them, so a stock reader decodes them.
"""

from __future__ import annotations

import gzip
import io
import os
import pathlib
import struct
from collections.abc import Mapping

import numpy as np

from mrflax.data.registry import get_spec

_IDX_DTYPES = {
  0x08: np.uint8,
  0x09: np.int8,
  0x0B: np.int16,
  0x0C: np.int32,
  0x0D: np.float32,
  0x0E: np.float64,
}
IDX_FILES = {
  "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
  "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads an IDX file (optionally gzip-compressed) into a numpy array.

  The format: two zero bytes, a dtype code, the number of dimensions ``k``, ``k`` big-endian
  uint32 sizes, then the data in C order.

  Raises:
    ValueError: the file is not a valid IDX file (the message names the file and the problem).
  """
  path = pathlib.Path(path)
  opener = gzip.open if path.suffix == ".gz" else open
  try:
    with opener(path, "rb") as f:
      data = f.read()
  except (OSError, EOFError) as err:
    raise ValueError(f"cannot read IDX file {path}: {err}") from err
  if len(data) < 4 or data[0] != 0 or data[1] != 0:
    raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4]!r})")
  code, ndim = data[2], data[3]
  if code not in _IDX_DTYPES:
    raise ValueError(f"{path}: unknown IDX dtype code {code:#x}")
  header = 4 + 4 * ndim
  shape = struct.unpack(">" + "I" * ndim, data[4:header])
  dtype = np.dtype(_IDX_DTYPES[code]).newbyteorder(">")
  expected = int(np.prod(shape)) * dtype.itemsize
  if len(data) - header != expected:
    raise ValueError(
      f"{path}: header says shape {shape} ({expected} bytes) but the file holds "
      f"{len(data) - header} bytes of data (truncated or corrupt)"
    )
  return (
    np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))
  )


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
  """Writes a uint8 array as a gzip-compressed IDX file (used by tests and tools)."""
  array = np.asarray(array, np.uint8)
  header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.tobytes())


def _png(image: np.ndarray) -> bytes:
  """PNG bytes of a uint8 [h, w, c] image (TFDS cannot encode images without TensorFlow)."""
  from PIL import Image

  buf = io.BytesIO()
  Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, format="PNG")
  return buf.getvalue()


def _find_idx(source: pathlib.Path, stem: str) -> pathlib.Path:
  for candidate in (source / f"{stem}.gz", source / stem):
    if candidate.exists():
      return candidate
  raise FileNotFoundError(
    f"IDX file {stem}(.gz) not found in {source}; expected the four files "
    f"{', '.join(f'{s}.gz' for pair in IDX_FILES.values() for s in pair)}"
  )


def _write(
  name: str,
  version: str,
  splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
  data_dir: str | os.PathLike,
  *,
  num_classes: int,
  description: str,
) -> pathlib.Path:
  """Writes ``splits`` (uint8 images [n, h, w, c], int labels [n]) as a TFDS dataset."""
  import tensorflow_datasets as tfds  # heavy import, kept local

  first = next(iter(splits.values()))[0]
  shape = tuple(int(s) for s in first.shape[1:])
  for split, (images, labels) in splits.items():
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != shape:
      raise ValueError(
        f"split {split!r}: images must be uint8 of shape [n, {shape[0]}, {shape[1]}, "
        f"{shape[2]}]; got {images.dtype} {images.shape}"
      )
    if len(labels) != len(images):
      raise ValueError(f"split {split!r}: {len(images)} images but {len(labels)} labels")

  class _ArrayBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version(version)

    def _info(self):
      return tfds.core.DatasetInfo(
        builder=self,
        description=description,
        features=tfds.features.FeaturesDict(
          {
            "image": tfds.features.Image(shape=shape),
            "label": tfds.features.ClassLabel(num_classes=num_classes),
          }
        ),
        supervised_keys=("image", "label"),
        disable_shuffling=True,
      )

    def _split_generators(self, dl_manager):
      del dl_manager
      return {split: self._generate_examples(split) for split in splits}

    def _generate_examples(self, split):
      images, labels = splits[split]
      for i in range(len(images)):
        yield i, {"image": _png(images[i]), "label": int(labels[i])}

  _ArrayBuilder.name = name
  builder = _ArrayBuilder(data_dir=os.fspath(data_dir), file_format="array_record")
  builder.download_and_prepare()  # default mode: reuse the dataset if it already exists
  return pathlib.Path(builder.data_dir)


def import_idx(
  name: str, source: str | os.PathLike, *, data_dir: str | os.PathLike, num_classes: int = 10
) -> pathlib.Path:
  """Imports a folder of four IDX files (MNIST layout) as the TFDS dataset ``name``.

  Args:
    name: ``"fashion_mnist"`` or ``"mnist"`` (written under the stock TFDS name and version).
    source: folder holding ``train-images-idx3-ubyte(.gz)`` and the three other files.
    data_dir: TFDS data directory to write into.
    num_classes: number of label classes.

  Returns:
    The dataset directory (``data_dir/name/version``).
  """
  spec = get_spec(name)
  source = pathlib.Path(source)
  if not source.is_dir():
    raise FileNotFoundError(f"IDX source folder {source} does not exist. {spec.offline_hint}")
  splits = {}
  for split, (images_stem, labels_stem) in IDX_FILES.items():
    images = read_idx(_find_idx(source, images_stem))
    labels = read_idx(_find_idx(source, labels_stem))
    if images.ndim == 3:
      images = images[..., None]
    if len(images) != len(labels):
      raise ValueError(f"{source}: {split} has {len(images)} images but {len(labels)} labels")
    splits[split] = (images.astype(np.uint8), labels.astype(np.int64))
  return _write(
    spec.tfds_name,
    spec.version,
    splits,
    data_dir,
    num_classes=num_classes,
    description=f"{name} imported offline from IDX files in {source}",
  )


def import_digits(
  *, data_dir: str | os.PathLike, test_fraction: float = 0.2, seed: int = 0
) -> pathlib.Path:
  """Imports scikit-learn's bundled 8x8 digits (1,797 images) as the dataset ``digits``.

  Pixel values 0..16 are rescaled to uint8 by ``round(v * 255 / 16)``; a fixed-seed permutation
  splits them into train and test.
  """
  try:
    from sklearn.datasets import load_digits
  except ImportError as err:
    raise ImportError("import_digits needs scikit-learn: pip install 'mrflax[digits]'") from err
  if not 0.0 < test_fraction < 1.0:
    raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
  bunch = load_digits()
  images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  labels = bunch.target.astype(np.int64)
  order = np.random.default_rng(seed).permutation(len(images))
  n_test = round(len(images) * test_fraction)
  test, train = order[:n_test], order[n_test:]
  spec = get_spec("digits")
  return _write(
    spec.tfds_name,
    spec.version,
    {"train": (images[train], labels[train]), "test": (images[test], labels[test])},
    data_dir,
    num_classes=10,
    description="scikit-learn 8x8 digits, rescaled to uint8, fixed-seed split",
  )


def import_arrays(
  name: str,
  splits: Mapping[str, np.ndarray | tuple[np.ndarray, np.ndarray]],
  *,
  data_dir: str | os.PathLike,
  num_classes: int = 1,
) -> pathlib.Path:
  """Writes in-memory uint8 images (optionally with labels) as the local copy of ``name``.

  Args:
    name: a dataset of :data:`mrflax.data.DATASETS` (e.g. ``"imagenet32"``, ``"cifar10"``).
    splits: ``{split: images}`` or ``{split: (images, labels)}``; images uint8 ``[n, h, w, c]``
      of the dataset's image shape.
    data_dir: TFDS data directory to write into.
    num_classes: number of label classes (labels default to 0).

  Returns:
    The dataset directory (``data_dir/<local name>/1.0.0``), which
    :func:`mrflax.data.open_source` finds when the stock TFDS copy is absent.
  """
  spec = get_spec(name)
  unknown = set(splits) - set(spec.splits)
  if unknown:
    raise ValueError(f"{name} has splits {spec.splits}; got unknown {sorted(unknown)}")
  prepared = {}
  for split, value in splits.items():
    images, labels = value if isinstance(value, tuple) else (value, None)
    images = np.asarray(images)
    if tuple(images.shape[1:]) != spec.image_shape:
      raise ValueError(
        f"{name} images must have shape [n, {', '.join(map(str, spec.image_shape))}]"
        f"; got {images.shape} for split {split!r}"
      )
    labels = np.zeros(len(images), np.int64) if labels is None else np.asarray(labels, np.int64)
    prepared[split] = (images, labels)
  version = spec.version if not spec.registered else "1.0.0"
  return _write(
    spec.local_name,
    version,
    prepared,
    data_dir,
    num_classes=num_classes,
    description=f"{name} imported from local arrays",
  )
