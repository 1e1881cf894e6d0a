"""A training split held on the accelerators, batched by gathering rows on device.

The host then only computes the batch's row indices (`batch_order.batch_indices`, a
pure function of seed and step, so resume stays exact) and ships a few hundred
int32s per step instead of the images. Images stay uint8 (4x less memory than
float32) and are scaled to the model's range inside the jitted gather.

Not imported by `gan_jax.data` because it needs JAX; that package stays NumPy-only.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from gan_jax import parallel
from gan_jax.data import batch_order
from gan_jax.data import sources


def _replicate_on_mesh(array: np.ndarray, mesh: Mesh) -> jax.Array:
  """Places the same host array on every device of the mesh (multi-process safe)."""
  sharding = parallel.replicated(mesh)
  return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


class DeviceDataset:
  """uint8 images and int32 labels replicated on a mesh, served as sharded float batches.

  Args:
    images: uint8 [N, H, W, C] (unscaled).
    labels: int [N].
    mesh: the ('data',) mesh the batches are sharded over.
    output_range: (lo, hi) the images are scaled to, as `sources.scale_images` does.
  """

  def __init__(self, images: np.ndarray, labels: np.ndarray, mesh: Mesh, output_range: Sequence[float]):
    if images.dtype != np.uint8:
      raise ValueError(f"DeviceDataset expects uint8 images, got {images.dtype}")
    if len(images) != len(labels):
      raise ValueError(f"{len(images)} images but {len(labels)} labels")
    lo, hi = sources.check_output_range(output_range)
    self.num_examples = len(labels)
    self.mesh = mesh
    self._images = _replicate_on_mesh(np.ascontiguousarray(images), mesh)
    self._labels = _replicate_on_mesh(np.asarray(labels, np.int32), mesh)

    def gather(images, labels, rows):
      u = jnp.take(images, rows, axis=0).astype(jnp.float32) / 255.0
      return {"image": lo * (1.0 - u) + hi * u, "label": jnp.take(labels, rows, axis=0)}

    # Batches are [num_steps, B, ...]: sharded along axis 1, the examples.
    self._gather = jax.jit(gather, out_shardings=parallel.batch_sharding(mesh, 1))

  def rows(self, steps: Sequence[int], batch_size: int, seed: int) -> np.ndarray:
    """This process's row indices of the global batches `steps`: int32 [len(steps), B_local]."""
    per_step = [batch_order.process_slice(
        batch_order.batch_indices(s, num_examples=self.num_examples, batch_size=batch_size, seed=seed),
        jax.process_index(), jax.process_count()) for s in steps]
    return np.stack(per_step).astype(np.int32)

  def gather(self, rows: np.ndarray) -> dict[str, jax.Array]:
    """The batches of global row indices `rows` [num_batches, B] (this process's slice of each), sharded."""
    local = np.stack([batch_order.process_slice(r, jax.process_index(), jax.process_count()) for r in rows])
    return self._gather(self._images, self._labels, parallel.shard_batch(local.astype(np.int32), self.mesh,
                                                                         batch_axis=1))

  def batches(self, steps: Sequence[int], batch_size: int, seed: int) -> dict[str, jax.Array]:
    """The global batches `steps` stacked: {'image': [len(steps), B, H, W, C], 'label': [len(steps), B]}.

    Equal to stacking `batch_order.InMemoryDataset.batch(s, ...)` for s in `steps` on
    the scaled images, sharded along the batch axis.
    """
    rows = parallel.shard_batch(self.rows(steps, batch_size, seed), self.mesh, batch_axis=1)
    return self._gather(self._images, self._labels, rows)
