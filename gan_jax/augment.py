"""Differentiable augmentation of the discriminator's input (DiffAugment).

Zhao et al. (NeurIPS 2020, "Differentiable Augmentation for Data-Efficient GAN
Training") apply the same random transformation T to real and generated images
every time the discriminator sees them, in both players' updates. D then cannot
memorise the few real images it has, and because T is differentiable the
generator still gets gradients through it. Their few-shot results (100 images per
data set) are the regime of the rare classes of an imbalanced set (40 images).

Every function here is pure: images [B, H, W, C] and a PRNG key in, images of the
same shape out, one independent draw per image. The images may be in any range;
translation and cutout fill with zeros, as in the paper (mid-grey for [-1, 1]).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


def translate(images: Array, key: Array, *, ratio: float = 0.125) -> Array:
  """Shifts each image by whole pixels, up to `ratio` of its size in each direction, zero-filled.

  Written as two one-hot shift matrices applied by `einsum` rather than a gather,
  so the gradient with respect to the images is an exact transposed shift.

  Args:
    images: [B, H, W, C].
    key: PRNG key; each image draws its own vertical and horizontal shift.
    ratio: largest shift as a fraction of the height (width): round(ratio * H) pixels.

  Returns:
    [B, H, W, C]; out[b, i, j] = images[b, i - dy_b, j - dx_b], zero outside the image.
  """
  batch, height, width, _ = images.shape
  max_dy, max_dx = _scaled_sides(images.shape, ratio)
  dy, dx = _per_image_yx(key, batch, low=(-max_dy, -max_dx), high=(max_dy + 1, max_dx + 1))
  shift_y = _shift_matrices(dy, height, images.dtype)
  shift_x = _shift_matrices(dx, width, images.dtype)
  rows_moved = jnp.einsum("bij,bjwc->biwc", shift_y, images)
  return jnp.einsum("bkw,biwc->bikc", shift_x, rows_moved)


def _scaled_sides(shape: tuple[int, ...], ratio: float) -> tuple[int, int]:
  """round(ratio * H), round(ratio * W) of an NHWC shape."""
  return int(shape[1] * ratio + 0.5), int(shape[2] * ratio + 0.5)


def _per_image_yx(key: Array, batch: int, low: tuple[int, int], high: tuple[int, int]) -> tuple[Array, Array]:
  """Integer (y, x) per image, y in [low[0], high[0]) and x in [low[1], high[1]), independent draws."""
  y_key, x_key = jax.random.split(key)
  return (jax.random.randint(y_key, (batch,), low[0], high[0]),
          jax.random.randint(x_key, (batch,), low[1], high[1]))


def _shift_matrices(shifts: Array, size: int, dtype) -> Array:
  """[B, size, size] one-hot matrices M_b with M_b[i, j] = 1 where j = i - shift_b."""
  out_index = jnp.arange(size)[None, :, None]
  in_index = jnp.arange(size)[None, None, :]
  return (in_index == out_index - shifts[:, None, None]).astype(dtype)


def cutout(images: Array, key: Array, *, ratio: float = 0.5) -> Array:
  """Zeroes one square of side round(ratio * size) per image, at a uniformly drawn centre.

  Args:
    images: [B, H, W, C].
    key: PRNG key; each image draws its own centre.
    ratio: side of the square as a fraction of the height (width).

  Returns:
    [B, H, W, C] with the square (clipped at the borders) set to zero.
  """
  batch, height, width, _ = images.shape
  size_y, size_x = _scaled_sides(images.shape, ratio)
  centre_y, centre_x = _per_image_yx(key, batch, low=(0, 0), high=(height, width))
  top, left = centre_y - size_y // 2, centre_x - size_x // 2
  rows = jnp.arange(height)[None, :]
  cols = jnp.arange(width)[None, :]
  in_rows = (rows >= top[:, None]) & (rows < top[:, None] + size_y)
  in_cols = (cols >= left[:, None]) & (cols < left[:, None] + size_x)
  keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
  return images * keep[..., None].astype(images.dtype)


def color(images: Array, key: Array) -> Array:
  """The paper's colour transformation: random brightness, saturation and contrast per image.

  Brightness adds U(-0.5, 0.5); saturation scales the deviation from the channel
  mean by U(0, 2) (the identity for one channel); contrast scales the deviation
  from the image mean by U(0.5, 1.5).

  Args:
    images: [B, H, W, C].
    key: PRNG key.

  Returns:
    [B, H, W, C].
  """
  batch = images.shape[0]
  b_key, s_key, c_key = jax.random.split(key, 3)
  per_image = lambda k, lo, hi: jax.random.uniform(k, (batch, 1, 1, 1), images.dtype, lo, hi)
  images = images + per_image(b_key, -0.5, 0.5)
  channel_mean = jnp.mean(images, axis=3, keepdims=True)
  images = (images - channel_mean) * per_image(s_key, 0.0, 2.0) + channel_mean
  image_mean = jnp.mean(images, axis=(1, 2, 3), keepdims=True)
  return (images - image_mean) * per_image(c_key, 0.5, 1.5) + image_mean


AUGMENTATIONS: dict[str, Callable[[Array, Array], Array]] = {
    "color": color,
    "translation": translate,
    "cutout": cutout,
}


def parse_policy(policy: str) -> tuple[str, ...]:
  """'translation,cutout' -> ('translation', 'cutout'); '' or 'none' -> ().

  Raises:
    ValueError: a name that is not in AUGMENTATIONS (the message lists them).
  """
  text = str(policy).strip()
  if text in ("", "none"):
    return ()
  names = tuple(name.strip() for name in text.split(","))
  unknown = [name for name in names if name not in AUGMENTATIONS]
  if unknown:
    raise ValueError(f"Unknown augmentation {', '.join(map(repr, unknown))} in policy {policy!r}; "
                     f"choose from: {', '.join(AUGMENTATIONS)} (comma-separated), or '' for none")
  return names


def diff_augment(images: Array, key: Array, policy: str) -> Array:
  """Applies the policy's transformations in order, each with its own key.

  Args:
    images: [B, H, W, C].
    key: PRNG key.
    policy: comma-separated names from AUGMENTATIONS, e.g. 'color,translation,cutout'
      (the paper's choice for few-shot generation); '' returns `images` unchanged.

  Returns:
    The augmented images, [B, H, W, C].
  """
  for index, name in enumerate(parse_policy(policy)):
    images = AUGMENTATIONS[name](images, jax.random.fold_in(key, index))
  return images


def ada_update(p: Array, real_sign_mean: Array, *, target: float = 0.6, images_seen: int,
               adjust_images: int = 500_000) -> Array:
  """Adaptive discriminator augmentation's probability update (Karras et al., NeurIPS 2020).

  r_t = E[sign(D(real))] measures over-fitting: above `target` the discriminator is too sure of
  the reals, so p rises; below it p falls. p moves by `images_seen / adjust_images` per update
  (from 0 to 1 in `adjust_images` images at the most), and stays in [0, 1].

  Args:
    p: the current augmentation probability.
    real_sign_mean: r_t over the images since the last update.
    target: the r_t to hold (0.6 in the paper).
    images_seen: real images shown to D since the last update.
    adjust_images: images over which p may sweep the whole [0, 1] (the paper's 500k).
  """
  step = jnp.sign(real_sign_mean - target) * (images_seen / adjust_images)
  return jnp.clip(p + step, 0.0, 1.0)
