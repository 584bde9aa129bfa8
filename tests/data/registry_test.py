"""The reference splits: numpy re-implementations checked against scikit-learn and VDVAE's code."""

import numpy as np
import pytest

from mrflax import data


def test_shuffle_split_is_sklearns_train_test_split():
  from sklearn.model_selection import train_test_split

  for n, test_size, seed in ((50_000, 5000, 11172018), (17, 5, 0), (10, 1, 3)):
    train, test = data.shuffle_split(n, test_size=test_size, seed=seed)
    ref_train, ref_test = train_test_split(np.arange(n), test_size=test_size, random_state=seed)
    np.testing.assert_array_equal(train, ref_train)
    np.testing.assert_array_equal(test, ref_test)


def test_cifar10_vdvae_split_is_45k_5k():
  rule = data.get_spec("cifar10").heldout
  parts = rule.indices(50_000)
  train, valid = parts["vdvae_train"], parts["vdvae_valid"]
  assert (len(train), len(valid)) == (45_000, 5_000)
  np.testing.assert_array_equal(np.sort(np.concatenate([train, valid])), np.arange(50_000))
  assert "11172018" in rule.rule and data.get_spec("cifar10").valid_split == "vdvae_valid"
  from sklearn.model_selection import train_test_split

  stacked = np.arange(50_000)  # positions in the five training batches stacked in order
  _, va = train_test_split(stacked, test_size=5000, random_state=11172018)
  np.testing.assert_array_equal(valid, va)


def test_imagenet_tail_split_is_vdvaes_code():
  n = 1000
  # VDVAE's data.py, literally: the legacy global RNG (restored afterwards)
  state = np.random.get_state()  # noqa: NPY002
  try:
    np.random.seed(42)  # noqa: NPY002
    perm = np.random.permutation(n)  # noqa: NPY002
  finally:
    np.random.set_state(state)  # noqa: NPY002
  train, valid = data.tail_split(n, holdout=50, seed=42)
  np.testing.assert_array_equal(train, perm[:-50])
  np.testing.assert_array_equal(valid, perm[-50:])
  rule = data.get_spec("imagenet32").heldout
  assert rule.method == "tail" and rule.seed == 42 and rule.size == 5000


def test_bad_split_arguments():
  with pytest.raises(ValueError, match="test_size"):
    data.shuffle_split(5, test_size=5, seed=0)
  with pytest.raises(ValueError, match="holdout"):
    data.tail_split(5, holdout=0, seed=0)
  with pytest.raises(ValueError, match="method"):
    data.HeldOut(base="train", size=1, seed=0, method="middle", rule="")
  assert data.get_spec("digits").valid_split == "test"  # no held-out rule: the eval split
  assert data.get_spec("cifar10").all_splits == ("train", "test", "vdvae_train", "vdvae_valid")
