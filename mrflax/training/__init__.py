"""Training: the one driver (:func:`fit`), the compiled step, checkpoints, metrics, optimizers.

The only impure code in the library besides ``mrflax.sharding``: optax + Flax NNX. Everything a
caller needs is importable from here; the sub-modules are implementation detail.
"""

from mrflax.training.checkpoint import Checkpointer, CheckpointMismatchError, Restored, config_diff
from mrflax.training.loop import FitResult, LoopConfig, TrainingDivergedError, fit
from mrflax.training.metrics import MetricWriter, Progress
from mrflax.training.optim import make_transform, warmup_cosine
from mrflax.training.steps import BatchSampler, StepConfig, Trainer, TrainState, global_norm
from mrflax.training.utils import host_array, params_digest

__all__ = [
  "BatchSampler",
  "CheckpointMismatchError",
  "Checkpointer",
  "FitResult",
  "LoopConfig",
  "MetricWriter",
  "Progress",
  "Restored",
  "StepConfig",
  "TrainState",
  "Trainer",
  "TrainingDivergedError",
  "config_diff",
  "fit",
  "global_norm",
  "host_array",
  "make_transform",
  "params_digest",
  "warmup_cosine",
]
