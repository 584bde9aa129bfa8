"""A checkpoint written before the HVAE package split (mrflax/nn/vdvae.py) still restores.

``tests/nn/reference/old_checkpoint/`` holds a tiny digits run (the ``tiny8`` preset at width 8,
``exec_mode="scan"``, ``conv_backward="xla"`` among the model overrides) written by the old code;
its README names the command and the commit, ``expected.json`` the parameter digests and the
losses the old code computed from the restored state on a fixed batch.
"""

import json
import pathlib
import tarfile

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments.digits.config import get_config
from experiments.hvae import train
from mrflax import training

REF = pathlib.Path(__file__).resolve().parents[1] / "nn" / "reference" / "old_checkpoint"


def old_config() -> ml_collections.ConfigDict:
  """The config the checkpoint was written with (README.md: the same overrides)."""
  c = get_config()
  c.model.preset = "tiny8"
  c.model.exec_mode = "scan"
  c.model.overrides = ml_collections.ConfigDict(dict(width=8, zdim=2, conv_backward="xla"))
  c.train.steps = 2
  c.train.checkpoint_every = 2
  c.train.steps_per_call = 1
  c.train.eval_every = 0
  c.train.log_every = 1
  c.eval.num_samples = 2
  return c


@pytest.fixture
def old_workdir(tmp_path):
  with tarfile.open(REF / "checkpoints.tar.xz") as tar:
    tar.extractall(tmp_path, filter="data")
  return tmp_path


def _batch():
  return jnp.linspace(-1.0, 1.0, 2 * 64, dtype=jnp.float32).reshape(2, 8, 8, 1)


def test_old_checkpoint_restores_with_equal_parameters_and_loss(old_workdir, capsys):
  expected = json.loads((REF / "expected.json").read_text())
  saved = json.loads((REF / "config.json").read_text())
  config = old_config()
  assert saved["model"] == json.loads(config.to_json())["model"]  # the config it was written with
  spec, trainer, restored = train.restore(config, old_workdir)
  assert restored.step == expected["step"] == 2
  # the nnx parameter paths did not change: the state restores as saved, bit for bit
  assert training.params_digest(restored.state.params) == expected["params_digest"]
  assert training.params_digest(restored.state.ema) == expected["ema_digest"]
  # conv_backward in config.model.overrides went to the policy, width/zdim to the spec
  assert (spec.width, spec.zdim) == (8, 2)
  model = trainer.model(restored.state)
  assert (model.policy.exec_mode, model.policy.conv_backward) == ("scan", "xla")
  for ema, name in ((False, "loss"), (True, "ema_loss")):
    loss, _ = trainer.model(restored.state, ema=ema).loss(_batch(), _batch(), jax.random.key(0))
    np.testing.assert_allclose(float(loss), expected[name], rtol=1e-6)
  # an execution-only change restores the same parameters and says so
  config.model.exec_mode = "unroll"
  capsys.readouterr()
  _, _, again = train.restore(config, old_workdir)
  assert training.params_digest(again.state.params) == expected["params_digest"]
  out = capsys.readouterr().out
  assert (
    "execution-only config changes (same parameters): model.exec_mode: 'scan' -> 'unroll'" in out
  )
