"""ProGAN phase networks at the data's shape, the growth schedule and the reals' fade-in."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import models
from gan_jax.models import progan
from gan_jax.models import progan_gan


def test_schedule_phases_and_fades():
  schedule = progan_gan.PhaseSchedule(num_stages=4, stable_steps=3, fade_steps=2)
  assert [schedule.start(s) for s in range(4)] == [0, 3, 8, 13]
  assert [schedule.stage_at(t) for t in range(16)] == [0] * 3 + [1] * 5 + [2] * 5 + [3] * 3
  assert schedule.stage_at(10**6) == 3  # the last phase runs on
  assert schedule.fade(0) == (0, 0) and schedule.fade(2) == (8, 2)


@pytest.mark.parametrize("side, stages", [(28, 4), (32, 4), (16, 3), (4, 1)])
def test_number_of_phases_reaches_the_network_size(side, stages):
  assert progan_gan.num_stages(side) == stages


def _gan(stage, side=28, channels=1):
  return models.build_gan("progan", image_shape=(side, side, channels), num_classes=10, width=4, stage=stage)


def test_every_phase_reads_the_last_phase_parameters_and_writes_the_data_shape():
  last = _gan(None)
  assert last.stage == 3 and last.z_dim == 16
  z, labels = jax.random.normal(jax.random.PRNGKey(0), (4, last.z_dim)), jnp.arange(4)
  g_vars = jax.jit(last.generator.init)(jax.random.PRNGKey(1), z, labels)
  images = jnp.zeros((4, 28, 28, 1))
  d_vars = jax.jit(last.discriminator.init)(jax.random.PRNGKey(2), images, labels)
  for stage in range(4):
    gan = _gan(stage)

    @jax.jit  # one program per phase: op by op, the four phases compile some 200 one-op programs
    def phase(g_vars, d_vars, gan=gan, stage=stage):
      fake = gan.generator.apply(g_vars, z, labels)
      drawn = progan.Generator(gan.generator.widths, 1, 10).apply({"params": g_vars["params"]["net"]}, z, stage, 1.0,
                                                                  labels)
      return fake, gan.discriminator.apply(d_vars, fake, labels), drawn

    fake, (logits, aux), drawn = phase(g_vars, d_vars)
    chex.assert_shape(fake, (4, 28, 28, 1))
    chex.assert_shape(logits, (4,))
    assert aux is None
    # The phase draws at 4 << stage and is up-sampled: blocks of equal pixels of that size.
    block = 32 // (4 << stage)
    full = jnp.repeat(jnp.repeat(drawn, block, axis=1), block, axis=2)
    chex.assert_trees_all_close(fake, full[:, 2:30, 2:30], atol=1e-6)


def test_alpha_is_a_module_attribute_that_may_be_traced():
  gan = _gan(2)
  z, labels = jax.random.normal(jax.random.PRNGKey(0), (2, gan.z_dim)), jnp.array([1, 2])
  variables = _gan(None).generator.init(jax.random.PRNGKey(1), z, labels)
  calls = []

  @jax.jit
  def draw(alpha):
    calls.append(1)
    return gan.with_alpha(alpha).generator.apply(variables, z, labels)

  at_zero, at_one, halfway = draw(0.0), draw(1.0), draw(0.5)
  assert len(calls) == 1  # one trace for every alpha
  chex.assert_trees_all_close(halfway, 0.5 * (at_zero + at_one), atol=1e-5)
  chex.assert_trees_all_close(at_zero, _gan(1).generator.apply(variables, z, labels), atol=1e-5)


def test_fade_reals_blends_the_two_resolutions_as_the_discriminator_sees_them():
  images = jax.random.uniform(jax.random.PRNGKey(0), (2, 32, 32, 3), minval=-1, maxval=1)
  for stage in (1, 2, 3):
    side = 4 << stage
    pooled = lambda x: progan_gan._resize(x, side)  # what the phase's discriminator pools to
    x = pooled(images)
    coarse = progan.upsample2(progan.downsample2(x))
    chex.assert_trees_all_close(pooled(progan_gan.fade_reals(images, 0.0, stage=stage)), coarse, atol=1e-6)
    chex.assert_trees_all_close(pooled(progan_gan.fade_reals(images, 1.0, stage=stage)), x, atol=1e-6)
    chex.assert_trees_all_close(pooled(progan_gan.fade_reals(images, 0.25, stage=stage)),
                                0.75 * coarse + 0.25 * x, atol=1e-6)
  chex.assert_trees_all_close(progan_gan.fade_reals(images, 1.0, stage=3), images, atol=1e-6)
  np.testing.assert_array_equal(progan_gan.fade_reals(images, 0.3, stage=0), images)


def test_bad_progan_settings_are_clear_errors():
  with pytest.raises(ValueError, match=r"stage must lie in \[0, 3\].*got 4"):
    _gan(4)
  with pytest.raises(ValueError, match="progan needs square images"):
    models.build_gan("progan", image_shape=(28, 32, 1), num_classes=10)
  with pytest.raises(ValueError, match="gradient penalty"):
    models.build_gan("progan", image_shape=(28, 28, 1), num_classes=10, spectral_norm=True)
