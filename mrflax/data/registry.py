"""The datasets mrflax knows: names, versions, shapes, splits, bit depths and how to get them."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """Static facts about one dataset as stored on disk (TFDS ``array_record`` layout).

  Attributes:
    name: the mrflax name (``"fashion_mnist"``, ``"digits"``, ...).
    tfds_name: the TFDS directory name (``"downsampled_imagenet/32x32"`` for ImageNet32).
    version: the TFDS version directory.
    image_shape: ``(h, w, c)`` of the stored uint8 images.
    splits: the split names (train first, then the evaluation split).
    bits: bit depth of the stored pixel values.
    registered: whether stock TFDS has a builder of this name (read with ``tfds.data_source``);
      otherwise the dataset is read from its directory.
    offline_hint: how to create it without network (empty if there is no offline route).
    online_hint: how to create it on a networked machine.
  """

  name: str
  tfds_name: str
  version: str
  image_shape: tuple[int, int, int]
  splits: tuple[str, ...]
  bits: int = 8
  registered: bool = True
  offline_hint: str = ""
  online_hint: str = ""

  @property
  def local_name(self) -> str:
    """Directory name used by the offline array importer (``import_arrays``)."""
    return self.tfds_name if not self.registered else f"mrflax_{self.name}"

  @property
  def train_split(self) -> str:
    return self.splits[0]

  @property
  def eval_split(self) -> str:
    return self.splits[-1]


_TFDS_ONLINE = (
  "Networked machine with TensorFlow: "
  "tfds.builder('{tfds}', data_dir=DATA_DIR, file_format='array_record')"
  ".download_and_prepare()"
)

DATASETS: dict[str, DatasetSpec] = {
  "digits": DatasetSpec(
    name="digits",
    tfds_name="mrflax_digits",
    version="1.0.0",
    image_shape=(8, 8, 1),
    splits=("train", "test"),
    registered=False,
    offline_hint=(
      "python -m experiments.import_data digits --data_dir DATA_DIR   "
      "(scikit-learn's bundled 8x8 digits: pip install scikit-learn)"
    ),
  ),
  "fashion_mnist": DatasetSpec(
    name="fashion_mnist",
    tfds_name="fashion_mnist",
    version="3.0.1",
    image_shape=(28, 28, 1),
    splits=("train", "test"),
    offline_hint=(
      "apt-get install dataset-fashion-mnist, then\n"
      "    python -m experiments.import_data fashion_mnist "
      "--source /usr/share/datasets/fashion-mnist --data_dir DATA_DIR"
    ),
    online_hint=_TFDS_ONLINE.format(tfds="fashion_mnist"),
  ),
  "mnist": DatasetSpec(
    name="mnist",
    tfds_name="mnist",
    version="3.0.1",
    image_shape=(28, 28, 1),
    splits=("train", "test"),
    offline_hint=(
      "copy the four MNIST IDX files (train-images-idx3-ubyte.gz, ...) into a folder SRC, then\n"
      "    python -m experiments.import_data mnist --source SRC --data_dir DATA_DIR"
    ),
    online_hint=_TFDS_ONLINE.format(tfds="mnist"),
  ),
  "cifar10": DatasetSpec(
    name="cifar10",
    tfds_name="cifar10",
    version="3.0.2",
    image_shape=(32, 32, 3),
    splits=("train", "test"),
    online_hint=_TFDS_ONLINE.format(tfds="cifar10"),
  ),
  "imagenet32": DatasetSpec(
    name="imagenet32",
    tfds_name="downsampled_imagenet/32x32",
    version="2.0.0",
    image_shape=(32, 32, 3),
    splits=("train", "validation"),
    offline_hint=(
      "the TFDS download URLs of downsampled_imagenet are reported dead "
      "(tensorflow/datasets#4662):\n    load a local copy as uint8 arrays [n, 32, 32, 3] and "
      "write it with mrflax.data.import_arrays('imagenet32', "
      "{'train': ..., 'validation': ...}, data_dir=DATA_DIR)"
    ),
    online_hint=_TFDS_ONLINE.format(tfds="downsampled_imagenet/32x32"),
  ),
}


def get_spec(name: str) -> DatasetSpec:
  """The :class:`DatasetSpec` of ``name``; a clear ``ValueError`` for unknown names."""
  try:
    return DATASETS[name]
  except KeyError:
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}") from None
