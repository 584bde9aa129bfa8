"""Multi-host through the entry point: 2 processes x 2 CPU devices against 1 process x 4 devices.

``python -m experiments.main`` on the digits config (``:tiny`` with the ``tiny8`` model: 40 steps,
periodic evaluations at steps 20 and 40, the final evaluation on the whole 359-image test split),
once as one process with 4 CPU devices and once as two processes with 2 CPU devices each, joined
over loopback by ``MRFLAX_COORDINATOR`` / ``MRFLAX_NUM_PROCESSES`` / ``MRFLAX_PROCESS_ID`` (gloo CPU
collectives). The three processes run at once (the machine has 2 cores: the one-process run
overlaps the two-process run's serial phases).

Both runs see the same global batches and evaluate the same batches with the same keys on a
4-device mesh. The parameters are nevertheless not equal bit for bit, so the two
``params_digest`` differ: the gradient all-reduce over the 4 devices associates its float32 sum
differently in one process (XLA's in-process CPU collectives) and over gloo (measured: the sums
of ``[1e8, 1, -1e8, 1]`` over the 4 devices are 1 and 0). After 40 steps the parameters differ by
float32 round-off (measured: largest difference 2.5e-7, relative L2 2.4e-7), and the test bits/dim
by 4e-9 relative. So the test compares the parameters of the two final checkpoints (``ATOL``), the
digests of the two processes of the 2x2 run with each other (equal: every process holds the same
replica), and the test ELBO to ``RTOL``. A dropped or doubled evaluation share changes the count
of evaluated examples (359), and the mean: process 0's rows alone (192 of the 359 images) give a
test ELBO 1.2% off the whole split's (measured on a trained checkpoint), 10^4 times ``RTOL``.

The periodic evaluations (steps 20 and 40) fall on checkpoint steps, so the best-checkpoint
save (``checkpoints/best``) and the regular save of the same step run at once: this guards the
separate Orbax barrier prefix of the best manager (without it both managers wait at identically
named ``async_write_complete.<step>`` barriers and a multi-process run hangs until Orbax's 300 s
barrier timeout, as seen before the fix).
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from mrflax import data, sharding

ROOT = pathlib.Path(__file__).resolve().parents[2]
TIMEOUT_S = 1200  # generous: a loaded 2-core machine (about 3 minutes of CPU time in all)
RTOL = 1e-6  # test ELBO (nats/dim, bits/dim, nats/image): seen 4e-9 relative
ATOL = 1e-5  # parameters and EMA parameters (values of order 0.01 to 1): seen 2.5e-7


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(devices: int, **extra: str) -> dict[str, str]:
  env = {k: v for k, v in os.environ.items() if k not in sharding.DISTRIBUTED_ENV}
  env.update(JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(devices), XLA_FLAGS="", **extra)
  return env


OVERRIDES = (
  "--config.model.preset=tiny8",  # the digits pipeline on the small model: cheap to compile
)


def _args(workdir: pathlib.Path, data_dir: pathlib.Path) -> list[str]:
  return [
    sys.executable,
    "-m",
    "experiments.main",
    "--config=experiments/digits/config.py:tiny",
    *OVERRIDES,
    f"--config.data.data_dir={data_dir}",
    f"--workdir={workdir}",
  ]


def _launch(args, env, log: pathlib.Path):
  with open(log, "w") as f:  # a file, not a pipe: nothing blocks on a full pipe
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)


def _wait(procs, logs) -> list[str]:
  try:
    for p in procs:
      p.wait(timeout=TIMEOUT_S)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  outs = [log.read_text() for log in logs]
  for p, out, log in zip(procs, outs, logs, strict=True):
    assert p.returncode == 0, f"{log} (exit {p.returncode}):\n{out[-4000:]}"
  return outs


def _summary(work: pathlib.Path) -> dict:
  return json.loads((work / "summary.json").read_text())


def _files(work: pathlib.Path) -> list[str]:
  """The run's top-level files, TensorBoard event files (named by host and pid) as one name."""
  return sorted("events" if p.name.startswith("events.") else p.name for p in work.iterdir())


