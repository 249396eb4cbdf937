"""Data parallelism: the batch's lanes split over devices, on one host or several.

A run on N devices builds a 1-D `Mesh` of N devices with one axis, 'data'. Parameters,
optimiser state and the dropout key are replicated on every device (`P()`); the lanes'
recurrent state (TrainState.model_state, leading axis B) and each Batch (inputs, targets,
reset: leading axis B) are split along 'data' (`P('data')`), B/N lanes per device. The
jitted training step is the same function as on one device: XLA partitions it from the
shardings of its arguments and all-reduces the summed loss and the gradients itself.

Global arrays are built with `jax.make_array_from_callback` from a full host copy that
every process computes identically (same seed, same lane batcher), each process filling
only the shards of its own devices, so the same code runs on several hosts after
`initialize_distributed`. Evaluation and sampling run on one device from a host copy of
the replicated parameters (`to_host`).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dncjax import pytrees

AXIS = "data"
CPU_HINT = ("on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N before the start "
            "gives N devices")


def initialize_distributed(coordinator: str | None, num_processes: int | None,
                           process_id: int | None) -> bool:
  """jax.distributed.initialize for a multi-host run when all three are given (False and
  nothing done when none is). Must run before anything touches a device."""
  given = [x is not None for x in (coordinator, num_processes, process_id)]
  if not any(given):
    return False
  if not all(given):
    raise ValueError("multi-host runs need all three of --coordinator HOST:PORT, "
                     "--num_processes N and --process_id I")
  if ":" not in coordinator:
    raise ValueError(f"--coordinator must be HOST:PORT, got {coordinator!r}")
  if num_processes < 1 or not 0 <= process_id < num_processes:
    raise ValueError(f"need num_processes >= 1 and 0 <= process_id < num_processes, "
                     f"got {num_processes} and {process_id}")
  jax.distributed.initialize(coordinator, num_processes=num_processes, process_id=process_id)
  return True


def device_count(devices: int | str) -> int:
  """The number of devices `devices` asks for ('all' or a count), checked."""
  available = jax.device_count()
  if devices == "all":
    return available
  try:
    n = int(devices)
  except ValueError:
    raise ValueError(f"--devices must be a positive integer or 'all', got {devices!r}") from None
  if n < 1:
    raise ValueError(f"--devices must be a positive integer or 'all', got {devices!r}")
  if n > available:
    raise ValueError(f"--devices {n}: only {available} device(s) here (jax.device_count() = "
                     f"{available}; {CPU_HINT})")
  if jax.process_count() > 1 and n != available:
    raise ValueError(f"--devices {n}: a multi-host run uses every device of every process "
                     f"(--devices all = {available})")
  return n


def make_mesh(devices: int | str, batch_size: int) -> Mesh | None:
  """The 'data' mesh of a run on `devices` devices; None for one device in one process
  (then nothing is sharded, exactly as without this module)."""
  n = device_count(devices)
  if batch_size % n:
    raise ValueError(f"batch size {batch_size} is not divisible by {n} devices")
  if n == 1 and jax.process_count() == 1:
    return None
  return Mesh(np.asarray(jax.devices()[:n]), (AXIS,))


def is_primary() -> bool:
  """Process 0: the one that prints and writes the run's files (all of them checkpoint)."""
  return jax.process_index() == 0


def _global(tree: Any, sharding: NamedSharding) -> Any:
  def put(leaf):
    host = np.asarray(leaf)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

  return jax.tree.map(put, tree)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Every leaf whole on every device of `mesh`."""
  return _global(tree, NamedSharding(mesh, PartitionSpec()))


def shard(tree: Any, mesh: Mesh) -> Any:
  """Every leaf [B, ...] split along B over the 'data' axis."""
  return _global(tree, NamedSharding(mesh, PartitionSpec(AXIS)))


def shard_train_state(state: pytrees.TrainState, mesh: Mesh) -> pytrees.TrainState:
  """Parameters, optimiser state and key replicated; recurrent state [B, ...] split."""
  return pytrees.TrainState(replicate(state.params, mesh), replicate(state.opt_state, mesh),
                          shard(state.model_state, mesh), replicate(state.key, mesh))


def shard_batch(batch: pytrees.Batch, mesh: Mesh) -> pytrees.Batch:
  """A host Batch (inputs, targets, reset: leading axis B) split over 'data'."""
  return pytrees.Batch(*(shard(part, mesh) for part in batch))


def to_host(tree: Any) -> Any:
  """NumPy copies of (possibly global) arrays; a leaf split over other hosts is gathered,
  so every process must call this for such a leaf."""
  def get(leaf):
    if not isinstance(leaf, jax.Array) or leaf.is_fully_addressable:
      return np.asarray(leaf)
    if leaf.is_fully_replicated:
      return np.asarray(leaf.addressable_data(0))
    return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))

  return jax.tree.map(get, tree)


def from_primary(compute: Callable[[], float]) -> float:
  """`compute()` run on process 0 only, its float handed to every process bit for bit
  (all processes must call this; with one process it just calls `compute`)."""
  if jax.process_count() == 1:
    return float(compute())
  words = np.zeros(2, np.uint32)
  if is_primary():
    words = np.frombuffer(np.float64(compute()).tobytes(), np.uint32).copy()
  words = np.asarray(multihost_utils.broadcast_one_to_all(words), np.uint32)
  return float(np.frombuffer(words.tobytes(), np.float64)[0])
