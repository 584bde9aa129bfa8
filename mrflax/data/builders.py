"""Offline importers: write TFDS ``array_record`` datasets from local files, without TensorFlow.

Three sources, one on-disk format (read back by :func:`mrflax.data.open_source`):

* IDX files (MNIST, Fashion-MNIST; the Debian package ``dataset-fashion-mnist`` installs the
  latter under ``/usr/share/datasets/fashion-mnist``): :func:`import_idx` (the arrays:
  :func:`idx_arrays`). The dataset is written
  under its stock TFDS name and version, so readers cannot tell it from a TFDS download.
* scikit-learn's bundled 8x8 digits: :func:`import_digits` (the arrays and their split:
  :func:`digits_arrays`).
* in-memory uint8 arrays (e.g. a local CIFAR-10 copy): :func:`import_arrays`.
* the van den Oord ImageNet 32x32 tar files, SHA-256 checked: :func:`import_imagenet32`.

Images are stored PNG-encoded (``tfds.features.Image``, encoded with Pillow), exactly as the stock
TFDS builders store them, so a stock reader decodes them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pathlib
import struct
import tarfile
from collections.abc import Callable, Iterator, Mapping

import numpy as np

from mrflax._optional import import_optional
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


def _find_idx(source: pathlib.Path, stem: str, hint: str = "") -> pathlib.Path:
  for candidate in (source / f"{stem}.gz", source / stem):
    if candidate.exists():
      return candidate
  raise FileNotFoundError(
    f"IDX file {stem}(.gz) not found in {source}; expected the four files "
    f"{', '.join(f'{s}.gz' for pair in IDX_FILES.values() for s in pair)}"
    + (f". {hint}" if hint else "")
  )


def idx_arrays(
  source: str | os.PathLike, *, name: str = "fashion_mnist"
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """The train and test splits of a folder of four IDX files (MNIST layout), in file order.

  The one IDX-reading path: :func:`import_idx` writes what this returns, experiments that read
  the files directly (``experiments/unet_haar``) call it too.

  Args:
    source: folder holding ``train-images-idx3-ubyte(.gz)`` and the three other files (the
      Debian package ``dataset-fashion-mnist`` installs Fashion-MNIST's in
      ``/usr/share/datasets/fashion-mnist``).
    name: the dataset (``"fashion_mnist"`` or ``"mnist"``); its registry entry supplies the hint
      of a missing-files error.

  Returns:
    ``{"train": (images, labels), "test": (images, labels)}``: uint8 images ``[n, h, w, 1]``
    (a channel axis is added to 3-D files) and int64 labels ``[n]``.

  Raises:
    FileNotFoundError: the folder or a file is missing (the message names the path and how to
      get the files).
    ValueError: a file is not a valid IDX file, or images and labels differ in number.
  """
  hint = get_spec(name).offline_hint
  source = pathlib.Path(source)
  if not source.is_dir():
    raise FileNotFoundError(f"IDX source folder {source} does not exist. {hint}")
  splits = {}
  for split, (images_stem, labels_stem) in IDX_FILES.items():
    images = read_idx(_find_idx(source, images_stem, hint))
    labels = read_idx(_find_idx(source, labels_stem, hint))
    if images.ndim == 3:
      images = images[..., None]
    if len(images) != len(labels):
      raise ValueError(f"{source}: {split} has {len(images)} images but {len(labels)} labels")
    splits[split] = (images.astype(np.uint8), labels.astype(np.int64))
  return splits


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

  def examples(split):
    images, labels = splits[split]
    return ((_png(images[i]), int(labels[i])) for i in range(len(images)))

  return _build(
    name,
    version,
    {split: (lambda split=split: examples(split)) for split in splits},
    data_dir,
    shape=shape,
    num_classes=num_classes,
    description=description,
  )


def _build(
  name: str,
  version: str,
  splits: Mapping[str, Callable[[], Iterator[tuple[bytes, int]]]],
  data_dir: str | os.PathLike,
  *,
  shape: tuple[int, ...],
  num_classes: int,
  description: str,
  metadata: dict | None = None,
) -> pathlib.Path:
  """Writes streams of (PNG bytes, label) as a TFDS dataset, in the order given."""
  # heavy import, kept local
  tfds = import_optional("tensorflow_datasets", extra="data", purpose="writing a TFDS dataset")

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
        metadata=tfds.core.MetadataDict(metadata) if metadata else None,
      )

    def _split_generators(self, dl_manager):
      del dl_manager
      return {split: self._generate_examples(split) for split in splits}

    def _generate_examples(self, split):
      for i, (png, label) in enumerate(splits[split]()):
        yield i, {"image": png, "label": label}

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
  splits = idx_arrays(source, name=name)
  return _write(
    spec.tfds_name,
    spec.version,
    splits,
    data_dir,
    num_classes=num_classes,
    description=f"{name} imported offline from IDX files in {source}",
  )


def digits_arrays(
  *, test_fraction: float = 0.2, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """scikit-learn's bundled 8x8 digits (1,797 images), split into train and test.

  The one implementation of the digits split (:func:`import_digits` stores exactly this).
  Pixel values 0..16 are rescaled to uint8 by ``round(v * 255 / 16)``. With
  ``perm = np.random.default_rng(seed).permutation(1797)`` and
  ``n_test = round(1797 * test_fraction)``, test is ``perm[:n_test]`` and train
  ``perm[n_test:]``, each in permutation order. (Not :func:`shuffle_split`, which draws its
  permutation with the legacy ``RandomState``: a different split.)

  Returns:
    ``{"train": (images, labels), "test": (images, labels)}``: uint8 images ``[n, 8, 8, 1]``
    and int64 labels ``[n]`` (defaults: 1,438 train, 359 test).

  Examples:
    >>> splits = digits_arrays()
    >>> {k: v[0].shape for k, v in splits.items()}
    {'train': (1438, 8, 8, 1), 'test': (359, 8, 8, 1)}
  """
  try:
    from sklearn.datasets import load_digits
  except ImportError as err:
    raise ImportError("the digits need scikit-learn: pip install 'mrflax[digits]'") from err
  if not 0.0 < test_fraction < 1.0:
    raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
  bunch = load_digits()
  images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  labels = bunch.target.astype(np.int64)
  order = np.random.default_rng(seed).permutation(len(images))
  n_test = round(len(images) * test_fraction)
  test, train = order[:n_test], order[n_test:]
  return {"train": (images[train], labels[train]), "test": (images[test], labels[test])}


def import_digits(
  *, data_dir: str | os.PathLike, test_fraction: float = 0.2, seed: int = 0
) -> pathlib.Path:
  """Imports scikit-learn's bundled 8x8 digits as the dataset ``digits``.

  The split and the uint8 rescaling are :func:`digits_arrays`'s.
  """
  spec = get_spec("digits")
  return _write(
    spec.tfds_name,
    spec.version,
    digits_arrays(test_fraction=test_fraction, seed=seed),
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


# ------------------------------------------------------------------------------------ ImageNet32
#: SHA-256 of the van den Oord downsampled-ImageNet tar files, as recorded by TFDS's
#: ``downsampled_imagenet`` builder (VDVAE_REFERENCE.md §10).
IMAGENET_SHA256 = {
  "train_32x32.tar": "244a323d48f8d72f65ad8b54658c01fed68d2d7bdc77ccb43da58c11e94224e5",
  "valid_32x32.tar": "862e559462b24cf736212a19f6b0d47b55c2dc8ebdaa95ccecfe71260124c8f7",
  "train_64x64.tar": "e2a2c1947a748d0d256e98e6d82800d855441dc9e4de2e71a773f1324c4524d7",
  "valid_64x64.tar": "eeac03ec4f585baf871d2b4cb9c974bfe345e74878a74e5820fe6eb1041629cd",
}
VAN_DEN_OORD = "van_den_oord"
IMAGENET32_FILES = {"train": "train_32x32.tar", "validation": "valid_32x32.tar"}


def sha256_file(path: str | os.PathLike, *, block: int = 1 << 22) -> str:
  """The SHA-256 hex digest of a file, read in blocks.

  Examples:
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "abc.txt"
    >>> _ = path.write_bytes(b"abc")
    >>> sha256_file(path)[:16]
    'ba7816bf8f01cfea'
  """
  h = hashlib.sha256()
  with open(path, "rb") as f:
    while chunk := f.read(block):
      h.update(chunk)
  return h.hexdigest()


def _tar_images(path: pathlib.Path, *, shape: tuple[int, int, int]) -> Iterator[tuple[bytes, int]]:
  """The PNG images of a tar file in sorted member-name order, checked against ``shape``."""
  from PIL import Image

  with tarfile.open(path) as tar:
    members = sorted(
      (m for m in tar.getmembers() if m.isfile() and m.name.lower().endswith(".png")),
      key=lambda m: m.name,
    )
    if not members:
      raise ValueError(f"{path} holds no .png files")
    for m in members:
      raw = tar.extractfile(m).read()
      with Image.open(io.BytesIO(raw)) as im:
        if im.mode != "RGB":
          im = im.convert("RGB")
          raw = None
        if im.size != (shape[1], shape[0]):
          raise ValueError(f"{path}:{m.name} is {im.size[0]}x{im.size[1]}, expected {shape[:2]}")
        png = raw if raw is not None else _png(np.asarray(im))
      yield png, 0


def import_imagenet32(
  source: str | os.PathLike, *, data_dir: str | os.PathLike, variant: str = VAN_DEN_OORD
) -> pathlib.Path:
  """Imports the downsampled-ImageNet 32x32 tar files as the local dataset ``imagenet32``.

  ``source`` holds ``train_32x32.tar`` and ``valid_32x32.tar`` (van den Oord et al.'s variant,
  used by VDVAE). Their SHA-256 digests are checked against :data:`IMAGENET_SHA256` and other
  files are refused, unless ``variant`` names a different variant (then nothing is checked and
  the variant is recorded). Images are written in sorted file-name order (the reference used
  unsorted ``glob`` order, which is not portable); VDVAE's held-out split (seed-42 permutation,
  last 5,000 -> validation) is then the registry's ``vdvae_train`` / ``vdvae_valid``. The
  variant, the file order and the digests are stored in the dataset's ``metadata.json``
  (:func:`dataset_metadata`).

  Args:
    source: folder with the two tar files.
    data_dir: TFDS data directory to write into.
    variant: ``"van_den_oord"`` (checked) or the name of another variant (not checked).

  Returns:
    The dataset directory (``data_dir/mrflax_imagenet32/1.0.0``).

  Raises:
    FileNotFoundError: a tar file is missing.
    ValueError: a checksum does not match (the message says how to import another variant).
  """
  spec = get_spec("imagenet32")
  source = pathlib.Path(source)
  paths = {split: source / name for split, name in IMAGENET32_FILES.items()}
  for path in paths.values():
    if not path.is_file():
      raise FileNotFoundError(
        f"{path} not found; expected {' and '.join(IMAGENET32_FILES.values())} in {source}"
      )
  digests = {path.name: sha256_file(path) for path in paths.values()}
  if variant == VAN_DEN_OORD:
    for file, digest in digests.items():
      if digest != IMAGENET_SHA256[file]:
        raise ValueError(
          f"{source / file} has SHA-256 {digest}, not the van den Oord file's "
          f"{IMAGENET_SHA256[file]}: it is another variant (e.g. the box-downsampled one) or a "
          "damaged copy, and its NLLs are not comparable with VDVAE's. To import it anyway, "
          "name its variant: import_imagenet32(..., variant='NAME')"
        )
  metadata = {
    "variant": variant,
    "file_order": "sorted by tar member name",
    "sha256": digests,
    "sha256_checked": variant == VAN_DEN_OORD,
  }
  return _build(
    spec.local_name,
    "1.0.0",
    {
      split: (lambda path=path: _tar_images(path, shape=spec.image_shape))
      for split, path in paths.items()
    },
    data_dir,
    shape=spec.image_shape,
    num_classes=1,
    description=f"downsampled ImageNet 32x32 ({variant}) from {source}, {json.dumps(metadata)}",
    metadata=metadata,
  )


def dataset_metadata(path: str | os.PathLike) -> dict:
  """The ``metadata.json`` an importer stored in a dataset directory (``{}`` if none)."""
  f = pathlib.Path(path) / "metadata.json"
  return json.loads(f.read_text()) if f.is_file() else {}