def _final_state(work: pathlib.Path):
  from experiments.digits import config as digits_config
  from experiments.hvae import train

  config = digits_config.get_config("tiny")
  config.model.preset = "tiny8"
  _, _, restored = train.restore(config, work)
  return restored


@pytest.mark.slow
def test_two_processes_run_the_digits_config_like_one(tmp_path):
  one, two = tmp_path / "one", tmp_path / "two"
  port = _free_port()
  logs = [tmp_path / "one.log", tmp_path / "two_0.log", tmp_path / "two_1.log"]
  procs = [_launch(_args(one, tmp_path / "data_one"), _env(4), logs[0])]
  procs += [
    _launch(
      _args(two, tmp_path / "data_two"),  # a fresh data dir: process 0 imports, 1 waits
      _env(
        2,
        MRFLAX_COORDINATOR=f"127.0.0.1:{port}",
        MRFLAX_NUM_PROCESSES="2",
        MRFLAX_PROCESS_ID=str(pid),
      ),
      log,
    )
    for pid, log in enumerate(logs[1:])
  ]
  out_one, out0, out1 = _wait(procs, logs)
  assert "in 2 processes" not in out_one
  assert "4 device(s) in 2 processes (this is process 0)" in out0
  assert "4 device(s) in 2 processes (this is process 1)" in out1

  a, b = _summary(one), _summary(two)
  for s in (a, b):
    assert s["step"] == 40
    assert s["eval"]["num_examples"] == 359  # every test image once: no share dropped or doubled
    assert s["last_valid_eval"] is not None
  ea, eb = a["eval"], b["eval"]
  for name in ("bits_per_dim", "nats_per_image", "nats_per_dim", "distortion"):
    np.testing.assert_allclose(eb[name], ea[name], rtol=RTOL, err_msg=name)
  # the rate is ~5e-5 nats/dim after 40 steps: compared in absolute terms
  np.testing.assert_allclose(eb["rate"], ea["rate"], rtol=0, atol=1e-7)
  np.testing.assert_allclose(eb["kl_per_block"], ea["kl_per_block"], rtol=0, atol=1e-7)
  for name in ("loss", "bits_per_dim", "nats_per_image"):  # the last periodic evaluation (step 40)
    np.testing.assert_allclose(b["last_valid_eval"][name], a["last_valid_eval"][name], rtol=RTOL)
  np.testing.assert_allclose(b["best_valid_loss"], a["best_valid_loss"], rtol=RTOL)
  for name in ("loss", "distortion"):  # the training metrics of the last window
    np.testing.assert_allclose(b["train_metrics"][name], a["train_metrics"][name], rtol=1e-5)

  # the best checkpoint was saved beside the regular one of the same step (the barrier guard)
  for work in (one, two):
    best = sorted(p.name for p in (work / "checkpoints" / "best").iterdir() if p.name.isdigit())
    assert best and int(best[-1]) in (20, 40), best
    assert (work / "checkpoints" / best[-1]).is_dir()

  # the final checkpoints (written once by Orbax in the 2x2 run) hold the same parameters
  ra, rb = _final_state(one), _final_state(two)
  assert ra.step == rb.step == 40
  for part in ("params", "ema"):
    leaves_a = jax.tree.leaves(getattr(ra.state, part))
    leaves_b = jax.tree.leaves(getattr(rb.state, part))
    assert len(leaves_a) == len(leaves_b) > 0
    for x, y in zip(leaves_a, leaves_b, strict=True):
      np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=0, atol=ATOL, err_msg=part)

  # process 1 holds the same parameters as process 0 and computed the same evaluation
  follower = [line for line in out1.splitlines() if line.startswith("[hvae] process 1:")]
  assert len(follower) == 1, out1[-3000:]
  assert f"params digest {b['params_digest']}" in follower[0]
  assert "over 359 images" in follower[0]
  bits = float(follower[0].split("ELBO ")[1].split()[0])
  np.testing.assert_allclose(bits, eb["bits_per_dim"], atol=1e-6)  # printed with 6 decimals
  # and wrote nothing: the 2x2 workdir holds what the 1x4 one does (one event file)
  assert _files(two) == _files(one)
  assert _files(two).count("events") == 1
  assert sorted(p.name for p in (two / "checkpoints").iterdir()) == sorted(
    p.name for p in (one / "checkpoints").iterdir()
  )


