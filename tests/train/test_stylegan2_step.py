"""StyleGAN2 in the shared GAN step: data parallelism, lazy R1, the ADA probability, style mixing, w_avg."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import ada
from gan_jax import models
from gan_jax import parallel
from gan_jax.train import gan_step

BATCH = 16


def setup(**step_overrides):
  gan = models.build_gan("stylegan2", image_shape=(28, 28, 1), num_classes=10, width=8)
  cfg = gan_step.StepConfig(**{"r1_gamma": 1.0, "r1_interval": 2, "ada_target": 0.6, "ada_interval": 2,
                               "ada_kimg": 1, **step_overrides})
  tx = gan_step.make_optimizer(2e-3, 0.0, 0.99)
  state = jax.jit(lambda k: gan_step.init_train_state(gan, tx, tx, k, (28, 28, 1), g_ema=False,
                                                      ada_state=cfg.ada_target > 0))(jax.random.PRNGKey(0))
  return gan, cfg, gan_step.make_train_step(gan, cfg, tx, tx), state


def batch_at(step):
  rng = np.random.default_rng(step)
  return {"image": rng.uniform(-1, 1, (1, BATCH, 28, 28, 1)).astype(np.float32),
          "label": rng.integers(0, 10, (1, BATCH)).astype(np.int32)}


def run(step_fn, state, mesh, num_steps):
  jitted = parallel.data_parallel_jit(step_fn, mesh, batch_axis=1)
  state = parallel.replicate(jax.device_get(state), mesh)
  history = []
  for i in range(num_steps):
    state, metrics = jitted(state, parallel.shard_batch(batch_at(i), mesh, batch_axis=1))
    history.append(jax.device_get(metrics))
  return jax.device_get(state), history


def test_sharded_stylegan2_step_with_r1_ada_and_mixing_matches_one_device():
  _, _, step_fn, state = setup()
  # p = 0.5 so that every ADA transformation fires on some images of the batch.
  state = state.replace(ada={**state.ada, "p": jnp.float32(0.5)})
  single_state, single_hist = run(step_fn, state, parallel.make_mesh(jax.devices()[:1]), 2)
  sharded_state, sharded_hist = run(step_fn, state, parallel.make_mesh(), 2)
  chex.assert_trees_all_close(single_hist, sharded_hist, rtol=1e-4, atol=1e-5)
  # Adam with beta1 = 0 moves each weight by about lr * sign(g) on the first steps, so a gradient near
  # zero whose float rounding differs between the two reductions may move its weight by a share of lr.
  chex.assert_trees_all_close(single_state, sharded_state, rtol=1e-4, atol=5e-4)
  # Lazy R1: computed on D update 0 (scaled by the interval), skipped on update 1.
  assert single_hist[0]["r1_penalty"] > 0
  assert single_hist[1]["r1_penalty"] == 0
  # The running average of w moved away from zero in training mode.
  assert np.abs(single_state.g_batch_stats["w_avg"]).max() > 0


def test_ada_probability_moves_after_each_interval_by_the_images_seen():
  # p moves once per interval of 2 steps, by 2 steps x 16 images / 1,000 (ada_kimg 1), towards
  # more augmentation when r_t = E[sign D(real)] over the interval exceeds the target.
  _, cfg, step_fn, state = setup()
  state = state.replace(ada={**state.ada, "p": jnp.float32(0.5)})
  step = jax.jit(step_fn)
  state, first = step(state, batch_at(0))
  assert float(state.ada["p"]) == 0.5 and float(state.ada["count"]) == BATCH  # mid-interval: tallied only
  assert float(first["ada_p"]) == 0.5
  state, second = step(state, batch_at(1))
  r_t = (float(first["d_real_sign"]) + float(second["d_real_sign"])) / 2
  assert r_t != cfg.ada_target
  assert float(state.ada["p"]) == pytest.approx(0.5 + np.sign(r_t - cfg.ada_target) * 2 * BATCH / 1000, abs=1e-6)
  assert float(state.ada["count"]) == 0 and float(state.ada["sign_sum"]) == 0


def test_ada_state_is_required_when_ada_is_on():
  gan, cfg, step_fn, _ = setup()
  tx = gan_step.make_optimizer(2e-3, 0.0, 0.99)
  plain = gan_step.init_train_state(gan, tx, tx, jax.random.PRNGKey(0), (28, 28, 1))
  with pytest.raises(ValueError, match="ada_state=True"):
    jax.jit(step_fn)(plain, batch_at(0))
  assert cfg.ada_target > 0


def test_without_r1_and_ada_the_step_has_neither_metric():
  _, _, step_fn, state = setup(r1_gamma=0.0, ada_target=0.0)
  _, metrics = jax.jit(step_fn)(state, batch_at(0))
  assert not {"r1_penalty", "ada_p", "d_real_sign"} & set(metrics)
  assert state.ada is None


def test_adapt_tallies_until_the_interval_then_resets():
  state = ada.initial_state()
  state = ada.adapt(state, jnp.float32(1.0), 10, jnp.int32(0), target=0.6, interval=3, adjust_images=100)
  state = ada.adapt(state, jnp.float32(0.0), 10, jnp.int32(1), target=0.6, interval=3, adjust_images=100)
  assert float(state["p"]) == 0 and float(state["sign_sum"]) == 10 and float(state["count"]) == 20
  state = ada.adapt(state, jnp.float32(1.0), 10, jnp.int32(2), target=0.6, interval=3, adjust_images=100)
  # r_t = 20 / 30 > 0.6: p rises by 30 / 100.
  assert float(state["p"]) == pytest.approx(0.3) and float(state["count"]) == 0
