"""Diffusion schedules, objective and samplers against their closed forms."""
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.diffusion import objective
from gan_jax.diffusion import sampling
from gan_jax.diffusion import schedule as schedule_lib

SCHEDULES = [("linear", 1000), ("cosine", 1000), ("linear", 50), ("cosine", 20)]


@pytest.mark.parametrize("name, steps", SCHEDULES)
def test_alpha_bar_decreases_strictly_inside_zero_one(name, steps):
  ab = np.asarray(schedule_lib.make(name, steps).alpha_bars, np.float64)
  assert ab.shape == (steps,)
  assert np.all(np.diff(ab) < 0) and ab[0] < 1.0 and ab[-1] > 0.0
  # float32 storage of the betas: agreement to float32 rounding, not exactly.
  chex.assert_trees_all_close(np.cumprod(1.0 - np.asarray(schedule_lib.make(name, steps).betas, np.float64)), ab,
                              atol=1e-5, rtol=1e-4)


def test_linear_schedule_has_the_papers_end_points():
  schedule = schedule_lib.linear(1000)
  assert float(schedule.betas[0]) == pytest.approx(1e-4) and float(schedule.betas[-1]) == pytest.approx(0.02)
  # Ho et al.: alpha_bar_T is about 4e-5 for T = 1000, so x_T is almost pure noise.
  assert float(schedule.alpha_bars[-1]) == pytest.approx(4.04e-5, rel=0.02)


def test_cosine_snr_follows_its_closed_form():
  steps, s = 1000, 0.008
  schedule = schedule_lib.cosine(steps)
  t = np.arange(steps - 10)  # the last steps are clipped at max_beta
  f = lambda u: np.cos((u / steps + s) / (1 + s) * math.pi / 2) ** 2
  ab = f(t + 1.0) / f(0.0)
  chex.assert_trees_all_close(np.asarray(schedule_lib.snr(schedule, jnp.asarray(t))), ab / (1 - ab), rtol=2e-3)


@pytest.mark.parametrize("t", [0, 300, 999])
def test_q_sample_mean_and_variance_match_the_closed_form(t):
  schedule = schedule_lib.linear(1000)
  x0 = jnp.linspace(-1.0, 1.0, 16).reshape(1, 4, 4, 1)
  noise = jax.random.normal(jax.random.PRNGKey(t), (20_000, 4, 4, 1))
  x_t = schedule_lib.q_sample(schedule, jnp.broadcast_to(x0, noise.shape), jnp.full((20_000,), t), noise)
  ab = float(schedule.alpha_bars[t])
  chex.assert_trees_all_close(jnp.mean(x_t, 0), math.sqrt(ab) * x0[0], atol=0.03)
  chex.assert_trees_all_close(jnp.var(x_t, 0), jnp.full((4, 4, 1), 1.0 - ab), atol=0.03)


def _oracle(schedule, x0, prediction):
  """A denoiser that knows x0: returns the true noise (or v) of x_t."""
  def model_fn(x_t, t):
    ab = schedule.alpha_bars[t].reshape(-1, 1, 1, 1)
    eps = (x_t - jnp.sqrt(ab) * x0) / jnp.sqrt(1.0 - ab)
    return eps if prediction == "epsilon" else jnp.sqrt(ab) * eps - jnp.sqrt(1.0 - ab) * x0
  return model_fn


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_loss_is_zero_for_an_oracle_and_positive_otherwise(prediction):
  schedule = schedule_lib.cosine(100)
  x0 = jax.random.uniform(jax.random.PRNGKey(0), (8, 6, 6, 1), minval=-1, maxval=1)
  oracle = objective.denoising_loss(_oracle(schedule, x0, prediction), schedule, x0, jax.random.PRNGKey(1), prediction)
  zero = objective.denoising_loss(lambda x, t: jnp.zeros_like(x), schedule, x0, jax.random.PRNGKey(1), prediction)
  assert float(oracle) < 1e-8
  assert float(zero) > 0.1


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
@pytest.mark.parametrize("sampler, num_steps", [("ddim", 10), ("ddim", 1), ("ddpm", 25), ("ddpm", 100)])
def test_samplers_with_an_oracle_recover_x0(prediction, sampler, num_steps):
  schedule = schedule_lib.linear(100)
  x0 = jax.random.uniform(jax.random.PRNGKey(0), (4, 5, 5, 1), minval=-1, maxval=1)
  x_T = jax.random.normal(jax.random.PRNGKey(2), x0.shape)
  out, trajectory = jax.jit(lambda x, k: sampling.sample(
      _oracle(schedule, x0, prediction), schedule, x, k, num_steps=num_steps, sampler=sampler,
      prediction=prediction, return_trajectory=True))(x_T, jax.random.PRNGKey(3))
  chex.assert_trees_all_close(out, x0, atol=2e-4)
  chex.assert_shape(trajectory, (num_steps,) + x0.shape)


