r"""Runs the GHM / belief-propagation experiments E1-E4 (THEORY §7.7).

Usage::

  python -m experiments.main --config=experiments/ghm/config.py:e1 --workdir=/tmp/ghm_e1

Each experiment writes ``<name>.json`` (and a PNG figure) into ``config.results_dir`` (or the
workdir when that is empty) and ``config.json`` into the workdir; the trained networks are
checkpoints under ``<workdir>/nets`` (:mod:`experiments.ghm.common`). The protocols and verdict
rules are in :mod:`experiments.ghm.e1` ... :mod:`experiments.ghm.e4`.
"""

from __future__ import annotations

import os

import jax
from absl import logging

from experiments.ghm.e1 import (
  run_e1,
  run_e1_ablations,
  run_e1_exact_bp,
  run_e1_ntrain,
  run_e1_width,
)
from experiments.ghm.e2 import run_e2
from experiments.ghm.e3 import run_e3, run_e3_ntrain
from experiments.ghm.e4 import run_e4

RUNNERS = dict(
  e1=run_e1,
  e1_ablations=run_e1_ablations,
  e1_ntrain=run_e1_ntrain,
  e1_width=run_e1_width,
  e1_exact_bp=run_e1_exact_bp,
  e2=run_e2,
  e3=run_e3,
  e3_ntrain=run_e3_ntrain,
  e4=run_e4,
)


def train(cfg, workdir: str) -> None:
  """Runs the experiment ``cfg.experiment`` names; writes config.json, its JSON and figures."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(cfg.to_json(indent=1))
  logging.info("backend %s, devices %s", jax.default_backend(), jax.devices())
  RUNNERS[cfg.experiment](cfg, workdir)


#: The modes ``python -m experiments.main --mode=...`` dispatches to.
MODES = {"train": train}
