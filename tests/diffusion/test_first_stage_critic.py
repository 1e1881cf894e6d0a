"""The first stage's optional patch discriminator: adaptive weight, start step, sharding (test_train.py runs it whole)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import ldm_mnist
from gan_jax import losses
from gan_jax import parallel
from gan_jax.diffusion import driver
from gan_jax.diffusion import steps
from gan_jax.models import kl_autoencoder
from gan_jax.models import translation

IMAGE_SHAPE = (12, 12, 1)


@pytest.mark.parametrize("a, b, expected", [
    ([3.0, 4.0], [0.0, 1.0], 5.0 / (1.0 + 1e-4)),
    ([0.0, 0.0], [1.0, 0.0], 0.0),
    ([1.0, 0.0], [0.0, 0.0], 1e4),  # clipped: no generator gradient at all
])
def test_adaptive_weight_is_the_clipped_ratio_of_gradient_norms(a, b, expected):
  chex.assert_trees_all_close(steps.adaptive_weight(jnp.array(a), jnp.array(b)), jnp.float32(expected), rtol=1e-6)


def test_output_kernel_is_the_layer_that_writes_the_image():
  model = kl_autoencoder.KLAutoencoder(IMAGE_SHAPE, 2, (8, 16))
  key = jax.random.PRNGKey(0)
  # Jitted: run op by op, init and decode compile a hundred one-op programs.
  params = jax.jit(model.init)(key, jnp.zeros((1,) + IMAGE_SHAPE), key)["params"]
  kernel = kl_autoencoder.output_kernel(params)
  assert kernel.shape[-1] == IMAGE_SHAPE[-1]
  # With that kernel zeroed, every decoded pixel is the layer's bias: no earlier layer reaches the output.
  zeroed = jax.tree.map(lambda x: x, params)
  last = [k for k, v in zeroed["decoder"].items() if v.get("kernel") is kernel][0]
  zeroed["decoder"][last] = {"kernel": jnp.zeros_like(kernel), "bias": jnp.full_like(zeroed["decoder"][last]["bias"], 0.3)}
  decode = jax.jit(lambda p, z: model.apply({"params": p}, z, method=model.decode))
  out = decode(zeroed, jax.random.normal(key, (2, 3, 3, 2)))
  chex.assert_trees_all_close(out, jnp.full_like(out, 0.3))


@pytest.fixture(scope="module")
def setup():
  """One adversarial and one plain first-stage step, jitted once for the module; the critic starts at step 1."""
  model = kl_autoencoder.KLAutoencoder(IMAGE_SHAPE, 2, (8, 16))
  critic = translation.PatchDiscriminator(8, 1)
  tx, critic_tx = optax.adam(1e-3), optax.adam(1e-3, b1=0.5, b2=0.9)
  key = jax.random.PRNGKey(0)
  params = jax.jit(model.init)(key, jnp.zeros((1,) + IMAGE_SHAPE), key)["params"]
  critic_params = jax.jit(critic.init)(jax.random.PRNGKey(1), jnp.zeros((1,) + IMAGE_SHAPE))["params"]
  plain = steps.init_state(params, tx, jax.random.PRNGKey(2))
  state = steps.AdversarialTrainState(**vars(plain), critic_params=critic_params,
                                      critic_opt_state=critic_tx.init(critic_params))
  cfg = steps.FirstStageConfig(disc_weight=0.5, disc_start=1)
  batch = {"image": jax.random.uniform(jax.random.PRNGKey(3), (8,) + IMAGE_SHAPE, minval=-1, maxval=1)}
  step = steps.make_first_stage_step(model, tx, cfg, critic, critic_tx)
  plain_step = jax.jit(steps.make_first_stage_step(model, tx, steps.FirstStageConfig()))
  phases = steps.make_first_stage_phases(model, tx, cfg, critic, critic_tx)
  return model, critic, cfg, state, plain, batch, step, plain_step, phases


def test_before_the_start_step_the_step_is_the_plain_one_and_the_critic_is_frozen(setup):
  _, _, _, state, plain, batch, step, plain_step, _ = setup
  new, metrics = jax.jit(step)(state, batch)
  expected, plain_metrics = plain_step(plain, batch)
  chex.assert_trees_all_close(new.params, expected.params, atol=1e-6)
  chex.assert_trees_all_equal((new.critic_params, new.critic_opt_state), (state.critic_params, state.critic_opt_state))
  assert float(metrics["d_loss"]) == 0.0 and float(metrics["disc_weight"]) == 0.0
  np.testing.assert_allclose(metrics["loss"], plain_metrics["loss"], rtol=1e-6)


def test_from_the_start_step_the_loss_adds_the_weighted_generator_term(setup):
  model, critic, cfg, state, plain, batch, step, plain_step, _ = setup
  state, plain = state.replace(step=jnp.ones((), jnp.int32)), plain.replace(step=jnp.ones((), jnp.int32))
  new, metrics = jax.jit(step)(state, batch)
  images, key = batch["image"], state.step_key()

  def nll(params):
    rec, mean, logvar = model.apply({"params": params}, images, key)
    return steps.first_stage_loss(rec, images, mean, logvar, cfg)[0]

  def g_loss(params):
    rec, _, _ = model.apply({"params": params}, images, key)
    return losses.hinge_generator_loss(critic.apply({"params": state.critic_params}, rec))

  # The reference terms as one program: op by op they compile some 300 one-op programs.
  @jax.jit
  def reference(params):
    weight = 0.5 * steps.adaptive_weight(kl_autoencoder.output_kernel(jax.grad(nll)(params)),
                                         kl_autoencoder.output_kernel(jax.grad(g_loss)(params)))
    return weight, nll(params) + weight * g_loss(params)

  weight, loss = reference(state.params)
  np.testing.assert_allclose(metrics["disc_weight"], weight, rtol=1e-4)
  np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-5)
  assert float(metrics["d_loss"]) > 0
  expected, _ = plain_step(plain, batch)
  assert not np.allclose(kl_autoencoder.output_kernel(new.params), kl_autoencoder.output_kernel(expected.params))
  assert not np.allclose(new.critic_params["logits"]["kernel"], state.critic_params["logits"]["kernel"])


def test_adversarial_step_sharded_over_8_devices_equals_one_device(setup):
  _, _, _, state, _, batch, step, _, _ = setup
  host_state, host_batch = jax.device_get((state, batch))
  mesh = parallel.make_mesh(jax.devices())
  run = parallel.data_parallel_jit(step, mesh)
  sharded = parallel.replicate(host_state, mesh)
  one_device = state  # on one device, through the module's jitted step (its program is compiled once)
  for _ in range(2):
    sharded, metrics = run(sharded, parallel.shard_batch(host_batch, mesh))
    one_device, one_metrics = jax.jit(step)(one_device, batch)
  assert jax.device_count() == 8 and len(jax.tree.leaves(sharded.params)[0].sharding.device_set) == 8
  chex.assert_trees_all_close(jax.device_get((sharded.params, sharded.critic_params, metrics["loss"])),
                              jax.device_get((one_device.params, one_device.critic_params, one_metrics["loss"])),
                              atol=2e-5, rtol=2e-5)


def test_the_two_phases_equal_the_one_program_step_and_are_picked_by_the_step(setup):
  *_, state, _, batch, step, _, phases = setup
  assert phases.start == 1 and phases.at(0) is phases.before_start
  assert phases.at(1) is phases.adversarial and phases.at(7) is phases.adversarial
  for at in (0, 1):
    state_at = state.replace(step=jnp.full((), at, jnp.int32))
    # Two programs sum in different orders; Adam's first update (grad / sqrt(grad^2)) magnifies that.
    chex.assert_trees_all_close(jax.jit(phases.at(at))(state_at, batch), jax.jit(step)(state_at, batch),
                                atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("field, value, message", [
    ("ae_disc_weight", -0.5, "ae_disc_weight must be >= 0, got -0.5"),
    ("ae_disc_loss", "relu", "Unknown loss 'relu'; choose one of: hinge, least_squares"),
    ("ae_disc_layers", 7, r"config.ae_disc_layers must be one of \[1, 2, 3, 4, 5\], got 7"),
    ("ae_disc_start", -1, "ae_disc_start must be >= 0, got -1"),
])
def test_bad_discriminator_fields_are_refused_before_training(field, value, message):
  config = ldm_mnist.get_config("smoke")
  config.ae_disc_weight = 0.5
  config[field] = value
  with pytest.raises(ValueError, match=message):
    driver.validate_config(config)