def test_ddim_with_eta_zero_is_deterministic_and_ddpm_is_not():
  schedule = schedule_lib.cosine(50)
  model = lambda x, t: 0.5 * x  # not an oracle: the sampler's own noise then shows in the result
  x_T = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 4, 1))
  run = lambda sampler, seed: sampling.sample(model, schedule, x_T, jax.random.PRNGKey(seed), num_steps=10,
                                              sampler=sampler)
  chex.assert_trees_all_equal(run("ddim", 1), run("ddim", 2))
  assert not np.allclose(run("ddpm", 1), run("ddpm", 2))


def test_guidance_scale_zero_is_unconditional_and_one_is_conditional():
  uncond, cond = jnp.array([1.0, -2.0, 0.5]), jnp.array([3.0, 0.0, 0.5])
  chex.assert_trees_all_close(sampling.guided(uncond, cond, 0.0), uncond)
  chex.assert_trees_all_close(sampling.guided(uncond, cond, 1.0), cond)
  chex.assert_trees_all_close(sampling.guided(uncond, cond, 3.0), jnp.array([7.0, 4.0, 0.5]))


def test_timesteps_descend_evenly_to_zero():
  np.testing.assert_array_equal(sampling.timesteps(1000, 4), [999, 666, 333, 0])
  np.testing.assert_array_equal(sampling.timesteps(5, 5), [4, 3, 2, 1, 0])
  with pytest.raises(ValueError, match=r"sampling steps must lie in \[1, 10\], got 11"):
    sampling.timesteps(10, 11)


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_epsilon_and_x0_are_recovered_from_the_model_output(prediction):
  schedule = schedule_lib.cosine(100)
  x0 = jax.random.normal(jax.random.PRNGKey(0), (3, 4, 4, 1))
  eps = jax.random.normal(jax.random.PRNGKey(1), x0.shape)
  t = jnp.array([0, 50, 99])
  x_t = schedule_lib.q_sample(schedule, x0, t, eps)
  output = objective.target(schedule, x0, t, eps, prediction)
  got_eps, got_x0 = schedule_lib.to_epsilon_and_x0(schedule, x_t, t, output, prediction)
  chex.assert_trees_all_close((got_eps, got_x0), (eps, x0), atol=2e-3)


@pytest.mark.parametrize("call, message", [
    (lambda: schedule_lib.make("sigmoid", 10), "Unknown schedule 'sigmoid'; choose one of: linear, cosine"),
    (lambda: schedule_lib.make("linear", 0), "num_steps must be a positive integer, got 0"),
    (lambda: objective.target(schedule_lib.linear(4), 0, 0, 0, "x0"), "Unknown prediction 'x0'; choose one of: epsilon, v"),
    (lambda: sampling.sample(lambda x, t: x, schedule_lib.linear(4), jnp.zeros((1, 2)), jax.random.PRNGKey(0),
                             num_steps=2, sampler="euler"), "Unknown sampler 'euler'; choose one of: ddpm, ddim"),
])
def test_bad_names_raise_one_line_errors(call, message):
  with pytest.raises(ValueError, match=message):
    call()


def test_denoiser_step_sharded_over_8_devices_equals_one_device():
  import optax  # pylint: disable=g-import-not-at-top
  from gan_jax import parallel  # pylint: disable=g-import-not-at-top
  from gan_jax.diffusion import steps  # pylint: disable=g-import-not-at-top
  from gan_jax.models import unet  # pylint: disable=g-import-not-at-top
  denoiser = unet.ConditionalDenoiser(num_classes=3, out_channels=1, widths=(8, 16), heads=2, context_dim=8)
  schedule, tx = schedule_lib.cosine(50), optax.adam(1e-3)
  step = steps.make_denoiser_step(denoiser, tx, schedule, steps.DenoiserConfig(), num_classes=3)
  init = jax.jit(denoiser.init)  # one program: op by op, the init compiles some 200 one-op programs
  params = jax.device_get(init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)), jnp.zeros((1,), jnp.int32),
                               jnp.zeros((1,), jnp.int32))["params"])  # host copy: each mesh gets its own
  batch = {"image": jax.random.uniform(jax.random.PRNGKey(1), (16, 8, 8, 1), minval=-1, maxval=1),
           "label": jnp.arange(16) % 3}
  results = []
  for devices in (jax.devices(), jax.devices()[:1]):
    mesh = parallel.make_mesh(devices)
    state = parallel.replicate(steps.init_state(params, tx, jax.random.PRNGKey(2)), mesh)
    train = parallel.data_parallel_jit(step, mesh)
    for _ in range(2):
      state, metrics = train(state, parallel.shard_batch(jax.device_get(batch), mesh))
    results.append(jax.device_get((state.params, metrics["loss"])))
  assert jax.device_count() == 8
  chex.assert_trees_all_close(results[0], results[1], atol=2e-5, rtol=2e-5)


