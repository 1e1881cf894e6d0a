"""Data parallelism as global-view `jax.jit` over a 1-D ('data',) device mesh.

The batch is sharded along its example axis, the train state is replicated and
donated. XLA inserts the gradient all-reduce itself, and BatchNorm statistics are
computed over the global batch, so a sharded step computes what a single-device
step computes on the same global batch.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Callable, Iterator, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"
_MESH_DEVICES: contextvars.ContextVar[tuple[jax.Device, ...] | None] = contextvars.ContextVar(
    "gan_jax_mesh_devices", default=None)


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
  """Starts multi-process JAX; with no arguments it auto-detects (TPU VM, SLURM, ...).

  Call once per process before any other JAX call. A single-process run skips it.
  """
  kwargs = {}
  if coordinator_address:
    kwargs = dict(coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id)
  jax.distributed.initialize(**kwargs)


@contextlib.contextmanager
def use_devices(devices: Sequence[jax.Device]) -> Iterator[None]:
  """Runs started inside the context build their mesh over `devices` only, not over every device.

  For runs that share one host's devices, and for tests: on a CPU, a small run on 8 fake devices
  spends much of its time dispatching 8 shards to 2 cores, and the sharding tests need those 8.
  Every process of a multi-process run must pass the same global devices. Like JAX's own config
  contexts, the choice holds in the calling thread (a context variable).
  """
  devices = tuple(devices)
  if not devices:
    raise ValueError("use_devices needs at least one device")
  token = _MESH_DEVICES.set(devices)
  try:
    yield
  finally:
    _MESH_DEVICES.reset(token)


def mesh_devices() -> list[jax.Device]:
  """The devices a run's mesh spans: every device of every process, or those of the enclosing `use_devices`."""
  chosen = _MESH_DEVICES.get()
  return jax.devices() if chosen is None else list(chosen)


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh named ('data',) over `devices` (by default `mesh_devices()`: all devices of all processes)."""
  devices = mesh_devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, batch_axis: int = 0) -> NamedSharding:
  """Sharding that splits axis `batch_axis` across the 'data' mesh axis."""
  return NamedSharding(mesh, P(*([None] * batch_axis), DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  """Raises ValueError unless the global batch divides evenly over the mesh's devices."""
  num_devices = mesh.devices.size
  if batch_size % num_devices:
    raise ValueError(f"batch_size={batch_size} is not divisible by the number of devices ({num_devices}); "
                     f"use a multiple of {num_devices}")


def local_batch_size(global_batch_size: int) -> int:
  """Rows of the global batch that this process loads."""
  if global_batch_size % jax.process_count():
    raise ValueError(f"batch_size={global_batch_size} is not divisible by the number of processes "
                     f"({jax.process_count()})")
  return global_batch_size // jax.process_count()


def shard_batch(local_batch: Any, mesh: Mesh, batch_axis: int = 0) -> Any:
  """Assembles global arrays from this process's rows of every leaf (multi-host safe)."""
  sharding = batch_sharding(mesh, batch_axis)

  def to_global(x):
    x = np.asarray(x)
    global_shape = list(x.shape)
    global_shape[batch_axis] *= jax.process_count()
    return jax.make_array_from_process_local_data(sharding, x, tuple(global_shape))

  return jax.tree.map(to_global, local_batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places a pytree fully replicated on the mesh."""
  return jax.device_put(tree, replicated(mesh))


def stack_members(trees: Sequence[Any]) -> Any:
  """Pytrees of one structure stacked on a new leading member axis (models trained as one vmapped program)."""
  return jax.tree.map(lambda *xs: jax.numpy.stack(xs), *trees)


def member(tree: Any, k: int) -> Any:
  """Member k of a pytree stacked by `stack_members`."""
  return jax.tree.map(lambda x: x[k], tree)


def data_parallel_jit(step_fn: Callable, mesh: Mesh, batch_axis: int = 0, donate_state: bool = True,
                      replicated_args: int = 0) -> Callable:
  """jit(step_fn(state, batch, *frozen) -> (state, metrics)) with replicated state and a sharded batch.

  `replicated_args` trailing arguments (frozen parameters, say) are replicated inputs: passed as
  arguments, not closed over, so the compiled step does not depend on their values.
  """
  rep = replicated(mesh)
  return jax.jit(step_fn, in_shardings=(rep, batch_sharding(mesh, batch_axis)) + (rep,) * replicated_args,
                 out_shardings=(rep, rep), donate_argnums=(0,) if donate_state else ())
