"""Checkpoints: round trip with the next step, corrupt-latest fallback, best, new mesh."""

import pathlib

import jax
import numpy as np
import pytest

from mrflax import sharding
from mrflax.training.checkpoint import Checkpointer, CheckpointMismatchError, abstract_like
from tests.training.toy import make, make_batch


def leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.fixture(scope="module")
def states():
  trainer, s = make()
  step = jax.jit(trainer.train_step)
  out = [s]
  for i in range(3):
    s, _ = step(s, make_batch(i))
    out.append(s)
  return trainer, step, out


def test_round_trip_and_next_step(tmp_path, states):
  _, step, (s0, s1, s2, s3) = states
  ckpt = Checkpointer(tmp_path / "ckpt", max_to_keep=2)
  for i, s in enumerate((s1, s2, s3), start=1):
    assert ckpt.save(i, s, data_state={"next_index": 4 * i}, config={"lr": 0.01})
  ckpt.wait()
  assert ckpt.all_steps() == [2, 3]  # max_to_keep
  restored = ckpt.restore(s0)
  assert restored.step == 3 and restored.data_state == {"next_index": 12}
  assert restored.config == {"lr": 0.01} and restored.skipped_corrupt == []
  for a, b in zip(leaves(restored.state), leaves(s3), strict=True):
    np.testing.assert_array_equal(a, b)
  # the restored state continues exactly like the original
  n1, m1 = step(s3, make_batch(9))
  n2, m2 = step(restored.state, make_batch(9))
  assert float(m1["loss"]) == float(m2["loss"])
  for a, b in zip(leaves(n1), leaves(n2), strict=True):
    np.testing.assert_array_equal(a, b)
  ckpt.close()


def _corrupt(step_dir: pathlib.Path):
  files = [p for p in step_dir.rglob("*") if p.is_file() and "state" in p.parts]
  assert files
  for p in files:
    p.write_bytes(b"garbage")


def test_corrupt_latest_falls_back_to_previous(tmp_path, states):
  _, _, (s0, s1, s2, _) = states
  ckpt = Checkpointer(tmp_path / "ckpt", max_to_keep=3, async_save=False)
  ckpt.save(1, s1)
  ckpt.save(2, s2)
  ckpt.wait()
  _corrupt(tmp_path / "ckpt" / "2")
  restored = ckpt.restore(s0)
  assert restored.step == 1 and restored.skipped_corrupt == [2]
  for a, b in zip(leaves(restored.state), leaves(s1), strict=True):
    np.testing.assert_array_equal(a, b)
  # the unreadable step is kept under a name that says so, out of the way of a new save
  (aside,) = restored.set_aside
  assert aside.name.startswith("2.unreadable-") and (aside / "state").is_dir()
  assert ckpt.all_steps() == [1]
  assert ckpt.save(2, s2)
  ckpt.wait()
  assert ckpt.restore(s0).step == 2
  # every step unreadable: all set aside (none deleted), and the run starts afresh
  _corrupt(tmp_path / "ckpt" / "2")
  _corrupt(tmp_path / "ckpt" / "1")
  assert ckpt.restore(s0) is None
  names = sorted(p.name.split("-")[0] for p in (tmp_path / "ckpt").iterdir())
  assert names == ["1.unreadable", "2.unreadable", "2.unreadable"]
  ckpt.close()


def test_a_different_tree_is_a_mismatch_not_corruption(tmp_path, states):
  _, _, (s0, s1, _, _) = states
  ckpt = Checkpointer(tmp_path / "ckpt", async_save=False)
  ckpt.save(1, s1, config={"model": {"width": 4}})
  wider = s0.replace(params={**s0.params, "extra": jax.numpy.zeros((3,))})
  with pytest.raises(CheckpointMismatchError, match=r"(?s)model.width: 4 -> 5.*first differing"):
    ckpt.restore(wider, config={"model": {"width": 5}})
  assert ckpt.all_steps() == [1]  # nothing set aside
  ckpt.close()


def test_empty_directory_and_non_finite_state(tmp_path, states):
  _, _, (s0, s1, _, _) = states
  ckpt = Checkpointer(tmp_path / "ckpt")
  assert ckpt.restore(s0) is None
  bad = s1.replace(params=jax.tree.map(lambda x: x * np.nan, s1.params))
  assert not ckpt.save(5, bad)
  ckpt.close()


def test_best_is_kept_apart(tmp_path, states):
  _, _, (_, s1, s2, s3) = states
  ckpt = Checkpointer(tmp_path / "ckpt", max_to_keep=1)
  assert ckpt.save_best(1, s1, metric=3.0)
  assert not ckpt.save_best(2, s2, metric=3.5)
  assert ckpt.save_best(3, s3, metric=2.5)
  assert ckpt.best_metric() == 2.5
  ckpt.close()


def test_restore_onto_another_mesh(tmp_path, states):
  _, _, (s0, _, s2, _) = states
  ckpt = Checkpointer(tmp_path / "ckpt", async_save=False)
  ckpt.save(2, s2)
  mesh = sharding.make_mesh(4)
  target = abstract_like(s0, sharding.replicated(mesh))
  restored = ckpt.restore(target)
  for x in jax.tree.leaves(restored.state):
    assert x.sharding.is_equivalent_to(sharding.replicated(mesh), x.ndim)
  for a, b in zip(leaves(restored.state), leaves(s2), strict=True):
    np.testing.assert_array_equal(a, b)
  ckpt.close()
