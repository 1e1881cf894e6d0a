"""CycleGAN's history of generated images, as a pure part of the train state.

Shrivastava et al. (CVPR 2017) update the discriminator with generated images drawn
from a buffer of earlier generators' outputs, not only the newest, which damps
oscillation; CycleGAN keeps 50. Per image of a batch: while the pool is not full the
image is stored and passed on; once full, with probability 0.5 a random stored image
is passed on and replaced by the new one, otherwise the new image is passed on.

The pool is arrays and a counter (a pytree), so it is checkpointed with the rest of
the state and a resumed run draws exactly what an uninterrupted one would.
"""
from __future__ import annotations

import flax
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class HistoryPool:
  """Stored images [capacity, H, W, C] and how many slots are filled."""
  images: jax.Array
  count: jax.Array

  @property
  def capacity(self) -> int:
    return self.images.shape[0]


def init_pool(capacity: int, image_shape) -> HistoryPool:
  """An empty pool; capacity 0 makes `query` return its input unchanged."""
  return HistoryPool(jnp.zeros((capacity,) + tuple(image_shape), jnp.float32), jnp.zeros((), jnp.int32))


def query(pool: HistoryPool, images: jax.Array, key: jax.Array) -> tuple[HistoryPool, jax.Array]:
  """The images to show the discriminator for a batch of new `images`, and the updated pool.

  Args:
    pool: the current pool.
    images: [B, H, W, C] newly generated images (gradients are stopped).
    key: randomness of this query (fold the step in for exact resume).

  Returns:
    (pool, [B, H, W, C]): each output is the new image or, once the pool is full and
    with probability 0.5, an earlier one that the new image replaces.
  """
  images = jax.lax.stop_gradient(images)
  if pool.capacity == 0:
    return pool, images

  def one(carry, inputs):
    stored, count = carry
    image, image_key = inputs
    swap_key, slot_key = jax.random.split(image_key)
    full = count >= pool.capacity
    swap = full & (jax.random.uniform(swap_key) < 0.5)
    slot = jnp.where(full, jax.random.randint(slot_key, (), 0, pool.capacity), jnp.minimum(count, pool.capacity - 1))
    out = jnp.where(swap, stored[slot], image)
    write = swap | ~full
    stored = stored.at[slot].set(jnp.where(write, image, stored[slot]))
    return (stored, jnp.where(full, count, count + 1)), out

  (stored, count), outputs = jax.lax.scan(one, (pool.images, pool.count),
                                          (images, jax.random.split(key, images.shape[0])))
  return HistoryPool(stored, count), outputs
