"""Data: offline TFDS importers, presence-checked sources, Grain pipelines, preprocessing.

Every dataset lives in one on-disk format, TFDS ``array_record`` under one data directory
(``$MRFLAX_DATA_DIR`` or ``~/tensorflow_datasets``), read without TensorFlow.
"""

from mrflax.data.builders import import_arrays, import_digits, import_idx, read_idx, write_idx
from mrflax.data.pipeline import array_source, eval_batches, per_process_batch, train_dataset
from mrflax.data.preprocess import (
  VDVAE_INPUT_NORMALIZATION,
  Preprocess,
  binarize,
  normalize_input,
  pad_to,
  reduce_bits,
  to_target,
)
from mrflax.data.registry import DATASETS, DatasetSpec, get_spec
from mrflax.data.sources import (
  DatasetNotFoundError,
  default_data_dir,
  find_dataset,
  open_source,
  tfds_source,
)

__all__ = [
  "DATASETS",
  "VDVAE_INPUT_NORMALIZATION",
  "DatasetNotFoundError",
  "DatasetSpec",
  "Preprocess",
  "array_source",
  "binarize",
  "default_data_dir",
  "eval_batches",
  "find_dataset",
  "get_spec",
  "import_arrays",
  "import_digits",
  "import_idx",
  "normalize_input",
  "open_source",
  "pad_to",
  "per_process_batch",
  "read_idx",
  "reduce_bits",
  "tfds_source",
  "to_target",
  "train_dataset",
  "write_idx",
]
