"""The pix2pix and CycleGAN train steps: data-parallel equivalence, the objectives' terms, the NaN guard."""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import losses
from gan_jax import parallel
from gan_jax.translation import step as step_lib

BATCH, SIDE = 16, 16


def setup(method, **objective):
  translator = step_lib.build_translator(method, side=SIDE, channels_a=1, channels_b=2 if method == "pix2pix" else 1,
                                         width_g=4, width_d=4, patch_size=16, num_blocks=1)
  tx = step_lib.make_optimizer(1e-3, 0.5, 0.999, num_steps=4, decay_steps=2)
  state = jax.jit(lambda k: step_lib.init_state(translator, tx, tx, k, pool_size=12))(jax.random.PRNGKey(0))
  return translator, step_lib.make_train_step(translator, step_lib.Objective(**objective), tx, tx), state


@functools.lru_cache(maxsize=None)
def single_device(method, loss):
  """The single-device program of the sharded test, shared by the tests below (one compile per method)."""
  translator, step_fn, state = setup(method, loss=loss)
  mesh = parallel.make_mesh(jax.devices()[:1])
  return (translator, parallel.data_parallel_jit(step_fn, mesh, batch_axis=1, donate_state=False),
          parallel.replicate(jax.device_get(state), mesh))


def batch(step, translator):
  rng = np.random.default_rng(step)
  return {d: rng.uniform(-1, 1, (1, BATCH, SIDE, SIDE, translator.channels[d])).astype(np.float32) for d in "ab"}


def run(step_fn, translator, state, mesh, num_steps=3, jitted=None):
  mesh = mesh or parallel.make_mesh(jax.devices()[:1])
  jitted = jitted or parallel.data_parallel_jit(step_fn, mesh, batch_axis=1, donate_state=False)
  state = parallel.replicate(jax.device_get(state), mesh)
  history = []
  for i in range(num_steps):
    state, metrics = jitted(state, parallel.shard_batch(batch(i, translator), mesh, batch_axis=1))
    history.append(jax.device_get(metrics))
  return jax.device_get(state), history


@pytest.mark.parametrize("method,loss", [("pix2pix", "non_saturating"), ("cyclegan", "least_squares")])
def test_sharded_step_matches_single_device(method, loss):
  translator, single_step, state = single_device(method, loss)
  single, single_hist = run(None, translator, state, None, jitted=single_step)
  _, step_fn, _ = setup(method, loss=loss)
  sharded, sharded_hist = run(step_fn, translator, state, parallel.make_mesh())
  assert len(jax.devices()) == 8
  chex.assert_trees_all_close(sharded.g_params, single.g_params, atol=1e-5, rtol=1e-4)
  chex.assert_trees_all_close(sharded.d_params, single.d_params, atol=1e-5, rtol=1e-4)
  chex.assert_trees_all_close(sharded.pools, single.pools, atol=1e-5, rtol=1e-4)
  for a, b in zip(single_hist, sharded_hist):
    chex.assert_trees_all_close(a, b, atol=1e-4, rtol=1e-4)
  assert int(single.step) == 3 and int(single.health["nonfinite_steps"]) == 0


def test_pix2pix_generator_loss_is_gan_plus_weighted_l1():
  translator, step, state = single_device("pix2pix", "non_saturating")  # lambda_L1 = 100
  _, metrics = step(state, batch(0, translator))
  chex.assert_trees_all_close(metrics["g_loss"], metrics["g_gan"] + 100.0 * metrics["g_l1"], rtol=1e-5)
  # L1 of the step's own output against B, recomputed with the same dropout key
  key = jax.random.split(jax.random.fold_in(state.rng, state.step))[0]
  b = batch(0, translator)
  # Jitted: op by op, the U-Net compiles some hundred one-op programs.
  fake = jax.jit(lambda p: step_lib.translate(translator, p, "ab", b["a"][0], train=True, key=key))(state.g_params)
  chex.assert_trees_all_close(metrics["g_l1"], losses.l1_loss(fake, b["b"][0]), rtol=1e-5)


def test_cyclegan_generator_loss_has_gan_cycle_and_identity_terms():
  translator, step, state = single_device("cyclegan", "least_squares")  # gan 1, cycle 10, identity 0.5 x 10
  _, metrics = step(state, batch(0, translator))
  expected = 1.0 * metrics["g_gan"] + 10.0 * metrics["g_cycle"] + 5.0 * metrics["g_identity"]
  chex.assert_trees_all_close(metrics["g_loss"], expected, rtol=1e-5)
  assert int(jax.device_get(state.pools["a"].count)) == 0
  new_state, _ = step(state, batch(0, translator))
  assert int(new_state.pools["a"].count) == 12  # 16 fakes offered to a 12-slot pool


def test_non_finite_update_is_dropped_and_counted():
  translator, step, state = single_device("cyclegan", "least_squares")
  bad = batch(0, translator)
  bad["a"][0, 0, 0, 0, 0] = np.nan
  new_state, metrics = step(state, bad)
  for field in ("g_params", "d_params", "g_opt_state", "d_opt_state", "pools"):
    chex.assert_trees_all_equal(getattr(new_state, field), getattr(state, field))
  assert int(new_state.step) == int(state.step) + 1
  assert int(new_state.health["nonfinite_steps"]) == 1 and float(metrics["nonfinite"]) == 1.0


def test_learning_rate_is_constant_then_decays_linearly_to_zero():
  tx = step_lib.make_optimizer(1.0, 0.0, 0.0, num_steps=10, decay_steps=4)
  params = {"w": jnp.zeros(())}
  opt_state = tx.init(params)
  steps = []
  for _ in range(10):
    # Adam with b1 = b2 = 0 moves by lr * sign(grad): the step size is the learning rate.
    updates, opt_state = tx.update({"w": jnp.ones(())}, opt_state, params)
    steps.append(-float(updates["w"]))
  np.testing.assert_allclose(steps, [1, 1, 1, 1, 1, 1, 1.0, 0.75, 0.5, 0.25], atol=1e-5)


def test_unknown_method_and_generator_are_one_line_errors():
  with pytest.raises(ValueError, match="choose one of: pix2pix, cyclegan"):
    step_lib.get_method("unit")
  with pytest.raises(ValueError, match="choose one of: unet, resnet"):
    step_lib.build_translator("pix2pix", side=32, channels_a=1, channels_b=1, generator="vit")
