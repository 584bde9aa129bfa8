"""mrflax experiments entry point: the one absl program that runs every experiment.

python -m experiments.main --config=experiments/<name>/config.py[:variant] --workdir=DIR \
    [--mode=train|eval|sample] [--config.train.steps=...]

The config's ``runner`` field picks the runner module (:data:`RUNNERS`); each runner module
exposes ``MODES``, a dict from mode name to ``fn(config, workdir)``. The HVAE runner has
``train``, ``eval`` and ``sample``; the study runners (``ghm``, ``unet_haar``, ``hvae_claims``)
have ``train``, which runs the study the config names and writes its JSON and figures.

``train`` resumes automatically from ``--workdir`` and ends with an evaluation; ``eval`` and
``sample`` use the newest checkpoint there (and say which step, EMA parameters). ``eval`` writes
``eval.json`` (test ELBO, KL per block and per resolution) and, with
``--config.eval.iw_samples=K`` (and optionally ``--config.eval.iw_chunk=C`` samples per vmapped
call), the importance-weighted bound.

Multi-process runs (one process per host, or per GPU group): with the environment variables
``MRFLAX_COORDINATOR`` (``host:port`` of process 0), ``MRFLAX_NUM_PROCESSES`` and
``MRFLAX_PROCESS_ID`` set, every process joins the run through ``jax.distributed.initialize``
before anything else touches JAX; ``--distributed=auto`` lets ``jax.distributed.initialize()``
find its peers itself (TPU pod slices, SLURM); ``--distributed=off`` ignores the variables. See
``experiments/hvae/train.py`` for what each process does (process 0 writes the files).

Mistakes end in one line on stderr and exit code 2, not a traceback: an unknown config field
(``--config.train.stepz=3``: "no field 'stepz' in config.train; did you mean 'steps'?"), and a
checkpoint that does not fit the configured model (what differs, how to proceed), a partial or
malformed ``MRFLAX_*`` multi-process description, and several processes for a runner that runs
in one only.
"""

from __future__ import annotations

import importlib
import re
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from mrflax import sharding
from mrflax.training.checkpoint import CheckpointMismatchError

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Experiment config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, pictures).")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval", "sample"], "What to do.")
_DISTRIBUTED = flags.DEFINE_enum(
  "distributed",
  "env",
  ["env", "auto", "off"],
  "Multi-process start-up. env: join the run that MRFLAX_COORDINATOR (host:port), "
  "MRFLAX_NUM_PROCESSES and MRFLAX_PROCESS_ID describe, one process if none is set; auto: "
  "jax.distributed.initialize() discovers the processes itself (TPU pod slices, SLURM); "
  "off: one process.",
)
flags.mark_flags_as_required(["config", "workdir"])


#: config.runner -> the module that runs it (each has ``MODES = {mode: fn(config, workdir)}``).
RUNNERS = {
  "hvae": "experiments.hvae.train",
  "hvae_claims": "experiments.hvae_claims.run",
  "ghm": "experiments.ghm.run",
  "unet_haar": "experiments.unet_haar.run",
}

#: The runners that work in a multi-process run (see experiments/hvae/train.py).
MULTI_PROCESS_RUNNERS = frozenset({"hvae"})


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr, flush=True)
  raise SystemExit(2)


def _config_override_error(argv: list[str], err: Exception) -> str:
  """One line for a bad ``--config.a.b=v``: the flag, the unknown field and the closest one."""
  text = " ".join(str(err).replace("\\n", " ").replace("\\'", "'").split()).strip("'\"")
  bad = re.match(r"""^\W*'?([\w-]+)'?""", text)
  name = bad.group(1) if bad else None
  args = [a for a in argv[1:] if a.startswith("--config.")]
  arg = next((a for a in args if name and name in a.split("=", 1)[0].split(".")), None)
  if arg is None:
    return f"bad --config override: {text}"
  hint = re.search(r'Did you mean "([^"]+)"', text)
  path = arg.split("=", 1)[0][2:].split(".")
  where = ".".join(path[: path.index(name)])
  return f"{arg}: no field {name!r} in {where}" + (
    f"; did you mean {hint.group(1)!r}?" if hint else ""
  )


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except flags.Error as err:
    _fail(f"{err}\n  (pass --helpfull to see every flag)")
  except (AttributeError, KeyError, TypeError, ValueError) as err:  # from ml_collections
    _fail(_config_override_error(argv, err))
  raise AssertionError("unreachable")


def _join_processes(how: str) -> None:
  """``jax.distributed.initialize`` as ``--distributed`` says; before any other JAX call."""
  if how == "off":
    return
  try:
    sharding.initialize_distributed(auto=how == "auto")
  except ValueError as err:
    _fail(str(err))


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO; progress is printed
  config = _CONFIG.value
  where = flags.FLAGS["config"].config_filename
  runner = config.get("runner")
  if runner not in RUNNERS:
    _fail(f"{where}: config.runner is {runner!r}; expected one of {', '.join(sorted(RUNNERS))}")
  _join_processes(_DISTRIBUTED.value)  # before the runner's imports can touch a JAX backend
  if runner not in MULTI_PROCESS_RUNNERS and jax.process_count() > 1:
    _fail(
      f"the {runner} runner runs in one process only (this run has {jax.process_count()}); "
      f"multi-process runners: {', '.join(sorted(MULTI_PROCESS_RUNNERS))}"
    )
  modes = importlib.import_module(RUNNERS[runner]).MODES
  if _MODE.value not in modes:
    _fail(f"--mode={_MODE.value} is not a mode of the {runner} runner (it has {', '.join(modes)})")
  try:
    modes[_MODE.value](config, _WORKDIR.value)
  except CheckpointMismatchError as err:
    _fail(str(err))


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
