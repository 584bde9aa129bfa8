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


def _digest(images, labels):
  import hashlib

  return hashlib.sha256(
    np.asarray(images, np.uint8).tobytes() + np.asarray(labels, np.int64).tobytes()
  ).hexdigest()


#: SHA-256 of (uint8 images, int64 labels) of each split that ``import_digits`` stored before it
#: used ``digits_arrays`` (computed from the importer's read-back output at commit fbe411f).
DIGITS_DIGESTS = {
  "train": "89e1244e8acf3069f04baa37c73c8a68d6ba9a00da96b4819a797d5313cc3fb6",
  "test": "5867a4f3129786e96056d61adb451d946ca37150caf95cf4e1c910ee49e0dfdf",
}


def test_digits_arrays_is_the_recorded_split():
  from sklearn.datasets import load_digits

  splits = data.digits_arrays()
  assert {k: _digest(*v) for k, v in splits.items()} == DIGITS_DIGESTS
  (train, train_labels), (test, test_labels) = splits["train"], splits["test"]
  assert train.shape == (1438, 8, 8, 1) and test.shape == (359, 8, 8, 1)
  assert train.dtype == np.uint8 and train_labels.dtype == np.int64
  # the rule: round(v * 255 / 16), default_rng(seed) permutation, the first round(n * f) = test
  bunch = load_digits()
  order = np.random.default_rng(0).permutation(1797)
  np.testing.assert_array_equal(test[..., 0], np.round(bunch.images[order[:359]] * 255 / 16))
  np.testing.assert_array_equal(train_labels, bunch.target[order[359:]])
  np.testing.assert_array_equal(test_labels, bunch.target[order[:359]])
  other = data.digits_arrays(seed=1, test_fraction=0.5)
  assert len(other["test"][0]) == round(1797 * 0.5) and len(other["train"][0]) == 899
  assert _digest(*other["test"]) != _digest(*splits["test"])
  with pytest.raises(ValueError, match=r"test_fraction must be in \(0, 1\)"):
    data.digits_arrays(test_fraction=1.0)


