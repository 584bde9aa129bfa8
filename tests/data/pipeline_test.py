"""Grain pipelines: deterministic, resumable, sharded per process, eval sees every example once."""

import numpy as np
import pytest

from mrflax import data


def _source(n=20, seed=0):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8)
  images[:, 0, 0, 0] = np.arange(n)  # an id in every image
  return data.array_source(images, np.arange(n) % 10)


def _ids(batch):
  # recover the id from the normalised input: (x - 127.5) / 127.5
  return np.round(batch["image"][:, 0, 0, 0] * 127.5 + 127.5).astype(int)


def test_train_stream_deterministic_and_resumable():
  prep = data.Preprocess("digits")
  ds = data.train_dataset(
    _source(), global_batch=4, seed=3, preprocess=prep, process_index=0, process_count=1
  )
  it = iter(ds)
  first = [next(it) for _ in range(3)]
  state = it.get_state()
  after = [next(it) for _ in range(4)]
  again = iter(
    data.train_dataset(
      _source(), global_batch=4, seed=3, preprocess=prep, process_index=0, process_count=1
    )
  )
  for a, b in zip(first, [next(again) for _ in range(3)], strict=True):
    np.testing.assert_array_equal(a["image"], b["image"])
  resumed = iter(ds)
  resumed.set_state(state)
  for a, b in zip(after, [next(resumed) for _ in range(4)], strict=True):
    np.testing.assert_array_equal(a["image"], b["image"])
  # one epoch (5 batches of 4) is a permutation of the 20 examples; the next epoch reshuffles
  it = iter(ds)
  epoch = np.concatenate([_ids(next(it)) for _ in range(5)])
  assert sorted(epoch) == list(range(20))
  assert not np.array_equal(epoch, np.arange(20))


def test_process_shards_are_disjoint():
  prep = data.Preprocess("digits")
  seen = []
  for index in range(2):
    it = iter(
      data.train_dataset(
        _source(), global_batch=4, seed=0, preprocess=prep, process_index=index, process_count=2
      )
    )
    ids = np.concatenate([_ids(next(it)) for _ in range(5)])  # one epoch of 10 examples
    assert (
      next(
        iter(
          data.train_dataset(
            _source(), global_batch=4, seed=0, preprocess=prep, process_index=index, process_count=2
          )
        )
      )["image"].shape[0]
      == 2
    )
    seen.append(set(ids))
  assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == set(range(20))


def test_bad_batch_sizes():
  prep = data.Preprocess("digits")
  with pytest.raises(ValueError, match="multiple of the number of processes"):
    data.train_dataset(
      _source(), global_batch=3, seed=0, preprocess=prep, process_index=0, process_count=2
    )
  with pytest.raises(ValueError, match="smaller than its batch"):
    data.train_dataset(
      _source(4), global_batch=8, seed=0, preprocess=prep, process_index=0, process_count=1
    )


def test_eval_batches_cover_every_example_once():
  batches = list(
    data.eval_batches(
      _source(10),
      batch_size=4,
      preprocess=data.Preprocess("digits"),
      process_index=0,
      process_count=1,
    )
  )
  assert [b["image"].shape[0] for b in batches] == [4, 4, 4]
  mask = np.concatenate([b["mask"] for b in batches])
  ids = np.concatenate([_ids(b) for b in batches])[mask > 0]
  assert mask.sum() == 10 and sorted(ids) == list(range(10))


def test_dynamic_binarisation_is_seeded():
  prep = data.Preprocess("mnist", binarize="dynamic", pad_to=12)
  a = next(
    iter(
      data.train_dataset(
        _source(), global_batch=4, seed=1, preprocess=prep, process_index=0, process_count=1
      )
    )
  )
  b = next(
    iter(
      data.train_dataset(
        _source(), global_batch=4, seed=1, preprocess=prep, process_index=0, process_count=1
      )
    )
  )
  np.testing.assert_array_equal(a["target"], b["target"])
  assert a["target"].shape == (4, 12, 12, 1)
  assert set(np.unique(a["target"])) <= {0.0, 1.0}
  e1 = next(
    data.eval_batches(_source(), batch_size=4, preprocess=prep, process_index=0, process_count=1)
  )
  e2 = next(
    data.eval_batches(_source(), batch_size=4, preprocess=prep, process_index=0, process_count=1)
  )
  np.testing.assert_array_equal(e1["target"], e2["target"])
