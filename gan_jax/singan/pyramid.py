"""Image pyramids of SinGAN: the scale sizes, resizing, noise maps and image loading.

Scale sizes follow the official SinGAN code (github.com/tamarott/SinGAN,
`functions.adjust_scales2image` and `creat_reals_pyramid`), for an H x W image,
factor r, min_size and max_size:

  scale1     = min(max_size / max(H, W), 1)          # the image is first shrunk so max side <= max_size
  finest     = (ceil(H * scale1), ceil(W * scale1))
  num_scales = ceil(log(min_size / min(H, W)) / log(r)) + 1          # of the *original* image
  skipped    = ceil(log(min(max_size, max(H, W)) / max(H, W)) / log(r))
  stop       = num_scales - skipped                  # index of the finest scale
  r_eff      = (min_size / min(finest)) ** (1 / stop) # >= r, so the coarsest min side is min_size
  size_n     = ceil(finest * r_eff ** (stop - n)),  n = 0 (coarsest) .. stop (finest)

giving stop + 1 scales. (When the image is shrunk this equals the simpler rule
ceil(log(min_size / min(finest)) / log(r)) + 1 in most cases, but can give one
more scale; an image already within max_size always gets one scale more than that
rule.) Every ceil here subtracts 1e-6 first so float round-off such as
25.000000001 does not add a pixel.
"""
from __future__ import annotations

import io
import math

import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import fs

SKIMAGE_PREFIX = "skimage:"
_EPS = 1e-6


def _ceil(x: float) -> int:
  return int(math.ceil(x - _EPS))


def pyramid_sizes(height: int, width: int, min_size: int = 25, max_size: int = 250,
                  scale_factor: float = 0.75) -> tuple[list[tuple[int, int]], float]:
  """Sizes of the SinGAN pyramid of an image, coarse to fine (see the module docstring).

  Args:
    height: image height before any resizing.
    width: image width before any resizing.
    min_size: min side of the coarsest scale.
    max_size: max side of the finest scale.
    scale_factor: nominal factor r between consecutive scales, 0 < r < 1.

  Returns:
    ([(h, w) of scale 0 (coarsest), ..., (h, w) of the finest scale], effective factor r_eff).

  Raises:
    ValueError: the image (after shrinking to max_size) is not larger than min_size.
  """
  long_side, short_side = max(height, width), min(height, width)
  scale1 = min(max_size / long_side, 1.0)
  finest = (_ceil(height * scale1), _ceil(width * scale1))
  if min(finest) <= min_size:
    raise ValueError(f"A {height}x{width} image shrunk to max side {max_size} is {finest[0]}x{finest[1]}, "
                     f"not larger than min_size={min_size}; lower min_size or raise max_size")
  log_r = math.log(scale_factor)
  num_scales = _ceil(math.log(min_size / short_side) / log_r) + 1
  skipped = _ceil(math.log(min(max_size, long_side) / long_side) / log_r)
  stop = num_scales - skipped
  factor = (min_size / min(finest)) ** (1.0 / stop)
  sizes = [(_ceil(finest[0] * factor ** (stop - n)), _ceil(finest[1] * factor ** (stop - n)))
           for n in range(stop + 1)]
  return sizes, factor


def resize(images: jax.Array, size: tuple[int, int]) -> jax.Array:
  """Bicubic resize of [N, H, W, C] to [N, size[0], size[1], C], antialiased when shrinking."""
  n, _, _, c = images.shape
  return jax.image.resize(images, (n, size[0], size[1], c), method="bicubic", antialias=True)


def build_pyramid(image: np.ndarray, sizes: list[tuple[int, int]]) -> list[jax.Array]:
  """Real images [1, h, w, C] in [-1, 1] of every scale, each resized from the finest one (as SinGAN)."""
  finest = jnp.clip(resize(jnp.asarray(image, jnp.float32)[None], sizes[-1]), -1.0, 1.0)
  return [jnp.clip(resize(finest, size), -1.0, 1.0) for size in sizes[:-1]] + [finest]


def noise(key: jax.Array, shape: tuple[int, ...], single_channel: bool = False) -> jax.Array:
  """Standard normal noise [N, H, W, C]; `single_channel` repeats one channel (SinGAN's coarsest-scale noise)."""
  if not single_channel:
    return jax.random.normal(key, shape)
  return jnp.broadcast_to(jax.random.normal(key, shape[:-1] + (1,)), shape)


def to_float_image(array: np.ndarray, source: str) -> np.ndarray:
  """uint8/float [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] -> float32 [H, W, 3] in [-1, 1]."""
  array = np.asarray(array)
  if array.ndim == 2:
    array = array[..., None]
  if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
    raise ValueError(f"{source} is not an image: array of shape {array.shape}")
  array = array[..., :3]
  if array.shape[-1] == 1:
    array = np.repeat(array, 3, axis=-1)
  if np.issubdtype(array.dtype, np.integer):
    array = array.astype(np.float32) / np.iinfo(array.dtype).max
  return (np.clip(array.astype(np.float32), 0.0, 1.0) * 2.0 - 1.0).astype(np.float32)


def load_image(spec: str) -> np.ndarray:
  """Loads an image as float32 [H, W, 3] in [-1, 1].

  Args:
    spec: a file path or URL (PNG, JPEG, ...) or 'skimage:NAME' for an image shipped with
      scikit-image (e.g. 'skimage:chelsea', 'skimage:coffee'), which works offline.

  Raises:
    ValueError: naming `spec` when it is missing, unreadable or not an image.
  """
  if spec.startswith(SKIMAGE_PREFIX):
    return to_float_image(_load_skimage(spec[len(SKIMAGE_PREFIX):]), repr(spec))
  if not fs.exists(spec) or fs.isdir(spec):
    raise ValueError(f"Image {spec!r} does not exist (pass a file path, a URL or skimage:NAME, e.g. skimage:chelsea)")
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(io.BytesIO(fs.read_bytes(spec))) as image:
      array = np.asarray(image.convert("RGB"))
  except (OSError, ValueError, Image.DecompressionBombError) as e:
    raise ValueError(f"{spec!r} is not a readable image ({type(e).__name__}: {e})") from e
  return to_float_image(array, repr(spec))


def _load_skimage(name: str) -> np.ndarray:
  from skimage import data  # pylint: disable=g-import-not-at-top
  loader = getattr(data, name, None) if name and not name.startswith("_") else None
  if not callable(loader):
    raise ValueError(f"Unknown scikit-image image 'skimage:{name}'; try skimage:chelsea or skimage:coffee")
  try:
    return loader()
  except Exception as e:  # pylint: disable=broad-except
    # Some skimage.data images are downloaded on first use; report that as bad input.
    raise ValueError(f"Cannot load 'skimage:{name}' ({type(e).__name__}: {e})") from e
