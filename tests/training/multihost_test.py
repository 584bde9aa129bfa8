"""Multi-host for real on one machine: 2 processes x 2 devices == 1 process x 4 devices."""

import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from mrflax import data
from mrflax.training import loop
from mrflax.training.steps import StepConfig
from tests.training.toy import Toy, toy_loss, toy_source

STEP = StepConfig(lr=1e-2, warmup_steps=2, ema_decay=0.9)
LOOP = loop.LoopConfig(
  steps=6, batch_size=8, steps_per_call=2, log_every=2, checkpoint_every=6, seed=5
)


class Concat:
  """The global batch a 2-process run assembles: process 0's rows, then process 1's."""

  def __init__(self):
    self.its = [
      iter(
        data.train_dataset(
          toy_source(),
          global_batch=LOOP.batch_size,
          seed=LOOP.seed,
          preprocess=lambda ex: ex,
          process_index=p,
          process_count=2,
        )
      )
      for p in range(2)
    ]

  def __iter__(self):  # an Iterator, as fit's train_iter is annotated
    return self

  def __next__(self):
    parts = [next(it) for it in self.its]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

  def get_state(self):
    return {"p0": self.its[0].get_state(), "p1": self.its[1].get_state()}


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_like_one(tmp_path):
  port = _free_port()
  out = tmp_path / "params.npz"
  cmd = [sys.executable, "-m", "tests.training.multihost_script"]
  procs = [
    subprocess.Popen(
      [*cmd, str(p), str(port), str(tmp_path / "mh"), str(out)],
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for p in range(2)
  ]
  outputs = [p.communicate(timeout=600) for p in procs]
  for p, (so, se) in zip(procs, outputs, strict=True):
    assert p.returncode == 0, se[-3000:]
    assert "DONE" in so
  digests = {
    line.split()[2] for so, _ in outputs for line in so.splitlines() if line.startswith("DONE")
  }
  assert len(digests) == 1  # both processes hold the same replicated parameters

  ref = loop.fit(
    model_fn=lambda rngs: Toy(rngs=rngs),
    loss_fn=toy_loss,
    step_config=STEP,
    loop=LOOP,
    train_iter=Concat(),
    workdir=str(tmp_path / "single"),
  )
  assert jax.device_count() == 4
  multi = np.load(out)
  ref_leaves = [np.asarray(x) for x in jax.tree.leaves(ref.state.params)]
  assert len(ref_leaves) == len(multi.files)
  for i, want in enumerate(ref_leaves):
    np.testing.assert_allclose(multi[f"arr_{i}"], want, rtol=1e-5, atol=1e-6)
