"""Adaptive discriminator augmentation's pipeline (ADA; Karras et al., NeurIPS 2020).

Every image the discriminator sees, real or generated, passes through a chain of
transformations, each applied to each image independently with probability p; the
training step adapts p from how sure D is of the reals (`augment.ada_update`). The
paper shows that when every transformation fires with p < ~0.8 the generator cannot
learn to reproduce them ("non-leaking"), so D can train on heavily augmented images of
a few hundred reals without its distortions reaching the generated images.

The transformations here are the ones safe for this project's data (digits, clothing,
CIFAR): integer translation, isotropic scaling and rotation (one bilinear resampling with
reflection at the borders), brightness/contrast/saturation, and cutout. Flips and 90-degree
rotations are left out: a mirrored 2 or 7 is not a digit. Every transformation is
differentiable in the images, so the generator trains through them.
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

from gan_jax import augment

Array = jax.Array

# Spreads of the paper's defaults (its Appendix B): log2-normal scaling with std 0.2, brightness
# N(0, 0.2), log2-normal contrast with std 0.5 and saturation with std 1. The rotation is limited
# to +-15 degrees for digits (the paper rotates freely), the translation to 1/8 of the side.
SCALE_STD = 0.2
MAX_ROTATION_DEGREES = 15.0
BRIGHTNESS_STD = 0.2
CONTRAST_STD = 0.5
SATURATION_STD = 1.0
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def _coins(key: Array, batch: int, p: Array) -> Array:
  """[B] booleans, each True with probability p."""
  return jax.random.uniform(key, (batch,)) < p


def translation(images: Array, key: Array, p: Array) -> Array:
  """Integer shifts up to 1/8 of the side, zero-filled, each image with probability p."""
  shift_key, coin_key = jax.random.split(key)
  shifted = augment.translate(images, shift_key, ratio=TRANSLATION_RATIO)
  return jnp.where(_coins(coin_key, images.shape[0], p)[:, None, None, None], shifted, images)


def geometric(images: Array, key: Array, p: Array) -> Array:
  """Isotropic scaling and rotation about the centre, each drawn with probability p, in one resampling.

  An image that draws neither is returned exactly (no resampling blur).
  """
  batch = images.shape[0]
  scale_key, angle_key, scale_coin, angle_coin = jax.random.split(key, 4)
  do_scale = _coins(scale_coin, batch, p)
  do_rotate = _coins(angle_coin, batch, p)
  scale = jnp.where(do_scale, jnp.exp2(SCALE_STD * jax.random.normal(scale_key, (batch,))), 1.0)
  limit = math.radians(MAX_ROTATION_DEGREES)
  angle = jnp.where(do_rotate, jax.random.uniform(angle_key, (batch,), minval=-limit, maxval=limit), 0.0)
  warped = jax.vmap(_rotate_scale)(images, scale, angle)
  return jnp.where((do_scale | do_rotate)[:, None, None, None], warped, images)


def _rotate_scale(image: Array, scale: Array, angle: Array) -> Array:
  """One [H, W, C] image scaled by `scale` and rotated by `angle` about its centre (bilinear, reflected borders)."""
  height, width, _ = image.shape
  rows, cols = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32),
                            indexing="ij")
  cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
  # Output pixel o reads input pixel R(-angle) (o - c) / scale + c: the inverse map.
  cos, sin = jnp.cos(angle) / scale, jnp.sin(angle) / scale
  y = cos * (rows - cy) - sin * (cols - cx) + cy
  x = sin * (rows - cy) + cos * (cols - cx) + cx
  return _bilinear(image, y, x)


def _reflect(index: Array, size: int) -> Array:
  """Integer indices mirrored into [0, size) (reflection without repeating the edge pixel)."""
  period = 2 * (size - 1)
  index = jnp.mod(index, period)
  return jnp.where(index >= size, period - index, index)


def _bilinear(image: Array, y: Array, x: Array) -> Array:
  """image [H, W, C] read at real coordinates y, x [H, W] by bilinear interpolation."""
  height, width, _ = image.shape
  y0, x0 = jnp.floor(y), jnp.floor(x)
  wy, wx = (y - y0)[..., None], (x - x0)[..., None]
  y0, x0 = y0.astype(jnp.int32), x0.astype(jnp.int32)
  read = lambda yy, xx: image[_reflect(yy, height), _reflect(xx, width)]
  top = read(y0, x0) * (1 - wx) + read(y0, x0 + 1) * wx
  bottom = read(y0 + 1, x0) * (1 - wx) + read(y0 + 1, x0 + 1) * wx
  return top * (1 - wy) + bottom * wy


def color(images: Array, key: Array, p: Array) -> Array:
  """Brightness (additive), contrast (about the image mean) and saturation (about the pixel's grey value),
  each drawn per image with probability p; saturation is the identity for one channel."""
  batch = images.shape[0]
  keys = jax.random.split(key, 6)
  per_image = lambda x: x[:, None, None, None]
  fire = lambda coin_key, changed, unchanged: jnp.where(per_image(_coins(coin_key, batch, p)), changed, unchanged)
  images = fire(keys[0], images + per_image(BRIGHTNESS_STD * jax.random.normal(keys[1], (batch,))), images)
  mean = jnp.mean(images, axis=(1, 2, 3), keepdims=True)
  contrast = jnp.exp2(CONTRAST_STD * jax.random.normal(keys[3], (batch,)))
  images = fire(keys[2], (images - mean) * per_image(contrast) + mean, images)
  grey = jnp.mean(images, axis=3, keepdims=True)
  saturation = jnp.exp2(SATURATION_STD * jax.random.normal(keys[5], (batch,)))
  return fire(keys[4], (images - grey) * per_image(saturation) + grey, images)


def cutout(images: Array, key: Array, p: Array) -> Array:
  """A zeroed square of half the side at a random centre, each image with probability p."""
  cut_key, coin_key = jax.random.split(key)
  cut = augment.cutout(images, cut_key, ratio=CUTOUT_RATIO)
  return jnp.where(_coins(coin_key, images.shape[0], p)[:, None, None, None], cut, images)


TRANSFORMS: dict[str, Callable[[Array, Array, Array], Array]] = {
    "translation": translation,
    "geometric": geometric,
    "color": color,
    "cutout": cutout,
}
DEFAULT_POLICY = "translation,geometric,color"


def parse_policy(policy: str) -> tuple[str, ...]:
  """'translation,color' -> ('translation', 'color').

  Raises:
    ValueError: an empty policy or a name outside TRANSFORMS (the message lists them).
  """
  names = tuple(name.strip() for name in str(policy).split(",") if name.strip())
  unknown = [name for name in names if name not in TRANSFORMS]
  if unknown or not names:
    raise ValueError(f"Unknown ADA policy {policy!r}; use comma-separated names from: {', '.join(TRANSFORMS)}")
  return names


def ada_augment(images: Array, key: Array, p: Array, policy: str = DEFAULT_POLICY) -> Array:
  """Applies the policy's transformations in order, each image and transformation firing with probability p.

  Args:
    images: [B, H, W, C] in any range.
    key: PRNG key.
    p: augmentation probability in [0, 1] (a traced scalar: changing it does not retrace).
    policy: comma-separated names from TRANSFORMS.

  Returns:
    [B, H, W, C]; equal to `images` where no transformation fired (always at p = 0).
  """
  for index, name in enumerate(parse_policy(policy)):
    images = TRANSFORMS[name](images, jax.random.fold_in(key, index), p)
  return images


def initial_state() -> dict[str, Array]:
  """The adaptive part of a train state: p, and the sum and count of sign(D(real)) since p last moved."""
  return {"p": jnp.zeros((), jnp.float32), "sign_sum": jnp.zeros((), jnp.float32),
          "count": jnp.zeros((), jnp.float32)}


def adapt(state: dict[str, Array], real_sign_mean: Array, num_reals: int, step: Array, *, target: float,
          interval: int, adjust_images: int) -> dict[str, Array]:
  """Adds one step's sign(D(real)) to the tally; every `interval` steps moves p by `augment.ada_update` and resets it.

  Args:
    state: from `initial_state` (or an earlier `adapt`).
    real_sign_mean: mean sign(D(real)) over the reals the discriminator saw this step.
    num_reals: how many reals that was.
    step: the step just completed (0-based); p moves after steps interval - 1, 2 * interval - 1, ...
    target: the r_t to hold (0.6).
    interval: steps between updates of p (4 in the paper).
    adjust_images: images over which p may sweep [0, 1] (500k in the paper).
  """
  sign_sum = state["sign_sum"] + real_sign_mean * num_reals
  count = state["count"] + num_reals
  due = (step + 1) % interval == 0
  moved = augment.ada_update(state["p"], sign_sum / jnp.maximum(count, 1.0), target=target, images_seen=count,
                             adjust_images=adjust_images)
  zero = jnp.zeros((), jnp.float32)
  return {"p": jnp.where(due, moved, state["p"]), "sign_sum": jnp.where(due, zero, sign_sum),
          "count": jnp.where(due, zero, count)}
