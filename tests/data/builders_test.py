"""Offline importers: IDX files, digits and arrays round-trip through TFDS array_record."""

import gzip

import numpy as np
import pytest

from mrflax import data


def _write_idx_folder(folder, *, n_train=12, n_test=5, seed=0):
  rng = np.random.default_rng(seed)
  arrays = {}
  for split, n in (("train", n_train), ("t10k", n_test)):
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    data.write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
    data.write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    arrays[split] = (images, labels)
  return arrays


def test_read_idx_round_trip_and_corruption(tmp_path):
  a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
  data.write_idx(tmp_path / "a.gz", a)
  np.testing.assert_array_equal(data.read_idx(tmp_path / "a.gz"), a)
  raw = gzip.decompress((tmp_path / "a.gz").read_bytes())
  (tmp_path / "short").write_bytes(raw[:-3])
  with pytest.raises(ValueError, match=r"short: header says shape \(2, 3, 4\).*truncated"):
    data.read_idx(tmp_path / "short")
  (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01" + raw[4:])
  with pytest.raises(ValueError, match="not an IDX file"):
    data.read_idx(tmp_path / "bad")


def test_import_idx_writes_stock_layout_and_reads_back(tmp_path):
  src = tmp_path / "src"
  src.mkdir()
  arrays = _write_idx_folder(src)
  out = data.import_idx("fashion_mnist", src, data_dir=tmp_path / "tfds")
  assert out == tmp_path / "tfds" / "fashion_mnist" / "3.0.1"
  assert (out / "dataset_info.json").exists()
  for split, prefix in (("train", "train"), ("test", "t10k")):
    source = data.open_source("fashion_mnist", split, data_dir=tmp_path / "tfds")
    images, labels = arrays[prefix]
    assert len(source) == len(images)
    for i in (0, len(images) - 1):  # disable_shuffling: stored in order
      np.testing.assert_array_equal(source[i]["image"][..., 0], images[i])
      assert int(source[i]["label"]) == int(labels[i])


def test_import_idx_missing_files(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    data.import_idx("fashion_mnist", tmp_path / "nowhere", data_dir=tmp_path)
  (tmp_path / "src").mkdir()
  with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte\(\.gz\) not found"):
    data.import_idx("fashion_mnist", tmp_path / "src", data_dir=tmp_path)


def test_import_digits(tmp_path):
  out = data.import_digits(data_dir=tmp_path)
  assert out.name == "1.0.0"
  train = data.open_source("digits", "train", data_dir=tmp_path)
  test = data.open_source("digits", "test", data_dir=tmp_path)
  assert len(train) + len(test) == 1797
  assert len(test) == round(1797 * 0.2)
  image = train[0]["image"]
  assert image.shape == (8, 8, 1) and image.dtype == np.uint8
  assert set(np.unique(np.concatenate([train[i]["image"].ravel() for i in range(50)]))) <= {
    round(v * 255 / 16) for v in range(17)
  }


def test_import_arrays_and_fallback_location(tmp_path):
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
  out = data.import_arrays(
    "imagenet32", {"train": images, "validation": images[:2]}, data_dir=tmp_path
  )
  assert out == tmp_path / "mrflax_imagenet32" / "1.0.0"
  src = data.open_source("imagenet32", "validation", data_dir=tmp_path)
  np.testing.assert_array_equal(src[1]["image"], images[1])
  with pytest.raises(ValueError, match=r"images must have shape \[n, 32, 32, 3\]"):
    data.import_arrays("imagenet32", {"train": images[:, :16]}, data_dir=tmp_path)
  with pytest.raises(ValueError, match="unknown"):
    data.import_arrays("imagenet32", {"test": images}, data_dir=tmp_path)
