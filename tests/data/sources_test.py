"""Missing datasets give an error that names the dataset, where we looked and the fix."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from mrflax import data


def test_missing_dataset_message(tmp_path):
  with pytest.raises(data.DatasetNotFoundError) as info:
    data.open_source("fashion_mnist", "train", data_dir=tmp_path)
  msg = str(info.value)
  assert "Dataset 'fashion_mnist' (fashion_mnist 3.0.1) not found under" in msg
  assert str(tmp_path / "fashion_mnist" / "3.0.1" / "dataset_info.json") in msg
  assert "apt-get install dataset-fashion-mnist" in msg
  assert f"--data_dir {tmp_path}" in msg
  assert isinstance(info.value, FileNotFoundError)


@pytest.mark.parametrize("name", sorted(data.DATASETS))
def test_every_dataset_has_a_remedy(tmp_path, name):
  with pytest.raises(data.DatasetNotFoundError, match=name):
    data.find_dataset(name, data_dir=tmp_path)
  spec = data.get_spec(name)
  assert spec.offline_hint or spec.online_hint


def test_unknown_names():
  with pytest.raises(ValueError, match="unknown dataset 'nope'"):
    data.open_source("nope", "train")
  with pytest.raises(ValueError, match=r"has splits \('train', 'test'\); got 'validation'"):
    data.open_source("mnist", "validation")


def test_default_data_dir_from_environment(monkeypatch, tmp_path):
  monkeypatch.setenv("MRFLAX_DATA_DIR", str(tmp_path))
  assert data.default_data_dir() == str(tmp_path)


@pytest.mark.parametrize(
  "name,shape", [("fashion_mnist", (28, 28, 1)), ("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))]
)
def test_tfds_path_with_mock_data(name, shape):
  """The networked-machine path (stock TFDS builders via tfds.data_source), served by mock data."""
  spec = data.get_spec(name)
  with tfds.testing.mock_data(num_examples=8, policy=tfds.testing.MockPolicy.USE_CODE):
    src = data.tfds_source(spec.tfds_name, "train", data_dir=None)
    assert len(src) == 8
    assert src[0]["image"].shape == shape == spec.image_shape
    ds = data.train_dataset(
      src,
      global_batch=4,
      seed=0,
      preprocess=data.Preprocess(name),
      process_index=0,
      process_count=1,
    )
    batch = next(iter(ds))
  assert batch["image"].shape == (4, *shape)
  assert batch["target"].min() >= -1.0 and batch["target"].max() <= 1.0


def test_original_order_from_stock_ids():
  # a stock TFDS split stores examples in a hashed order; CIFAR-10's ids give the original one
  rng = np.random.default_rng(0)
  order = rng.permutation(10)  # stored position j holds original example order[j]
  stored = [{"id": f"train_{k:05d}".encode(), "image": k} for k in order]
  positions = data.original_positions(stored, stock=True)
  assert [stored[p]["image"] for p in positions] == list(range(10))
  assert data.original_positions(stored, stock=False) is None  # mrflax imports keep the order
  rule = data.HeldOut(base="train", size=3, seed=11172018, method="sklearn", rule="test")
  train, valid = data.shuffle_split(10, test_size=3, seed=11172018)
  held = data.heldout_source(stored, rule, "vdvae_valid", positions=positions)
  assert [ex["image"] for ex in held] == valid.tolist() and len(held) == 3
  part = data.heldout_source(stored, rule, "vdvae_train", positions=positions)
  assert [ex["image"] for ex in part[:]] == train.tolist()
  with pytest.raises(ValueError, match="no numeric 'id'"):
    data.original_positions([{"image": 0}], stock=True)
  with pytest.raises(ValueError, match="not a permutation"):
    data.original_positions([{"id": b"train_00001"}], stock=True)
  with pytest.raises(ValueError, match="part must be one of"):
    data.heldout_source(stored, rule, "test")


def test_open_source_cuts_the_heldout_split(tmp_path, monkeypatch):
  import dataclasses

  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, (9, 32, 32, 3), dtype=np.uint8)
  images[:, 0, 0, 0] = np.arange(9)  # tag each image with its original position
  data.import_arrays("cifar10", {"train": images, "test": images[:2]}, data_dir=tmp_path)
  spec = data.get_spec("cifar10")
  small = dataclasses.replace(spec.heldout, size=3)  # the real rule needs > 5,000 images
  monkeypatch.setitem(data.DATASETS, "cifar10", dataclasses.replace(spec, heldout=small))
  train_idx, valid_idx = data.shuffle_split(9, test_size=3, seed=11172018)
  for split, idx in (("vdvae_train", train_idx), ("vdvae_valid", valid_idx)):
    src = data.open_source("cifar10", split, data_dir=tmp_path)
    assert [int(src[i]["image"][0, 0, 0]) for i in range(len(src))] == idx.tolist()
  with pytest.raises(ValueError, match="cannot be sliced"):
    data.open_source("cifar10", "vdvae_train[:50%]", data_dir=tmp_path)
