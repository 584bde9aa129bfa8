r"""Runs the HVAE claim experiments (issue 6 items 2-5): time, sharing, point mass, Euler steps.

Usage::

  python -m experiments.main --config=experiments/hvae_claims/config.py:all \
      --workdir=/tmp/hvae_claims

Every training run goes through ``experiments.hvae.train.train_and_evaluate`` (the same trainer,
checkpoints and test-set ELBO as ``experiments/main.py``) into ``<workdir>/<run name>``; a run
whose ``summary.json`` exists is not trained again (:mod:`.runs`). Each experiment then writes
``<experiment>.json`` and ``<experiment>.png`` into ``config.results_dir`` (the workdir when
empty). The diagnostics are :mod:`mrflax.evaluation.diagnostics` (THEORY.md §5.4 and §6.3); each
experiment's protocol is its own module (:mod:`.clock` for ``time``, :mod:`.sharing`,
:mod:`.point_mass`, :mod:`.euler`), its figure is in :mod:`.plots`.
"""

from __future__ import annotations

import pathlib
import time

from experiments.hvae_claims.clock import run_time
from experiments.hvae_claims.euler import run_euler
from experiments.hvae_claims.fashion import run_fashion_sharing
from experiments.hvae_claims.point_mass import run_point_mass
from experiments.hvae_claims.sharing import run_sharing

#: The experiments by name (``config.experiments`` lists which run, in order).
RUNNERS = {
  "sharing": run_sharing,
  "time": run_time,
  "point_mass": run_point_mass,
  "euler": run_euler,
  "fashion_sharing": run_fashion_sharing,
}


def train(cfg, workdir) -> None:
  """Runs every experiment in ``cfg.experiments`` (finished runs resume from ``workdir``)."""
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / "config.json").write_text(cfg.to_json(indent=1))
  for name in cfg.experiments:
    t0 = time.perf_counter()
    RUNNERS[name](cfg, workdir)
    print(f"[claims] {name}: {time.perf_counter() - t0:.0f} s", flush=True)


#: The modes ``python -m experiments.main --mode=...`` dispatches to.
MODES = {"train": train}
