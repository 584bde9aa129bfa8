"""Missing datasets give an error that names the dataset, where we looked and the fix."""

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
