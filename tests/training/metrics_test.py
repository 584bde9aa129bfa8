"""Metric records and the progress line."""

import io
import json

import numpy as np

from mrflax.training.metrics import MetricWriter, Progress, to_python


def test_to_python_handles_arrays_and_non_finite():
  out = to_python({"a": np.float32(1.5), "b": np.array([1, 2]), "c": float("nan")})
  assert out == {"a": 1.5, "b": [1, 2], "c": "nan"}
  json.dumps(out)


def test_writer_appends_json_lines(tmp_path):
  w = MetricWriter(tmp_path)
  w.write(10, {"loss": np.float32(2.0)})
  w.write(20, {"loss": 1.0})
  rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows] == [10, 20] and rows[0]["loss"] == 2.0
  MetricWriter(tmp_path / "off", enabled=False).write(1, {"x": 1})
  assert not (tmp_path / "off").exists()


def test_progress_line_has_rate_and_eta():
  buf = io.StringIO()
  p = Progress(100, start=0, stream=buf)
  p.update(50, {"loss": 1.23456, "nan": float("nan")})
  line = buf.getvalue()
  assert "50/100" in line and "steps/s" in line and "ETA" in line
  assert "loss=1.235" in line and "nan=nan" in line


def _scalars(logdir):
  from tensorboard.backend.event_processing import event_accumulator

  acc = event_accumulator.EventAccumulator(str(logdir))
  acc.Reload()
  return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_scalars_read_back(tmp_path):
  w = MetricWriter(tmp_path)
  w.write(2, {"loss": np.float32(2.5), "per_block": np.array([1.0, 2.0]), "n": 3})
  w.write(4, {"loss": 1.5, "nan": float("nan")})
  w.write(4, {"loss": 7.0}, prefix="eval/")
  w.close()
  w.write(6, {"loss": 1.0})  # after close: JSON lines only
  got = _scalars(tmp_path)
  assert got["loss"] == [(2, 2.5), (4, 1.5)] and got["n"] == [(2, 3.0)]
  assert got["eval/loss"] == [(4, 7.0)] and np.isnan(got["nan"][0][1])
  assert "per_block" not in got  # arrays: JSON lines only
  rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert rows[2]["eval/loss"] == 7.0 and rows[0]["per_block"] == [1.0, 2.0] and len(rows) == 4


def test_resumed_writer_replaces_the_orphaned_steps(tmp_path):
  first = MetricWriter(tmp_path)
  for step in (2, 4, 6):  # the run dies after step 6; its last checkpoint is at step 4
    first.write(step, {"loss": float(step)})
  first.close()
  second = MetricWriter(tmp_path, start_step=4)
  for step in (6, 8):
    second.write(step, {"loss": 10.0 * step})
  second.close()
  assert _scalars(tmp_path)["loss"] == [(2, 2.0), (4, 4.0), (6, 60.0), (8, 80.0)]


def test_disabled_writer_writes_nothing(tmp_path):
  w = MetricWriter(tmp_path / "off", enabled=False)
  w.write(1, {"x": 1})
  w.close()
  assert not (tmp_path / "off").exists()
