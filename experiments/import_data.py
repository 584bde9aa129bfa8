"""Imports a dataset into a TFDS data directory offline (no network, no TensorFlow).

Usage:
  python -m experiments.import_data fashion_mnist --source /usr/share/datasets/fashion-mnist \\
      --data_dir ~/tensorflow_datasets
  python -m experiments.import_data mnist --source DIR_WITH_IDX_FILES --data_dir DATA_DIR
  python -m experiments.import_data digits --data_dir DATA_DIR
  python -m experiments.import_data imagenet32 --source DIR_WITH_TARS --data_dir DATA_DIR \
      [--variant=van_den_oord]

Fashion-MNIST's IDX files come from the Debian package ``dataset-fashion-mnist`` (``make data``);
the digits ship inside scikit-learn; ImageNet32 is imported from ``train_32x32.tar`` and
``valid_32x32.tar``, whose SHA-256 digests must be the van den Oord files' unless ``--variant``
names another variant. The result is read by every experiment through
``mrflax.data.open_source``.
"""

from __future__ import annotations

import time

from absl import app, flags

from mrflax import data

_SOURCE = flags.DEFINE_string(
  "source", None, "Folder with the four IDX files (IDX datasets) or the two ImageNet32 tars."
)
_VARIANT = flags.DEFINE_string(
  "variant", "van_den_oord", "ImageNet32 variant; only van_den_oord's checksums are checked."
)
_DATA_DIR = flags.DEFINE_string(
  "data_dir", None, "TFDS data directory (default: $MRFLAX_DATA_DIR or ~/tensorflow_datasets)."
)
_IDX = ("fashion_mnist", "mnist")
_ALL = (*_IDX, "digits", "imagenet32")


def main(argv: list[str]) -> None:
  if len(argv) != 2:
    raise app.UsageError(f"name one dataset: {', '.join(_ALL)}")
  name = argv[1]
  data_dir = _DATA_DIR.value or data.default_data_dir()
  t0 = time.perf_counter()
  if name in _IDX:
    source = _SOURCE.value or (
      "/usr/share/datasets/fashion-mnist" if name == "fashion_mnist" else None
    )
    if source is None:
      raise app.UsageError(f"--source is required for {name}")
    out = data.import_idx(name, source, data_dir=data_dir)
  elif name == "digits":
    out = data.import_digits(data_dir=data_dir)
  elif name == "imagenet32":
    if _SOURCE.value is None:
      raise app.UsageError(
        "--source (the folder with train_32x32.tar, valid_32x32.tar) is required"
      )
    out = data.import_imagenet32(_SOURCE.value, data_dir=data_dir, variant=_VARIANT.value)
  else:
    raise app.UsageError(
      f"no offline importer for {name!r}; choose from "
      f"{', '.join(_ALL)} (or call mrflax.data.import_arrays)"
    )
  sizes = {
    split: len(data.open_source(name, split, data_dir=data_dir))
    for split in data.get_spec(name).splits
  }
  print(f"imported {name} into {out} in {time.perf_counter() - t0:.1f} s: {sizes}")


if __name__ == "__main__":
  app.run(main)
