"""The pure GAN step: data-parallel equivalence, Algorithm-1 update counts, determinism."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import augment
from gan_jax import models
from gan_jax import parallel
from gan_jax.train import gan_step

BATCH = 16
FAMILIES = [
    ("mlp_gan", "non_saturating", 1, 0.0),
    ("dcgan", "non_saturating", 1, 0.0),
    ("cgan", "hinge", 1, 0.0),
    ("acgan", "minimax", 1, 0.0),
    ("wgan_gp", "wasserstein", 2, 10.0),
]


def setup(name, loss, d_steps, gp_weight, image_shape=(28, 28, 1), augment=""):
  gan = models.build_gan(name, image_shape=image_shape, num_classes=10, width=8)
  cfg = gan_step.StepConfig(loss=loss, d_steps=d_steps, gp_weight=gp_weight, augment=augment)
  tx = gan_step.make_optimizer(2e-4, 0.5, 0.999)
  state = jax.jit(lambda k: gan_step.init_train_state(gan, tx, tx, k, image_shape))(jax.random.PRNGKey(0))
  return gan, gan_step.make_train_step(gan, cfg, tx, tx), state


def make_batch(step, d_steps, image_shape=(28, 28, 1)):
  rng = np.random.default_rng(step)
  return {"image": rng.uniform(-1, 1, (d_steps, BATCH) + image_shape).astype(np.float32),
          "label": rng.integers(0, 10, (d_steps, BATCH)).astype(np.int32)}


def one_device():
  """The single-device mesh the sharded step is compared with: its programs are shared by the tests below."""
  return parallel.make_mesh(jax.devices()[:1])


def run(step_fn, state, mesh, d_steps, num_steps=2):
  jitted = parallel.data_parallel_jit(step_fn, mesh, batch_axis=1)
  state = parallel.replicate(jax.device_get(state), mesh)  # a copy: the step donates its input
  history = []
  for i in range(num_steps):
    batch = parallel.shard_batch(make_batch(i, d_steps), mesh, batch_axis=1)
    state, metrics = jitted(state, batch)
    history.append(jax.device_get(metrics))
  return jax.device_get(state), history


# One case per structure that data parallelism could break: BatchNorm statistics over the
# global batch (dcgan), the auxiliary head (acgan), label projection with per-example
# augmentation draws (cgan: translation; wgan_gp: cutout), the gradient penalty over several
# critic updates (wgan_gp). Colour jitter draws per example as translation does.
WGAN_GP_CUTOUT = FAMILIES[4] + ("cutout",)


@pytest.mark.parametrize("name, loss, d_steps, gp_weight, augment",
                         [FAMILIES[1] + ("",), FAMILIES[3] + ("",), ("cgan", "hinge", 1, 0.0, "translation"),
                          WGAN_GP_CUTOUT])
def test_sharded_step_matches_single_device(name, loss, d_steps, gp_weight, augment):
  assert jax.device_count() == 8, "tests expect 8 fake CPU devices (see conftest.py)"
  _, step_fn, state = setup(name, loss, d_steps, gp_weight, augment=augment)
  single_state, single_hist = run(step_fn, state, one_device(), d_steps)
  sharded_state, sharded_hist = run(step_fn, state, parallel.make_mesh(), d_steps)
  chex.assert_trees_all_close(single_hist, sharded_hist, rtol=1e-4, atol=1e-5)
  # Adam turns a last-bit difference of a near-zero gradient (another reduction order) into up to
  # lr-sized steps, hence the wider absolute tolerance on the state.
  chex.assert_trees_all_close(single_state, sharded_state, rtol=1e-4, atol=5e-5)
  # The update did something: discriminator parameters moved away from initialisation.
  moved = jax.tree.map(lambda a, b: np.abs(np.asarray(a) - np.asarray(b)).max(),
                       jax.device_get(state.d_params), single_state.d_params)
  assert max(jax.tree.leaves(moved)) > 0


def test_batchnorm_statistics_use_the_global_batch():
  _, step_fn, state = setup("dcgan", "non_saturating", 1, 0.0)
  single_state, _ = run(step_fn, state, one_device(), 1, num_steps=1)
  sharded_state, _ = run(step_fn, state, parallel.make_mesh(), 1, num_steps=1)
  assert jax.tree.leaves(single_state.g_batch_stats), "DCGAN generator keeps BatchNorm statistics"
  chex.assert_trees_all_close(single_state.g_batch_stats, sharded_state.g_batch_stats, rtol=1e-5, atol=1e-6)
  moved = jax.tree.map(lambda a, b: np.abs(a - b).max(), jax.device_get(state.g_batch_stats),
                       sharded_state.g_batch_stats)
  assert max(jax.tree.leaves(moved)) > 0


def test_d_steps_discriminator_updates_per_generator_update():
  # The sharded test's WGAN-GP case (2 critic updates per step) and its one-device program.
  *case, augment_policy = WGAN_GP_CUTOUT
  _, step_fn, state = setup(*case, augment=augment_policy)
  state, _ = run(step_fn, state, one_device(), 2)
  assert int(state.step) == 2
  assert int(state.d_opt_state[0].count) == 4
  assert int(state.g_opt_state[0].count) == 2


def test_batch_with_wrong_number_of_minibatches_is_rejected():
  _, step_fn, state = setup("dcgan", "non_saturating", 2, 0.0)
  with pytest.raises(ValueError, match="d_steps=2"):
    jax.jit(step_fn)(state, make_batch(0, 1))


def test_step_is_deterministic_and_noise_depends_on_step():
  _, step_fn, state = setup("dcgan", "non_saturating", 1, 0.0)
  mesh = one_device()
  step = chex.assert_max_traces(step_fn, n=1)
  jitted = parallel.data_parallel_jit(step, mesh, batch_axis=1)  # the sharded test's one-device program
  batch = parallel.shard_batch(make_batch(0, 1), mesh, batch_axis=1)
  metrics = lambda s: jax.device_get(jitted(parallel.replicate(jax.device_get(s), mesh), batch)[1])
  m1, m2 = metrics(state), metrics(state)
  chex.assert_trees_all_equal(m1, m2)
  # Same parameters and batch but a later step number: fresh noise, different losses.
  m3 = metrics(state.replace(step=state.step + 5))
  assert float(m1["g_loss"]) != float(m3["g_loss"])


def test_acgan_metrics_include_auxiliary_terms():
  _, step_fn, state = setup(*FAMILIES[3])  # the sharded test's ACGAN case and its one-device program
  _, (metrics, _) = run(step_fn, state, one_device(), 1)
  for key in ("d_aux_real", "d_aux_fake", "g_aux", "d_class_accuracy"):
    assert key in metrics
  # d_loss = adversarial + aux_real + aux_fake (aux_weight 1).
  chex.assert_trees_all_close(metrics["d_loss"],
                              metrics["d_adversarial"] + metrics["d_aux_real"] + metrics["d_aux_fake"], rtol=1e-5)


def test_generator_ema_tracks_the_weights_and_leaves_training_unchanged():
  gan = models.build_gan("dcgan", image_shape=(28, 28, 1), num_classes=10, width=8)
  tx = gan_step.make_optimizer(2e-4, 0.5, 0.999)
  decay = 0.9
  plain = jax.jit(lambda k: gan_step.init_train_state(gan, tx, tx, k, (28, 28, 1)))(jax.random.PRNGKey(0))
  averaged = jax.jit(lambda k: gan_step.init_train_state(gan, tx, tx, k, (28, 28, 1), g_ema=True))(
      jax.random.PRNGKey(0))
  assert plain.g_ema_params is None
  chex.assert_trees_all_close(averaged.g_ema_params, averaged.g_params)
  step_plain = jax.jit(gan_step.make_train_step(gan, gan_step.StepConfig(), tx, tx))
  step_ema = jax.jit(gan_step.make_train_step(gan, gan_step.StepConfig(g_ema_decay=decay), tx, tx))
  expected = averaged.g_params
  for i in range(3):
    batch = make_batch(i, 1)
    plain, _ = step_plain(plain, batch)
    averaged, _ = step_ema(averaged, batch)
    expected = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, expected, averaged.g_params)
  # The average never feeds back into training: both runs have the same weights.
  chex.assert_trees_all_close(averaged.g_params, plain.g_params)
  chex.assert_trees_all_close(averaged.g_ema_params, expected, rtol=1e-5, atol=1e-7)
  assert gan_step.sampling_params(averaged) is averaged.g_ema_params
  assert gan_step.sampling_params(plain) is plain.g_params
  # The average lags the weights: it is neither the initial nor the current generator.
  first = jax.tree.leaves(averaged.g_ema_params)[0]
  assert not np.allclose(first, jax.tree.leaves(averaged.g_params)[0])
  with pytest.raises(ValueError, match="g_ema=True"):
    step_ema(plain, make_batch(0, 1))


@pytest.mark.parametrize("augment_policy", ["", "translation,cutout"])
def test_generator_grads_from_fakes_equal_the_direct_gradient(augment_policy):
  gan = models.build_gan("acgan", image_shape=(28, 28, 1), num_classes=10, width=8)
  tx = gan_step.make_optimizer(2e-4, 0.5, 0.999)
  state = jax.jit(lambda k: gan_step.init_train_state(gan, tx, tx, k, (28, 28, 1)))(jax.random.PRNGKey(0))
  cfg = gan_step.StepConfig(loss="minimax", aux_weight=0.7, augment=augment_policy)
  z = jax.random.normal(jax.random.PRNGKey(1), (BATCH, gan.z_dim))
  labels = jnp.arange(BATCH) % 10
  dropout_key = jax.random.PRNGKey(2)
  generate = lambda p: gan_step.generate(gan, p, state.g_batch_stats, z, labels, train=True)

  def direct(p):
    return gan_step.generator_loss(generate(p)[0], state.d_params, labels, dropout_key, gan=gan, cfg=cfg)[0]

  @jax.jit  # both ways as one program: op by op they compile some 300 one-op programs
  def both_ways(p):
    fake, g_vjp, _ = jax.vjp(generate, p, has_aux=True)
    grads, metrics = gan_step.generator_grads_from_fakes(fake, g_vjp, state.d_params, labels, dropout_key,
                                                         gan=gan, cfg=cfg)
    return grads, metrics, jax.grad(direct)(p), direct(p)

  grads, metrics, direct_grads, direct_loss = both_ways(state.g_params)
  chex.assert_trees_all_close(grads, direct_grads, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(metrics["g_loss"], direct_loss, rtol=1e-6)
  assert "g_aux" in metrics


@pytest.mark.parametrize("name, loss, d_steps, gp_weight", [FAMILIES[1], FAMILIES[4]])
def test_reuse_fakes_keeps_the_discriminator_updates_and_saves_a_generator_pass(name, loss, d_steps, gp_weight):
  gan, fresh_step, state = setup(name, loss, d_steps, gp_weight)
  tx = gan_step.make_optimizer(2e-4, 0.5, 0.999)
  cfg = gan_step.StepConfig(loss=loss, d_steps=d_steps, gp_weight=gp_weight, reuse_fakes=True)
  reuse_step = gan_step.make_train_step(gan, cfg, tx, tx)
  batch = make_batch(0, d_steps)
  fresh, fresh_metrics = jax.jit(fresh_step)(state, batch)
  reused, reused_metrics = jax.jit(reuse_step)(state, batch)
  # Same noise for every D update, so D ends the step identical; G saw other noise.
  chex.assert_trees_all_close(reused.d_params, fresh.d_params, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(reused_metrics["d_loss"], fresh_metrics["d_loss"], rtol=1e-5)
  assert not np.allclose(reused_metrics["g_loss"], fresh_metrics["g_loss"])
  assert all(jax.tree.leaves(jax.tree.map(lambda a, b: a.shape == b.shape, reused.g_params, fresh.g_params)))
  flops = lambda fn: jax.jit(fn).lower(state, batch).compile().cost_analysis()["flops"]
  assert flops(reuse_step) < flops(fresh_step)


def test_augment_policy_transforms_what_the_discriminator_sees():
  """With a policy, D judges diff_augment(images) (first half of the split key), dropout uses the second half."""
  gan = models.build_gan("acgan", image_shape=(28, 28, 1), num_classes=10, width=8)
  tx = gan_step.make_optimizer(2e-4, 0.5, 0.999)
  state = jax.jit(lambda k: gan_step.init_train_state(gan, tx, tx, k, (28, 28, 1)))(jax.random.PRNGKey(0))
  fake = jnp.asarray(make_batch(0, 1)["image"][0])
  labels = jnp.arange(BATCH) % 10
  key = jax.random.PRNGKey(9)
  policy = "color,translation,cutout"
  loss = lambda images, k, p: gan_step.generator_loss(images, state.d_params, labels, k, gan=gan,
                                                      cfg=gan_step.StepConfig(augment=p))[1]
  augment_key, dropout_key = jax.random.split(key)

  @jax.jit  # every comparison as one program: op by op they compile some 200 one-op programs
  def compare(x):
    by_hand = loss(augment.diff_augment(x, augment_key, policy), dropout_key, "")
    grad = jax.grad(lambda y: loss(y, key, policy)["g_loss"])(x)
    return by_hand, loss(x, key, policy), loss(x, key, "")["g_loss"], grad

  by_hand, with_policy, without_policy, grad = compare(fake)
  chex.assert_trees_all_close(with_policy, by_hand, rtol=1e-5)
  assert not np.allclose(without_policy, by_hand["g_loss"])
  # G's gradient flows through the transformation.
  assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0
