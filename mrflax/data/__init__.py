"""Data: offline TFDS importers, presence-checked sources, Grain pipelines, preprocessing.

Every dataset lives in one on-disk format, TFDS ``array_record`` under one data directory
(``$MRFLAX_DATA_DIR`` or ``~/tensorflow_datasets``), read without TensorFlow.
"""

from mrflax.data.builders import (
  IMAGENET_SHA256,
  dataset_metadata,
  digits_arrays,
  idx_arrays,
  import_arrays,
  import_digits,
  import_idx,
  import_imagenet32,
  read_idx,
  sha256_file,
  write_idx,
)
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
from mrflax.data.registry import (
  DATASETS,
  DatasetSpec,
  HeldOut,
  get_spec,
  shuffle_split,
  tail_split,
)
from mrflax.data.sources import (
  DatasetNotFoundError,
  IndexedSource,
  default_data_dir,
  find_dataset,
  heldout_source,
  open_source,
  original_positions,
  tfds_source,
)

__all__ = [
  "DATASETS",
  "IMAGENET_SHA256",
  "VDVAE_INPUT_NORMALIZATION",
  "DatasetNotFoundError",
  "DatasetSpec",
  "HeldOut",
  "IndexedSource",
  "Preprocess",
  "array_source",
  "binarize",
  "dataset_metadata",
  "default_data_dir",
  "digits_arrays",
  "eval_batches",
  "find_dataset",
  "get_spec",
  "heldout_source",
  "idx_arrays",
  "import_arrays",
  "import_digits",
  "import_idx",
  "import_imagenet32",
  "normalize_input",
  "open_source",
  "original_positions",
  "pad_to",
  "per_process_batch",
  "read_idx",
  "reduce_bits",
  "sha256_file",
  "shuffle_split",
  "tail_split",
  "tfds_source",
  "to_target",
  "train_dataset",
  "write_idx",
]
