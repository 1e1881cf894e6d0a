"""The papers' training-time jitter for translation data: enlarge, random crop back, random mirror.

pix2pix and CycleGAN resize 256 px images to 286 and crop a random 256 px window
(and mirror at random) on every draw; `jitter` does that on device, per image, with
the same crop and mirror for both images of a pair. Randomness comes from the
step's key, so a resumed run draws the same windows. Digits keep it off: a
mirrored digit is not a digit.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

LOAD_RATIO = 286 / 256  # the references' load size over crop size


def _crop_and_mirror(images: jax.Array, key: jax.Array, jitter: bool, flip: bool) -> jax.Array:
  """One draw per image of `images` [B, H, W, C]: enlarge and crop back (jitter), mirror (flip)."""
  batch, side = images.shape[0], images.shape[1]
  crop_key, flip_key = jax.random.split(key)
  if jitter:
    load = round(side * LOAD_RATIO)
    big = jax.image.resize(images, (batch, load, load, images.shape[-1]), "bilinear")
    offsets = jax.random.randint(crop_key, (batch, 2), 0, load - side + 1)
    images = jax.vmap(lambda x, o: jax.lax.dynamic_slice(x, (o[0], o[1], 0), (side, side, x.shape[-1])))(big, offsets)
  if flip:
    mirror = jax.random.bernoulli(flip_key, 0.5, (batch, 1, 1, 1))
    images = jnp.where(mirror, images[:, :, ::-1], images)
  return images


def jitter_batch(batch: dict[str, jax.Array], key: jax.Array, *, paired: bool, jitter: bool,
                 flip: bool) -> dict[str, jax.Array]:
  """{'a', 'b'} images [B, H, W, C] transformed; a pair shares its crop and mirror, unpaired domains draw apart."""
  if not (jitter or flip):
    return batch
  if paired:
    split = batch["a"].shape[-1]
    both = _crop_and_mirror(jnp.concatenate([batch["a"], batch["b"]], axis=-1), key, jitter, flip)
    return {"a": both[..., :split], "b": both[..., split:]}
  key_a, key_b = jax.random.split(key)
  return {"a": _crop_and_mirror(batch["a"], key_a, jitter, flip),
          "b": _crop_and_mirror(batch["b"], key_b, jitter, flip)}
