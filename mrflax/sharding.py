"""Device meshes and shardings: data parallel today, rules as data for FSDP later.

One compiled step, explicit shardings, no ``pmap``: parameters are replicated and the batch is
sharded over the ``data`` axis. Multi-host batches are assembled from process-local data.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

#: The name of the mesh axis that batches are sharded over.
DATA_AXIS = "data"


#: The environment variables that describe a multi-process run to :func:`initialize_distributed`.
DISTRIBUTED_ENV = ("MRFLAX_COORDINATOR", "MRFLAX_NUM_PROCESSES", "MRFLAX_PROCESS_ID")


def distributed_env(environ: Mapping[str, str] | None = None) -> tuple[str, int, int] | None:
  """``(coordinator_address, num_processes, process_id)`` from ``MRFLAX_*``, or ``None``.

  ``None`` when none of :data:`DISTRIBUTED_ENV` is set. A partial or malformed description
  raises a ``ValueError`` whose one-line message names the variables.

  Examples:
    >>> distributed_env({})
    >>> distributed_env({"MRFLAX_COORDINATOR": "10.0.0.1:1234", "MRFLAX_NUM_PROCESSES": "2",
    ...                  "MRFLAX_PROCESS_ID": "1"})
    ('10.0.0.1:1234', 2, 1)
    >>> distributed_env({"MRFLAX_NUM_PROCESSES": "2"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: multi-process run: MRFLAX_COORDINATOR, MRFLAX_PROCESS_ID not set (set all of ...)
  """
  import os

  env = os.environ if environ is None else environ
  values = {name: env.get(name, "").strip() for name in DISTRIBUTED_ENV}
  if not any(values.values()):
    return None
  usage = (
    "set all of MRFLAX_COORDINATOR (host:port), MRFLAX_NUM_PROCESSES, MRFLAX_PROCESS_ID, or none"
  )
  missing = [name for name, v in values.items() if not v]
  if missing:
    raise ValueError(f"multi-process run: {', '.join(missing)} not set ({usage})")
  coordinator, num, pid = values.values()
  host, _, port = coordinator.rpartition(":")
  if not host or not port.isdigit():
    raise ValueError(f"multi-process run: MRFLAX_COORDINATOR={coordinator!r} is not host:port")
  try:
    num_processes, process_id = int(num), int(pid)
  except ValueError:
    raise ValueError(
      f"multi-process run: MRFLAX_NUM_PROCESSES={num!r} and MRFLAX_PROCESS_ID={pid!r} must be "
      "integers"
    ) from None
  if num_processes < 1 or not 0 <= process_id < num_processes:
    raise ValueError(
      f"multi-process run: need MRFLAX_NUM_PROCESSES >= 1 and 0 <= MRFLAX_PROCESS_ID < "
      f"MRFLAX_NUM_PROCESSES, got {num_processes} and {process_id}"
    )
  return coordinator, num_processes, process_id


def initialize_distributed(
  *,
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  local_device_count: int | None = None,
  cpu_collectives: str = "gloo",
  auto: bool = False,
) -> bool:
  """Joins a multi-process run (``jax.distributed.initialize``) when one is described.

  Without arguments the run is described by the environment variables ``MRFLAX_COORDINATOR``
  (``host:port`` of process 0), ``MRFLAX_NUM_PROCESSES`` and ``MRFLAX_PROCESS_ID``
  (:func:`distributed_env`: all three or none; a partial or malformed set is a ``ValueError``);
  with none of them this is a no-op and returns ``False``. ``auto=True`` calls
  ``jax.distributed.initialize()`` without arguments, so that JAX finds its peers by itself
  (TPU pod slices, SLURM, Open MPI); combining it with explicit arguments or ``MRFLAX_*`` is a
  ``ValueError``. On CPU the collectives go through ``cpu_collectives`` (``"gloo"``), which is
  how the multi-host path is tested on one machine over loopback. Must run before any other JAX
  call.
  """
  explicit = coordinator_address is not None
  env = None if explicit else distributed_env()
  if auto:
    if explicit or env is not None:
      raise ValueError(
        "multi-process run: auto-discovery (--distributed=auto) and MRFLAX_COORDINATOR / "
        "MRFLAX_NUM_PROCESSES / MRFLAX_PROCESS_ID (or explicit arguments) exclude each other"
      )
  elif explicit:
    if num_processes is None or process_id is None:
      raise ValueError("coordinator_address needs num_processes and process_id")
  elif env is None:
    return False
  else:
    coordinator_address, num_processes, process_id = env
  if local_device_count is not None:
    jax.config.update("jax_num_cpu_devices", local_device_count)
  jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
  if auto:
    jax.distributed.initialize()
  else:
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


def process_rows(mesh: Mesh, global_batch: int) -> tuple[int, int]:
  """``(start, stop)``: the rows of a ``global_batch`` that live on this process's devices.

  With :func:`batch_sharding`, process ``p`` must pass exactly these rows of every global batch
  to :func:`shard_batch` (``jax.make_array_from_process_local_data``). On one process this is
  ``(0, global_batch)``.

  Examples:
    >>> process_rows(make_mesh(), 8)
    (0, 8)
  """
  check_batch_divisible(global_batch, mesh)
  index_map = batch_sharding(mesh).addressable_devices_indices_map((global_batch,))
  spans = sorted(
    {
      (idx[0].start or 0, global_batch if idx[0].stop is None else idx[0].stop)
      for idx in index_map.values()
    }
  )
  start, stop = spans[0][0], spans[-1][1]
  if any(a[1] != b[0] for a, b in itertools.pairwise(spans)):
    raise ValueError(f"this process's rows of the batch are not contiguous: {spans}")
  return start, stop