@pytest.mark.parametrize(
  "env, message",
  [
    (
      {"MRFLAX_NUM_PROCESSES": "2"},
      "error: multi-process run: MRFLAX_COORDINATOR, MRFLAX_PROCESS_ID not set (set all of "
      "MRFLAX_COORDINATOR (host:port), MRFLAX_NUM_PROCESSES, MRFLAX_PROCESS_ID, or none)",
    ),
    (
      {"MRFLAX_COORDINATOR": "localhost:1", "MRFLAX_NUM_PROCESSES": "2", "MRFLAX_PROCESS_ID": "x"},
      "error: multi-process run: MRFLAX_NUM_PROCESSES='2' and MRFLAX_PROCESS_ID='x' must be "
      "integers",
    ),
  ],
)
def test_a_partial_or_malformed_description_is_one_line_and_exit_2(tmp_path, env, message):
  proc = subprocess.run(
    [*_args(tmp_path / "w", tmp_path / "d"), "--config.train.steps=1"],
    cwd=ROOT,
    env={**_env(1), **env},
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 2, proc.stderr
  assert proc.stderr.strip() == message
  assert not (tmp_path / "w").exists()


def test_distributed_env_is_checked():
  assert sharding.distributed_env({}) is None
  assert sharding.distributed_env(
    {"MRFLAX_COORDINATOR": "h:1", "MRFLAX_NUM_PROCESSES": "3", "MRFLAX_PROCESS_ID": "2"}
  ) == ("h:1", 3, 2)
  bad = [
    {"MRFLAX_COORDINATOR": "h:1"},
    {"MRFLAX_COORDINATOR": "h", "MRFLAX_NUM_PROCESSES": "2", "MRFLAX_PROCESS_ID": "0"},
    {"MRFLAX_COORDINATOR": "h:1", "MRFLAX_NUM_PROCESSES": "2", "MRFLAX_PROCESS_ID": "2"},
    {"MRFLAX_COORDINATOR": "h:1", "MRFLAX_NUM_PROCESSES": "0", "MRFLAX_PROCESS_ID": "0"},
  ]
  for env in bad:
    with pytest.raises(ValueError, match="multi-process run"):
      sharding.distributed_env(env)
  with pytest.raises(ValueError, match="exclude each other"):
    sharding.initialize_distributed(
      coordinator_address="h:1", num_processes=1, process_id=0, auto=True
    )


def test_eval_rows_of_two_processes_make_the_one_process_batches():
  source = data.array_source(np.arange(11 * 4, dtype=np.uint8).reshape(11, 2, 2, 1))

  def prep(ex):
    return {"image": ex["image"].astype(np.float32)}

  whole = list(data.eval_batches(source, batch_size=4, preprocess=prep, process_count=1))
  halves = [
    list(data.eval_batches(source, batch_size=4, preprocess=prep, rows=rows))
    for rows in ((0, 2), (2, 4))
  ]
  assert len(halves[0]) == len(halves[1]) == len(whole) == 3
  for w, h0, h1 in zip(whole, *halves, strict=True):
    for k in w:
      np.testing.assert_array_equal(np.concatenate([h0[k], h1[k]]), w[k])
  assert sharding.process_rows(sharding.make_mesh(), 8) == (0, 8)  # one process: every row
