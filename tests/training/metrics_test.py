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
