"""DiffAugment transformations: each one against a plain numpy reference, their gradients, the policy parser."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import augment


def random_images(shape=(6, 28, 28, 1), seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32))


def shifted(image, dy, dx):
  """numpy reference: out[i, j] = image[i - dy, j - dx], zero outside."""
  out = np.zeros_like(image)
  h, w = image.shape[:2]
  for i in range(h):
    for j in range(w):
      if 0 <= i - dy < h and 0 <= j - dx < w:
        out[i, j] = image[i - dy, j - dx]
  return out


def find_shift(image, out, max_shift):
  """The one (dy, dx) within +-max_shift that turns image into out, or None."""
  matches = [(dy, dx) for dy in range(-max_shift, max_shift + 1) for dx in range(-max_shift, max_shift + 1)
             if np.array_equal(shifted(image, dy, dx), out)]
  return matches[0] if len(matches) == 1 else None


def test_translation_is_a_zero_filled_shift_of_at_most_an_eighth():
  images = random_images()
  out = np.asarray(augment.translate(images, jax.random.PRNGKey(3)))
  shifts = [find_shift(np.asarray(images[b]), out[b], max_shift=4) for b in range(len(out))]
  assert None not in shifts, shifts  # every output is one shift of its input by at most round(28/8) = 4
  assert len(set(shifts)) > 1  # drawn per image


def test_translation_gradient_is_the_reverse_shift():
  images = random_images((3, 12, 10, 2), seed=1)
  cotangent = random_images((3, 12, 10, 2), seed=2)
  key = jax.random.PRNGKey(4)
  out = np.asarray(augment.translate(images, key, ratio=0.25))
  grad = jax.grad(lambda x: jnp.sum(augment.translate(x, key, ratio=0.25) * cotangent))(images)
  for b in range(3):
    dy, dx = find_shift(np.asarray(images[b]), out[b], max_shift=3)
    np.testing.assert_allclose(grad[b], shifted(np.asarray(cotangent[b]), -dy, -dx), atol=1e-6)


def test_cutout_zeroes_one_square_and_keeps_the_rest():
  images = random_images((8, 28, 28, 1))
  out = np.asarray(augment.cutout(images, jax.random.PRNGKey(5)))
  zeroed = (out == 0)[..., 0]
  areas = []
  for b in range(8):
    rows, cols = np.nonzero(zeroed[b])
    # The zeroed pixels form one axis-aligned rectangle of side <= 14, clipped by the border.
    assert rows.max() - rows.min() + 1 <= 14 and cols.max() - cols.min() + 1 <= 14
    assert zeroed[b, rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
    np.testing.assert_array_equal(out[b][~zeroed[b]], np.asarray(images[b])[~zeroed[b]])
    areas.append(zeroed[b].sum())
  assert max(areas) == 14 * 14 and len(set(areas)) > 1  # a full square somewhere, clipped elsewhere


def test_colour_is_a_per_image_affine_map_with_the_papers_ranges():
  images = random_images((16, 8, 8, 1))
  out = np.asarray(augment.color(images, jax.random.PRNGKey(6)))
  for b in range(16):
    slope, offset = np.polyfit(np.asarray(images[b]).ravel(), out[b].ravel(), 1)
    np.testing.assert_allclose(np.asarray(images[b]) * slope + offset, out[b], atol=1e-5)
    # One channel: saturation is the identity, so the slope is the contrast factor alone.
    assert 0.5 <= slope <= 1.5


def test_policy_applies_transformations_in_order_and_is_deterministic():
  images = random_images()
  key = jax.random.PRNGKey(7)
  out = augment.diff_augment(images, key, "translation,cutout")
  manual = augment.cutout(augment.translate(images, jax.random.fold_in(key, 0)), jax.random.fold_in(key, 1))
  chex.assert_trees_all_equal(out, manual)
  chex.assert_trees_all_equal(augment.diff_augment(images, key, "translation,cutout"), out)
  assert not np.array_equal(augment.diff_augment(images, jax.random.PRNGKey(8), "translation,cutout"), out)
  assert augment.diff_augment(images, key, "") is images


@pytest.mark.parametrize("policy, expected", [
    ("", ()), ("none", ()), ("translation", ("translation",)),
    (" color, translation,cutout ", ("color", "translation", "cutout")),
])
def test_parse_policy(policy, expected):
  assert augment.parse_policy(policy) == expected


def test_unknown_augmentation_names_the_choices():
  with pytest.raises(ValueError, match=r"Unknown augmentation 'flip' in policy 'translation,flip'; "
                                       r"choose from: color, translation, cutout"):
    augment.parse_policy("translation,flip")
