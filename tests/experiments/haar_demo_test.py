"""`make demo` runs end to end and writes its picture."""

import sys

from PIL import Image

from experiments import haar_demo as demo


def test_demo_runs(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(sys, "argv", ["demo", "--workdir", str(tmp_path)])
  demo.main()
  out = capsys.readouterr().out
  assert "perfect reconstruction" in out
  png = tmp_path / "haar_digits.png"
  with Image.open(png) as im:
    assert im.size[0] > im.size[1] > 0
