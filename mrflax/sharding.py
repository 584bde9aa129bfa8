"""Device meshes and shardings: data parallel today, rules as data for FSDP later.

One compiled step, explicit shardings, no ``pmap``: parameters are replicated and the batch is
sharded over the ``data`` axis. Multi-host batches are assembled from process-local data.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def initialize_distributed(
  *,
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  local_device_count: int | None = None,
  cpu_collectives: str = "gloo",
) -> bool:
  """Joins a multi-process run (``jax.distributed.initialize``) when one is described.

  Arguments fall back to the environment variables ``MRFLAX_COORDINATOR`` (``host:port``),
  ``MRFLAX_NUM_PROCESSES`` and ``MRFLAX_PROCESS_ID``; with none of them this is a no-op and
  returns ``False`` (on TPU pods and SLURM, ``jax.distributed.initialize()`` finds its peers by
  itself: call it directly there). On CPU the collectives go through ``cpu_collectives``
  (``"gloo"``), which is how the multi-host path is tested on one machine over loopback.
  Must run before any other JAX call.
  """
  import os

  coordinator_address = coordinator_address or os.environ.get("MRFLAX_COORDINATOR")
  if coordinator_address is None:
    return False
  num_processes = num_processes or int(os.environ["MRFLAX_NUM_PROCESSES"])
  if process_id is None:
    process_id = int(os.environ["MRFLAX_PROCESS_ID"])
  if local_device_count is not None:
    jax.config.update("jax_num_cpu_devices", local_device_count)
  jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
  jax.distributed.initialize(
    coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
  )
  return True


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D ``data`` mesh over the first ``num_devices`` devices (default: all of them).

  Axis type ``Auto`` (``jax.make_mesh`` defaults to ``Explicit`` in this JAX, which turns some
  ordinary ops into sharding errors).
  """
  n = jax.device_count() if num_devices is None else num_devices
  if not 1 <= n <= jax.device_count():
    raise ValueError(f"num_devices must be in 1..{jax.device_count()}, got {n}")
  devices = np.asarray(jax.devices()[:n])
  return Mesh(devices, (DATA_AXIS,), axis_types=(AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array (parameters, optimizer state, scalars)."""
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, *, leading: int = 0) -> NamedSharding:
  """Shards axis ``leading`` (the batch axis; 1 for ``[k, batch, ...]`` stacks) over ``data``."""
  return NamedSharding(mesh, P(*([None] * leading), DATA_AXIS))


def check_batch_divisible(global_batch: int, mesh: Mesh) -> None:
  """The global batch must split evenly over the data axis."""
  n = mesh.shape[DATA_AXIS]
  if global_batch % n:
    raise ValueError(
      f"global batch {global_batch} is not divisible by the {n} devices of the "
      f"'{DATA_AXIS}' mesh axis; use a multiple of {n}"
    )


def shard_batch(batch: Any, mesh: Mesh, *, leading: int = 0) -> Any:
  """Assembles global arrays from this process's part of the batch (any pytree of numpy arrays).

  On one process this is ``jax.device_put`` with the batch sharding; on several, each process
  passes its own rows and :func:`jax.make_array_from_process_local_data` builds the global array.
  """
  sharding = batch_sharding(mesh, leading=leading)
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  return jax.tree.map(
    lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch
  )
