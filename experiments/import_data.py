"""Imports a dataset into a TFDS data directory offline (no network, no TensorFlow).

Usage:
  python -m experiments.import_data fashion_mnist --source /usr/share/datasets/fashion-mnist \\
      --data_dir ~/tensorflow_datasets
  python -m experiments.import_data mnist --source DIR_WITH_IDX_FILES --data_dir DATA_DIR
  python -m experiments.import_data digits --data_dir DATA_DIR

Fashion-MNIST's IDX files come from the Debian package ``dataset-fashion-mnist`` (``make data``);
the digits ship inside scikit-learn. The result is read by every experiment through
``mrflax.data.open_source``.
"""

from __future__ import annotations

import time

from absl import app, flags

from mrflax import data

_SOURCE = flags.DEFINE_string("source", None, "Folder with the four IDX files (IDX datasets).")
_DATA_DIR = flags.DEFINE_string(
  "data_dir", None, "TFDS data directory (default: $MRFLAX_DATA_DIR or ~/tensorflow_datasets)."
)
_IDX = ("fashion_mnist", "mnist")


def main(argv: list[str]) -> None:
  if len(argv) != 2:
    raise app.UsageError(f"name one dataset: {', '.join((*_IDX, 'digits'))}")
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
  else:
    raise app.UsageError(
      f"no offline importer for {name!r}; choose from "
      f"{', '.join((*_IDX, 'digits'))} (or call mrflax.data.import_arrays)"
    )
  sizes = {
    split: len(data.open_source(name, split, data_dir=data_dir))
    for split in data.get_spec(name).splits
  }
  print(f"imported {name} into {out} in {time.perf_counter() - t0:.1f} s: {sizes}")


if __name__ == "__main__":
  app.run(main)
