"""CycleGAN's history pool: fill, the 0.5 swap once full, exact restore from a real Orbax checkpoint."""
import chex
import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import checkpoint
from gan_jax.translation import pool as pool_lib

SHAPE = (2, 2, 1)


def numbered(start, count):
  """Images whose every pixel is their number, so an output tells which image it is."""
  return jnp.broadcast_to(jnp.arange(start, start + count, dtype=jnp.float32)[:, None, None, None],
                          (count,) + SHAPE)


def test_filling_stores_and_returns_each_new_image():
  pool = pool_lib.init_pool(5, SHAPE)
  pool, out = pool_lib.query(pool, numbered(1, 3), jax.random.PRNGKey(0))
  chex.assert_trees_all_equal(out, numbered(1, 3))
  pool, out = pool_lib.query(pool, numbered(4, 3), jax.random.PRNGKey(1))
  chex.assert_trees_all_equal(out, numbered(4, 3))
  assert int(pool.count) == 5
  np.testing.assert_array_equal(np.asarray(pool.images[:, 0, 0, 0]), [1, 2, 3, 4, 5])  # image 6 found it full


def test_a_full_pool_returns_stored_images_half_the_time_and_keeps_the_new_ones():
  capacity, batch, rounds = 10, 50, 40
  pool = pool_lib.init_pool(capacity, SHAPE)
  pool, _ = pool_lib.query(pool, numbered(0, capacity), jax.random.PRNGKey(0))
  query = jax.jit(pool_lib.query)
  from_pool = 0
  next_id = capacity
  for r in range(rounds):
    before = set(np.asarray(pool.images[:, 0, 0, 0]).astype(int).tolist())
    new = numbered(next_id, batch)
    pool, out = query(pool, new, jax.random.PRNGKey(r + 1))
    ids = np.asarray(out[:, 0, 0, 0]).astype(int)
    fresh = ids == np.arange(next_id, next_id + batch)
    # what is not the new image is an image stored earlier (or one this batch swapped in)
    assert all(i in before or next_id <= i < next_id + batch for i in ids[~fresh])
    from_pool += int((~fresh).sum())
    next_id += batch
  share = from_pool / (rounds * batch)
  assert 0.45 < share < 0.55, share
  assert int(pool.count) == capacity
  assert np.asarray(pool.images[:, 0, 0, 0]).min() >= capacity  # every first image was swapped out by now


def test_capacity_zero_passes_images_through():
  pool = pool_lib.init_pool(0, SHAPE)
  new = numbered(3, 4)
  _, out = pool_lib.query(pool, new, jax.random.PRNGKey(0))
  chex.assert_trees_all_equal(out, new)


def test_pool_is_restored_exactly_and_then_draws_the_same(tmp_path):
  pool = pool_lib.init_pool(4, SHAPE)
  pool, _ = pool_lib.query(pool, numbered(0, 6), jax.random.PRNGKey(0))
  ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"))
  ckpt.save(1, {"pool": pool})
  ckpt.wait()
  restored = checkpoint.Checkpointer(str(tmp_path / "ckpt")).restore({"pool": pool_lib.init_pool(4, SHAPE)})["pool"]
  chex.assert_trees_all_equal(jax.device_get(restored), jax.device_get(pool))
  key = jax.random.PRNGKey(7)
  chex.assert_trees_all_equal(pool_lib.query(restored, numbered(10, 8), key), pool_lib.query(pool, numbered(10, 8), key))
