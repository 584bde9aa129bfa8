"""The datasets mrflax knows: names, versions, shapes, splits, bit depths and how to get them."""

from __future__ import annotations

import dataclasses

import numpy as np


def shuffle_split(n: int, *, test_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  r"""scikit-learn's ``train_test_split(range(n), test_size=test_size, random_state=seed)``.

  With an integer ``test_size`` and seed, scikit-learn's ``ShuffleSplit`` draws
  :math:`\pi` = ``np.random.RandomState(seed).permutation(n)`` and returns
  ``train = pi[test_size:]``, ``test = pi[:test_size]`` (in permutation order); this is the same
  computation with numpy alone (checked against scikit-learn in the tests).

  Returns:
    ``(train_indices, test_indices)``.

  Examples:
    >>> train, test = shuffle_split(6, test_size=2, seed=0)
    >>> test.tolist(), train.tolist()
    ([5, 2], [1, 3, 0, 4])
  """
  if not 0 < test_size < n:
    raise ValueError(f"test_size must be in 1..{n - 1} for {n} examples, got {test_size}")
  perm = np.random.RandomState(seed).permutation(n)
  return perm[test_size:], perm[:test_size]


def tail_split(n: int, *, holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  r"""VDVAE's ImageNet split: ``np.random.seed(seed)``, a permutation, the last ``holdout`` out.

  Returns:
    ``(train_indices, holdout_indices)`` = ``(pi[:-holdout], pi[-holdout:])`` with
    :math:`\pi` = ``np.random.RandomState(seed).permutation(n)``.

  Examples:
    >>> train, held = tail_split(6, holdout=2, seed=42)
    >>> train.tolist(), held.tolist()
    ([0, 1, 5, 2], [4, 3])
  """
  if not 0 < holdout < n:
    raise ValueError(f"holdout must be in 1..{n - 1} for {n} examples, got {holdout}")
  perm = np.random.RandomState(seed).permutation(n)
  return perm[:-holdout], perm[-holdout:]


@dataclasses.dataclass(frozen=True)
class HeldOut:
  """A validation set cut, at read time, from a stored split by a fixed rule (VDVAE's splits).

  The rule applies to the examples in their *original* order (CIFAR-10: the five training
  batches stacked in order; ImageNet32: sorted file names), which the reader recovers from the
  stock TFDS ``id`` feature or from the order an mrflax importer wrote.

  Attributes:
    base: the stored split it is cut from.
    size: examples held out.
    seed: the permutation seed.
    method: ``"sklearn"`` (:func:`shuffle_split`: the first ``size`` of the permutation) or
      ``"tail"`` (:func:`tail_split`: the last ``size``).
    train_name, valid_name: the names of the two parts.
    rule: the rule in words (recorded with every result).
  """

  base: str
  size: int
  seed: int
  method: str
  rule: str
  train_name: str = "vdvae_train"
  valid_name: str = "vdvae_valid"

  def __post_init__(self):
    if self.method not in ("sklearn", "tail"):
      raise ValueError(f"method must be 'sklearn' or 'tail', got {self.method!r}")

  @property
  def names(self) -> tuple[str, str]:
    return (self.train_name, self.valid_name)

  def indices(self, n: int) -> dict[str, np.ndarray]:
    """``{train_name: indices, valid_name: indices}`` into the ``n`` base examples."""
    if self.method == "sklearn":
      train, valid = shuffle_split(n, test_size=self.size, seed=self.seed)
    else:
      train, valid = tail_split(n, holdout=self.size, seed=self.seed)
    return {self.train_name: train, self.valid_name: valid}


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
    heldout: a validation set cut from the training split at read time (:class:`HeldOut`).
    variant: which variant of the data (recorded with results), e.g. ImageNet32's
      ``"van_den_oord"``.
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
  heldout: HeldOut | None = None
  variant: str = ""

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

  @property
  def valid_split(self) -> str:
    """The split for model selection: the held-out one if defined, else the evaluation split."""
    return self.heldout.valid_name if self.heldout is not None else self.eval_split

  @property
  def all_splits(self) -> tuple[str, ...]:
    """Stored splits, then the held-out split names."""
    return self.splits + (self.heldout.names if self.heldout is not None else ())


_TFDS_ONLINE = (
  "Networked machine with TensorFlow: "
  "tfds.builder('{tfds}', data_dir=DATA_DIR, file_format='array_record')"
  ".download_and_prepare()"
)

#: Every dataset mrflax knows, by name: its :class:`DatasetSpec` (TFDS name and version, shape,
#: splits, bit depth, held-out split and how to obtain it offline).
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
    offline_hint=(
      "load the five training batches stacked in order and the test batch as uint8 arrays "
      "[n, 32, 32, 3], then\n    mrflax.data.import_arrays('cifar10', {'train': ..., "
      "'test': ...}, data_dir=DATA_DIR)"
    ),
    online_hint=_TFDS_ONLINE.format(tfds="cifar10"),
    heldout=HeldOut(
      base="train",
      size=5000,
      seed=11172018,
      method="sklearn",
      rule=(
        "VDVAE: the five training batches stacked in order, then sklearn "
        "train_test_split(test_size=5000, random_state=11172018): 45,000 train / 5,000 "
        "validation; test = the official 10,000"
      ),
    ),
  ),
  "imagenet32": DatasetSpec(
    name="imagenet32",
    tfds_name="downsampled_imagenet/32x32",
    version="2.0.0",
    image_shape=(32, 32, 3),
    splits=("train", "validation"),
    offline_hint=(
      "the TFDS download URLs of downsampled_imagenet are reported dead "
      "(tensorflow/datasets#4662):\n    put train_32x32.tar and valid_32x32.tar (van den Oord "
      "variant, SHA-256 checked) in a folder SRC, then\n"
      "    python -m experiments.import_data imagenet32 --source SRC --data_dir DATA_DIR"
    ),
    online_hint=_TFDS_ONLINE.format(tfds="downsampled_imagenet/32x32"),
    heldout=HeldOut(
      base="train",
      size=5000,
      seed=42,
      method="tail",
      rule=(
        "VDVAE: np.random.seed(42) permutation of the training images in sorted file-name "
        "order [mrflax: sorted; the reference used unsorted glob order], last 5,000 -> "
        "validation; test = the official validation tar"
      ),
    ),
    variant="van_den_oord",
  ),
}


def get_spec(name: str) -> DatasetSpec:
  """The :class:`DatasetSpec` of ``name``; a clear ``ValueError`` for unknown names."""
  try:
    return DATASETS[name]
  except KeyError:
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}") from None
