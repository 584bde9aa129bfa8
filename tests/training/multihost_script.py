"""One process of a two-process toy run (jax.distributed on loopback, gloo CPU collectives).

python -m tests.training.multihost_script PROCESS_ID PORT WORKDIR OUT.npz
Each process holds 2 of the 4 CPU devices and loads its own half of every global batch.
"""

import sys


def main(pid: int, port: str, workdir: str, out: str) -> None:
  from mrflax import sharding

  sharding.initialize_distributed(
    coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=pid, local_device_count=2
  )
  import jax
  import numpy as np

  from mrflax import data, training
  from mrflax.training import loop
  from tests.training.multihost_test import LOOP, STEP
  from tests.training.toy import Toy, toy_loss, toy_source

  assert jax.process_count() == 2 and jax.device_count() == 4 and jax.local_device_count() == 2
  it = iter(
    data.train_dataset(
      toy_source(), global_batch=LOOP.batch_size, seed=LOOP.seed, preprocess=lambda ex: ex
    )
  )  # process index/count from JAX
  result = loop.fit(
    model_fn=lambda rngs: Toy(rngs=rngs),
    loss_fn=toy_loss,
    step_config=STEP,
    loop=LOOP,
    train_iter=it,
    workdir=workdir,
  )
  leaves = [training.host_array(x) for x in jax.tree.leaves(result.state.params)]
  if pid == 0:
    np.savez(out, *leaves)
  print("DONE", pid, training.params_digest(result.state.params), flush=True)
  jax.distributed.shutdown()


if __name__ == "__main__":
  main(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4])
