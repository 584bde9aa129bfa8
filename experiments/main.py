"""mrflax experiments entry point.

python -m experiments.main --config=experiments/<name>/config.py[:variant] --workdir=DIR \
    [--mode=train|eval|sample] [--config.train.steps=...]

``train`` resumes automatically from ``--workdir`` and ends with an evaluation; ``eval`` and
``sample`` use the newest checkpoint there. ``eval`` writes ``eval.json`` (test ELBO, KL per
block and per resolution) and, with ``--config.eval.iw_samples=K`` (and optionally
``--config.eval.iw_chunk=C`` samples per vmapped call), the importance-weighted bound.
"""

from __future__ import annotations

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Experiment config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, pictures).")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval", "sample"], "What to do.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO; progress is printed
  config = _CONFIG.value
  if config.experiment != "hvae":
    raise app.UsageError(f"unknown experiment {config.experiment!r}")
  from experiments.hvae import train

  {"train": train.train_and_evaluate, "eval": train.evaluate, "sample": train.sample}[_MODE.value](
    config, _WORKDIR.value
  )


if __name__ == "__main__":
  app.run(main)