def test_latent_denoiser_step_takes_the_first_stage_as_an_argument_and_compiles_once():
  """Two autoencoders, one compiled step: the frozen first stage is an input, not a baked constant."""
  import optax  # pylint: disable=g-import-not-at-top
  from gan_jax import parallel  # pylint: disable=g-import-not-at-top
  from gan_jax.diffusion import steps  # pylint: disable=g-import-not-at-top
  from gan_jax.models import kl_autoencoder  # pylint: disable=g-import-not-at-top
  from gan_jax.models import unet  # pylint: disable=g-import-not-at-top
  autoencoder = kl_autoencoder.KLAutoencoder((8, 8, 1), latent_channels=2, widths=(4, 8))
  denoiser = unet.ConditionalDenoiser(num_classes=3, out_channels=2, widths=(8,), heads=1, context_dim=4)
  schedule, tx = schedule_lib.linear(20), optax.sgd(0.0)
  images = jax.random.uniform(jax.random.PRNGKey(1), (8, 8, 8, 1), minval=-1, maxval=1)
  init_first_stage = jax.jit(autoencoder.init)
  first_stages = [{"params": init_first_stage(jax.random.PRNGKey(seed), images[:1], jax.random.PRNGKey(seed))["params"],
                   "scale": jnp.float32(s)}
                  for seed, s in ((0, 1.0), (1, 2.0))]
  latents = jnp.zeros((1, 4, 4, 2))
  params = jax.jit(denoiser.init)(jax.random.PRNGKey(0), latents, jnp.zeros((1,), jnp.int32),
                                  jnp.zeros((1,), jnp.int32))["params"]
  mesh = parallel.make_mesh(jax.devices()[:1])
  train = parallel.data_parallel_jit(
      # v-prediction: with the U-Net's zero-initialised output the loss then depends on the latents.
      steps.make_denoiser_step(denoiser, tx, schedule, steps.DenoiserConfig(prediction="v"), num_classes=3,
                               to_latent=steps.latent_encoder(autoencoder)), mesh, donate_state=False,
      replicated_args=1)
  state = parallel.replicate(steps.init_state(params, tx, jax.random.PRNGKey(2)), mesh)
  batch = {"image": images, "label": jnp.arange(8) % 3}
  losses = [float(train(state, batch, first_stage)[1]["loss"]) for first_stage in first_stages]
  assert train._cache_size() == 1  # pylint: disable=protected-access
  assert losses[0] != losses[1]  # each call encoded with the autoencoder it was given
  # The encoder draws scale x (mean + sigma * noise): scaling by 2 doubles the latents of the same draw.
  encode = steps.latent_encoder(autoencoder)
  key = jax.random.PRNGKey(3)
  doubled = encode({**first_stages[0], "scale": jnp.float32(2.0)}, images, key)
  chex.assert_trees_all_close(doubled, 2.0 * encode(first_stages[0], images, key), rtol=1e-6)


def _tiny_denoiser_step(dropout_rate):
  import optax  # pylint: disable=g-import-not-at-top
  from gan_jax.diffusion import steps  # pylint: disable=g-import-not-at-top
  from gan_jax.models import unet  # pylint: disable=g-import-not-at-top
  denoiser = unet.ConditionalDenoiser(num_classes=3, out_channels=1, widths=(8,), heads=2, context_dim=4,
                                      dropout_rate=dropout_rate)
  tx = optax.adam(1e-3)
  params = jax.jit(denoiser.init)(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)), jnp.zeros((1,), jnp.int32),
                                  jnp.zeros((1,), jnp.int32))["params"]
  # Away from the zero-initialised output layers, so that the prediction depends on every block.
  leaves, treedef = jax.tree.flatten(params)
  params = treedef.unflatten([p + 0.1 * jax.random.normal(jax.random.PRNGKey(i), p.shape) for i, p in enumerate(leaves)])
  step = jax.jit(steps.make_denoiser_step(denoiser, tx, schedule_lib.linear(20), steps.DenoiserConfig(), 3))
  return step, steps.init_state(params, tx, jax.random.PRNGKey(2))


def test_the_denoiser_trains_with_its_configured_dropout():
  batch = {"image": jax.random.uniform(jax.random.PRNGKey(1), (4, 8, 8, 1), minval=-1, maxval=1),
           "label": jnp.arange(4) % 3}
  losses = {}
  for rate in (0.0, 0.5):
    step, state = _tiny_denoiser_step(rate)
    losses[rate] = float(step(state, batch)[1]["loss"])
  assert losses[0.0] != losses[0.5]  # the same state, batch and draws: only the dropout differs


def test_a_nonfinite_update_is_dropped_and_the_step_still_counts():
  step, state = _tiny_denoiser_step(0.0)
  batch = {"image": jnp.full((4, 8, 8, 1), jnp.nan), "label": jnp.arange(4) % 3}
  new, metrics = step(state, batch)
  assert not np.isfinite(float(metrics["loss"]))
  chex.assert_trees_all_equal((new.params, new.opt_state, new.ema_params),
                              (state.params, state.opt_state, state.ema_params))
  assert int(new.step) == int(state.step) + 1
