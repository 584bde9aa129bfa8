"""Helpers the study runners share: where results go and how JSON and figures are written.

``out_dir(cfg, workdir)`` is ``cfg.results_dir`` (created) or, when that is empty, the workdir;
``dump_json`` and ``save_fig`` write one file each and return its path.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any


def out_dir(cfg, workdir: str | os.PathLike) -> pathlib.Path:
  """``cfg.results_dir`` when set, else ``workdir``; created if missing."""
  out = pathlib.Path(cfg.results_dir) if cfg.results_dir else pathlib.Path(workdir)
  out.mkdir(parents=True, exist_ok=True)
  return out


def dump_json(obj: Any, path: str | os.PathLike, *, sort_keys: bool = True) -> pathlib.Path:
  """Writes ``obj`` as JSON (indent 1, keys sorted unless ``sort_keys=False``, final newline)."""
  path = pathlib.Path(path)
  path.write_text(json.dumps(obj, indent=1, sort_keys=sort_keys) + "\n")
  return path


def save_fig(
  fig, path: str | os.PathLike, *, dpi: int = 90, bbox_inches: str | None = "tight"
) -> pathlib.Path:
  """Saves a matplotlib figure (``bbox_inches="tight"`` trims the margins) and closes it."""
  import matplotlib.pyplot as plt  # here: a caller without figures needs no pyplot

  path = pathlib.Path(path)
  fig.savefig(path, dpi=dpi, bbox_inches=bbox_inches)
  plt.close(fig)
  return path
