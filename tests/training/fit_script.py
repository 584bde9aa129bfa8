"""A toy training run as its own process (used by the kill-and-resume tests).

python -m tests.training.fit_script WORKDIR STEPS [KILL_AT]   (prints the parameter digest)
"""

import os
import signal
import sys
import time

import jax

jax.config.update("jax_num_cpu_devices", 4)


from mrflax import training  # noqa: E402
from mrflax.training import loop  # noqa: E402
from mrflax.training.steps import StepConfig  # noqa: E402
from tests.training.toy import Toy, toy_iter, toy_loss  # noqa: E402


def main():
  workdir, steps = sys.argv[1], int(sys.argv[2])
  kill_at = int(sys.argv[3]) if len(sys.argv) > 3 else None

  def on_log(step, metrics):
    if kill_at is not None and step >= kill_at:
      time.sleep(3)  # let the asynchronous save of the previous checkpoint land
      os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no final checkpoint

  result = loop.fit(
    model_fn=lambda rngs: Toy(rngs=rngs),
    loss_fn=toy_loss,
    step_config=StepConfig(lr=1e-2, warmup_steps=2, ema_decay=0.9),
    loop=loop.LoopConfig(
      steps=steps, batch_size=8, steps_per_call=2, log_every=2, checkpoint_every=4, seed=3
    ),
    train_iter=toy_iter(seed=3),
    workdir=workdir,
    config={"toy": True},
    on_log=on_log,
  )
  print(
    "DIGEST", training.params_digest(result.state.params), training.params_digest(result.state.ema)
  )


if __name__ == "__main__":
  main()
