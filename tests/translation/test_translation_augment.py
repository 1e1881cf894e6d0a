"""The papers' training jitter (random crop of an enlarged image, random mirror), the B -> A direction,
and test-time dropout."""
import chex
import jax
import jax.numpy as jnp
import numpy as np

from gan_jax.translation import augment
from gan_jax.translation import data as data_lib
from gan_jax.translation import step as step_lib
from gan_jax.translation import train

SIDE = 16


def ramps(batch=32):
  """Images whose value is the column index: a crop or a mirror shows in every row."""
  return jnp.broadcast_to(jnp.arange(SIDE, dtype=jnp.float32)[None, None, :, None], (batch, SIDE, SIDE, 1))


def test_a_pair_shares_its_crop_and_mirror():
  images = ramps()
  out = augment.jitter_batch({"a": images, "b": 2.0 * images + 1.0}, jax.random.PRNGKey(0), paired=True,
                             jitter=True, flip=True)
  chex.assert_shape(out["a"], images.shape)
  chex.assert_trees_all_close(out["b"], 2.0 * out["a"] + 1.0, atol=1e-5)


def test_mirror_only_flips_about_half_of_the_images():
  images = ramps(64)
  out = np.asarray(augment.jitter_batch({"a": images, "b": images}, jax.random.PRNGKey(1), paired=False,
                                        jitter=False, flip=True)["a"])
  mirrored = np.all(out == np.asarray(images)[:, :, ::-1], axis=(1, 2, 3))
  kept = np.all(out == np.asarray(images), axis=(1, 2, 3))
  assert np.all(mirrored | kept) and 16 < mirrored.sum() < 48


def test_jitter_crops_a_window_of_the_enlarged_image_at_random():
  images = ramps(32)
  out = np.asarray(augment.jitter_batch({"a": images, "b": images}, jax.random.PRNGKey(2), paired=False,
                                        jitter=True, flip=False)["a"])
  rows = out[:, 0, :, 0]
  assert np.all(np.diff(rows, axis=1) > 0)  # no mirror: still increasing left to right
  starts = rows[:, 0]
  assert len(np.unique(np.round(starts, 3))) > 1 and starts.min() >= -0.5  # windows start at different places
  assert np.allclose(out[:, :, :, 0], out[:, :1, :, 0])  # rows stay identical: nothing but a window and a scale


def test_without_jitter_or_flip_the_batch_is_untouched():
  batch = {"a": ramps(4), "b": ramps(4)}
  assert augment.jitter_batch(batch, jax.random.PRNGKey(0), paired=True, jitter=False, flip=False) is batch


def test_b_to_a_swaps_the_domains_and_keeps_the_answer():
  rng = np.random.default_rng(0)
  a, b = (rng.integers(0, 255, (3, 8, 8, 1)).astype(np.uint8) for _ in range(2))
  task = data_lib.TranslationData("t", a, b, False, a, data_lib.dilate(a, 1), True, true_pairs=(a, b))
  back = data_lib.reversed_direction(task)
  np.testing.assert_array_equal(back.test_b, a)
  np.testing.assert_array_equal(back.test_a, data_lib.dilate(a, 1))
  np.testing.assert_array_equal(back.true_pairs[0], b)


def test_test_time_dropout_draws_from_its_key_and_is_off_by_default():
  translator = step_lib.build_translator("pix2pix", side=SIDE, channels_a=1, channels_b=1, width_g=4, width_d=4,
                                         patch_size=16)
  tx = step_lib.make_optimizer(1e-3, 0.5, 0.999, num_steps=2, decay_steps=1)
  # Jitted: op by op, the init compiles some hundred one-op programs.
  state = jax.jit(lambda key: step_lib.init_state(translator, tx, tx, key, pool_size=0))(jax.random.PRNGKey(0))
  images = np.random.default_rng(0).integers(0, 255, (6, SIDE, SIDE, 1)).astype(np.uint8)
  plain = train.make_translate_fn(translator, "ab", 4)
  np.testing.assert_array_equal(plain(state.g_params, images), plain(state.g_params, images))
  noisy = lambda key: train.make_translate_fn(translator, "ab", 4, key)(state.g_params, images)
  np.testing.assert_array_equal(noisy(jax.random.PRNGKey(1)), noisy(jax.random.PRNGKey(1)))
  assert not np.array_equal(noisy(jax.random.PRNGKey(1)), noisy(jax.random.PRNGKey(2)))
