"""The Python snippets of README.md run as written."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow  # eager (un-jitted) model calls: ~1 min on 2 busy cores
def test_readme_python_snippets_run():
  blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
  assert len(blocks) >= 2
  namespace: dict = {}
  for block in blocks:  # later snippets may use names from earlier ones, as a reader would
    exec(compile(block, str(README), "exec"), namespace)
  assert namespace["loss"].shape == () and namespace["samples"].shape == (16, 8, 8, 1)
  assert namespace["shared"].num_cells == 5
