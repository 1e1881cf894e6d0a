"""Real Orbax checkpoints of a GAN train state: round trip, keep-last-N, sharded restore."""
from typing import Any

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import checkpoint
from gan_jax import models
from gan_jax import parallel
from gan_jax.train import gan_step


def state_init():
  """key -> a small DCGAN's train state."""
  gan = models.build_gan("dcgan", image_shape=(28, 28, 1), num_classes=10, width=8)
  tx = gan_step.make_optimizer(2e-4, 0.5, 0.999)
  return lambda key: gan_step.init_train_state(gan, tx, tx, key, (28, 28, 1))


def make_state(seed=0):
  return state_init()(jax.random.PRNGKey(seed))


def test_round_trip_restores_exact_state(tmp_path):
  state = make_state().replace(step=jnp.array(7, jnp.int32))
  ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"))
  assert ckpt.latest_step() is None
  ckpt.save(7, state)
  ckpt.wait()
  restored = checkpoint.Checkpointer(str(tmp_path / "ckpt")).restore(make_state(seed=1))
  chex.assert_trees_all_equal(jax.device_get(restored), jax.device_get(state))


def test_abstract_state_is_a_restore_target_on_the_first_device(tmp_path):
  state = make_state().replace(step=jnp.array(3, jnp.int32))
  ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"), async_save=False)
  ckpt.save(3, state)
  abstract = checkpoint.abstract_state(state_init(), jax.random.PRNGKey(5))
  assert jax.tree.structure(abstract) == jax.tree.structure(state)
  for leaf, real in zip(jax.tree.leaves(abstract), jax.tree.leaves(state)):
    assert isinstance(leaf, jax.ShapeDtypeStruct) and (leaf.shape, leaf.dtype) == (real.shape, real.dtype)
    assert leaf.sharding.device_set == {jax.local_devices()[0]}
  chex.assert_trees_all_equal(jax.device_get(ckpt.restore(abstract)), jax.device_get(state))
  ckpt.close()


def test_keeps_only_the_last_checkpoints(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"), max_to_keep=2)
  state = make_state()
  for step in (1, 2, 3):
    ckpt.save(step, state.replace(step=jnp.array(step, jnp.int32)))
  ckpt.wait()
  assert ckpt.all_steps() == [2, 3]
  restored, step = ckpt.restore_or(state)
  assert step == 3 and int(restored.step) == 3


def test_restore_or_returns_the_given_state_without_checkpoints(tmp_path):
  state = make_state()
  restored, step = checkpoint.Checkpointer(str(tmp_path / "empty")).restore_or(state)
  assert step is None and restored is state


def test_restore_keeps_the_replicated_sharding(tmp_path):
  mesh = parallel.make_mesh()
  state = parallel.replicate(make_state(), mesh)
  ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"))
  ckpt.save(1, state)
  ckpt.wait()
  restored = ckpt.restore(state)
  leaf = jax.tree.leaves(restored)[0]
  assert leaf.sharding.is_equivalent_to(parallel.replicated(mesh), leaf.ndim)
  np.testing.assert_array_equal(np.asarray(jax.tree.leaves(restored.g_params)[0]),
                                np.asarray(jax.tree.leaves(state.g_params)[0]))


def test_small_replicated_arrays_are_written_whole_and_restore_exactly(tmp_path):
  """Below MIN_REPLICA_SLICE_BYTES a replicated array is one chunk, not one slice per device."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  mesh = parallel.make_mesh()
  assert mesh.size == 8
  state = parallel.replicate({"w": jnp.arange(64 * 48, dtype=jnp.float32).reshape(64, 48)}, mesh)
  ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"))
  ckpt.save(1, state)
  ckpt.wait()
  metadata = ocp.StandardCheckpointer().metadata(str(tmp_path / "ckpt" / "1" / "default")).item_metadata.tree
  assert metadata["w"].storage.chunk_shape == (64, 48)  # replica-parallel writes would give (8, 48)
  np.testing.assert_array_equal(np.asarray(ckpt.restore(state)["w"]), np.asarray(state["w"]))


@flax.struct.dataclass
class _StateBefore:
  step: jax.Array
  params: dict


@flax.struct.dataclass
class _StateAfter:  # the same state after a release added an optional field
  step: jax.Array
  params: dict
  average: Any = None


def test_checkpoint_from_before_an_optional_field_was_added_restores(tmp_path):
  params = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}
  ckpt = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  ckpt.save(7, _StateBefore(step=jnp.array(7), params=params))
  template = _StateAfter(step=jnp.array(0), params=jax.tree.map(jnp.zeros_like, params))
  restored, step = ckpt.restore_or(template)
  assert step == 7 and isinstance(restored, _StateAfter) and restored.average is None
  chex.assert_trees_all_close(restored.params, params)
  assert int(restored.step) == 7
  # A field the state really uses cannot be made up: that mismatch still fails.
  with pytest.raises(ValueError):
    ckpt.restore(template.replace(average=jnp.zeros(3)), 7)
  ckpt.close()