def test_idx_arrays_reads_both_splits_in_file_order(tmp_path):
  arrays = _write_idx_folder(tmp_path)
  splits = data.idx_arrays(tmp_path)
  for split, prefix in (("train", "train"), ("test", "t10k")):
    images, labels = splits[split]
    assert images.dtype == np.uint8 and labels.dtype == np.int64
    np.testing.assert_array_equal(images[..., 0], arrays[prefix][0])
    np.testing.assert_array_equal(labels, arrays[prefix][1])
  (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
  data.write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
  with pytest.raises(ValueError, match="test has 5 images but 4 labels"):
    data.idx_arrays(tmp_path)


def test_idx_arrays_missing_files_name_the_path_and_the_package(tmp_path):
  with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist") as err:
    data.idx_arrays(tmp_path / "nowhere")
  assert f"{tmp_path / 'nowhere'} does not exist" in str(err.value)
  with pytest.raises(FileNotFoundError, match=r"t10k-images-idx3-ubyte\(\.gz\) not found") as err:
    _write_idx_folder(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    data.idx_arrays(tmp_path, name="mnist")
  assert "copy the four MNIST IDX files" in str(err.value)  # mnist's own hint


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
  # the stored dataset is digits_arrays' split, bit for bit (and the digests recorded before)
  for split, source in (("train", train), ("test", test)):
    images = np.stack([np.asarray(source[i]["image"]) for i in range(len(source))])
    labels = [int(source[i]["label"]) for i in range(len(source))]
    assert _digest(images, labels) == DIGITS_DIGESTS[split]


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


def _png_bytes(image):
  import io

  from PIL import Image

  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format="PNG")
  return buf.getvalue()


def _write_tar(path, images, names):
  import io
  import tarfile

  with tarfile.open(path, "w") as tar:
    for image, name in zip(images, names, strict=True):
      raw = _png_bytes(image)
      info = tarfile.TarInfo(f"{path.stem}/{name}")
      info.size = len(raw)
      tar.addfile(info, io.BytesIO(raw))


def test_import_imagenet32_checks_sums_sorts_and_splits(tmp_path, monkeypatch):
  import dataclasses

  rng = np.random.default_rng(3)
  src = tmp_path / "src"
  src.mkdir()
  train = rng.integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
  train[:, 0, 0, 0] = np.arange(7)  # tag: rank of the file name
  names = [f"{i:08d}.png" for i in range(7)]
  shuffled = rng.permutation(7)  # members stored out of name order
  _write_tar(src / "train_32x32.tar", train[shuffled], [names[i] for i in shuffled])
  valid = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
  _write_tar(src / "valid_32x32.tar", valid, ["b.png", "a.png", "c.png"])

  # not the van den Oord files: refused, with the way out in the message
  with pytest.raises(ValueError, match=r"train_32x32\.tar has SHA-256 .* variant='NAME'"):
    data.import_imagenet32(src, data_dir=tmp_path / "refused")
  assert not (tmp_path / "refused" / "mrflax_imagenet32").exists()

  # with the files' digests registered as the reference ones, the check passes
  sums = {f: data.sha256_file(src / f) for f in ("train_32x32.tar", "valid_32x32.tar")}
  monkeypatch.setitem(data.IMAGENET_SHA256, "train_32x32.tar", sums["train_32x32.tar"])
  monkeypatch.setitem(data.IMAGENET_SHA256, "valid_32x32.tar", sums["valid_32x32.tar"])
  out = data.import_imagenet32(src, data_dir=tmp_path / "tfds")
  assert out == tmp_path / "tfds" / "mrflax_imagenet32" / "1.0.0"
  meta = data.dataset_metadata(out)
  assert meta["variant"] == "van_den_oord" and meta["sha256_checked"] and meta["sha256"] == sums
  assert "sorted" in meta["file_order"]
  src_train = data.open_source("imagenet32", "train", data_dir=tmp_path / "tfds")
  for i in range(7):  # sorted file-name order, whatever the order in the tar
    np.testing.assert_array_equal(src_train[i]["image"], train[i])
  src_valid = data.open_source("imagenet32", "validation", data_dir=tmp_path / "tfds")
  np.testing.assert_array_equal(src_valid[0]["image"], valid[1])  # "a.png" first

  # VDVAE's split: seed-42 permutation of the sorted images, the last ones held out
  spec = data.get_spec("imagenet32")
  small = dataclasses.replace(spec.heldout, size=2)  # the real rule holds out 5,000
  monkeypatch.setitem(data.DATASETS, "imagenet32", dataclasses.replace(spec, heldout=small))
  perm = np.random.RandomState(42).permutation(7)
  held = data.open_source("imagenet32", "vdvae_valid", data_dir=tmp_path / "tfds")
  assert [int(held[i]["image"][0, 0, 0]) for i in range(2)] == perm[-2:].tolist()
  assert len(data.open_source("imagenet32", "vdvae_train", data_dir=tmp_path / "tfds")) == 5


def test_import_imagenet32_other_variant_and_missing_files(tmp_path):
  src = tmp_path / "src"
  src.mkdir()
  with pytest.raises(FileNotFoundError, match=r"train_32x32\.tar not found"):
    data.import_imagenet32(src, data_dir=tmp_path)
  rng = np.random.default_rng(4)
  _write_tar(src / "train_32x32.tar", rng.integers(0, 256, (2, 32, 32, 3), np.uint8), ["a", "b"])
  _write_tar(src / "valid_32x32.tar", rng.integers(0, 256, (1, 16, 16, 3), np.uint8), ["a.png"])
  with pytest.raises(ValueError, match=r"holds no \.png files"):  # named variant: no checksum
    data.import_imagenet32(src, data_dir=tmp_path / "a", variant="box")
  _write_tar(
    src / "train_32x32.tar", rng.integers(0, 256, (2, 32, 32, 3), np.uint8), ["a.png", "b.png"]
  )
  with pytest.raises(ValueError, match=r"a\.png is 16x16"):
    data.import_imagenet32(src, data_dir=tmp_path / "b", variant="box")
