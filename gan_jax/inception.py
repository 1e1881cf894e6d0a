"""Inception-v3 pool features for FID, as the reference implementation computes them.

The network is the FID variant of Inception-v3 that pytorch-fid ports from the TensorFlow
FID code (Heusel et al., 2017): torchvision's block layout, with the FID blocks' average
pools excluding padding and the last block max-pooling its pool branch. Images in [0, 1]
are resized to 299x299 (bilinear, half-pixel centres, no antialiasing, as
`F.interpolate(align_corners=False)`), scaled to [-1, 1], and the 2048 features are the
global average of the last block.

Weights: pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (a PyTorch state dict; reading
it needs torch, present on the GPU machines), or an `.npz` of the same state dict (`convert`
writes one, for machines without torch). The file is not downloaded: give its path with
`--config.fid_weights=PATH` or `$GAN_JAX_FID_WEIGHTS`. A `.pth` is checked against the
SHA-256 prefix its name carries (6726825d; the full digest was not available offline).
"""
from __future__ import annotations

import hashlib
import os
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import fs

WEIGHTS_ENV = "GAN_JAX_FID_WEIGHTS"
WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_SHA256_PREFIX = "6726825d"
INPUT_SIZE = 299
FEATURES = 2048


class WeightsError(ValueError):
  """The FID weights are missing, unreadable or not the pinned file."""


class BasicConv(nn.Module):
  """Convolution without bias, BatchNorm (eps 0.001, inference statistics), ReLU."""
  features: int
  kernel: Sequence[int]
  strides: int = 1
  padding: Any = 0

  @nn.compact
  def __call__(self, x):
    pad = self.padding if isinstance(self.padding, (tuple, list)) else (self.padding, self.padding)
    x = nn.Conv(self.features, tuple(self.kernel), strides=self.strides, use_bias=False,
                padding=((pad[0], pad[0]), (pad[1], pad[1])), name="conv")(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
    return nn.relu(x)


def _avg_pool_excluding_padding(x):
  """3x3, stride 1, padding 1, averaging the valid entries only (count_include_pad=False)."""
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool(x, stride: int, padding: int = 0):
  return nn.max_pool(x, (3, 3), strides=(stride, stride), padding=((padding, padding), (padding, padding)))


class InceptionA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv(64, (1, 1), name="branch1x1")(x)
    b5 = BasicConv(64, (5, 5), padding=2, name="branch5x5_2")(BasicConv(48, (1, 1), name="branch5x5_1")(x))
    b3 = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
    b3 = BasicConv(96, (3, 3), padding=1, name="branch3x3dbl_3")(BasicConv(96, (3, 3), padding=1,
                                                                           name="branch3x3dbl_2")(b3))
    pool = BasicConv(self.pool_features, (1, 1), name="branch_pool")(_avg_pool_excluding_padding(x))
    return jnp.concatenate([b1, b5, b3, pool], axis=-1)


class InceptionB(nn.Module):
  @nn.compact
  def __call__(self, x):
    b3 = BasicConv(384, (3, 3), strides=2, name="branch3x3")(x)
    d = BasicConv(96, (3, 3), padding=1, name="branch3x3dbl_2")(BasicConv(64, (1, 1), name="branch3x3dbl_1")(x))
    d = BasicConv(96, (3, 3), strides=2, name="branch3x3dbl_3")(d)
    return jnp.concatenate([b3, d, _max_pool(x, 2)], axis=-1)


class InceptionC(nn.Module):
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c = self.channels_7x7
    b1 = BasicConv(192, (1, 1), name="branch1x1")(x)
    b7 = BasicConv(c, (1, 1), name="branch7x7_1")(x)
    b7 = BasicConv(c, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
    b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
    d = BasicConv(c, (1, 1), name="branch7x7dbl_1")(x)
    for i, (kernel, pad, out) in enumerate([((7, 1), (3, 0), c), ((1, 7), (0, 3), c), ((7, 1), (3, 0), c),
                                            ((1, 7), (0, 3), 192)]):
      d = BasicConv(out, kernel, padding=pad, name=f"branch7x7dbl_{i + 2}")(d)
    pool = BasicConv(192, (1, 1), name="branch_pool")(_avg_pool_excluding_padding(x))
    return jnp.concatenate([b1, b7, d, pool], axis=-1)


class InceptionD(nn.Module):
  @nn.compact
  def __call__(self, x):
    b3 = BasicConv(320, (3, 3), strides=2, name="branch3x3_2")(BasicConv(192, (1, 1), name="branch3x3_1")(x))
    b7 = BasicConv(192, (1, 1), name="branch7x7x3_1")(x)
    b7 = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
    b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
    b7 = BasicConv(192, (3, 3), strides=2, name="branch7x7x3_4")(b7)
    return jnp.concatenate([b3, b7, _max_pool(x, 2)], axis=-1)


class InceptionE(nn.Module):
  """The last blocks; `max_pool` is the FID variant of Mixed_7c (a max-pooled pool branch)."""
  max_pool: bool = False

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv(320, (1, 1), name="branch1x1")(x)
    b3 = BasicConv(384, (1, 1), name="branch3x3_1")(x)
    b3 = jnp.concatenate([BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                          BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], axis=-1)
    d = BasicConv(384, (3, 3), padding=1, name="branch3x3dbl_2")(BasicConv(448, (1, 1), name="branch3x3dbl_1")(x))
    d = jnp.concatenate([BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(d),
                         BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(d)], axis=-1)
    pooled = _max_pool(x, 1, 1) if self.max_pool else _avg_pool_excluding_padding(x)
    pool = BasicConv(192, (1, 1), name="branch_pool")(pooled)
    return jnp.concatenate([b1, b3, d, pool], axis=-1)


class FIDInceptionV3(nn.Module):
  """[N, 299, 299, 3] in [-1, 1] -> pool features [N, 2048]."""

  @nn.compact
  def __call__(self, x):
    x = BasicConv(32, (3, 3), strides=2, name="Conv2d_1a_3x3")(x)
    x = BasicConv(32, (3, 3), name="Conv2d_2a_3x3")(x)
    x = BasicConv(64, (3, 3), padding=1, name="Conv2d_2b_3x3")(x)
    x = _max_pool(x, 2)
    x = BasicConv(80, (1, 1), name="Conv2d_3b_1x1")(x)
    x = BasicConv(192, (3, 3), name="Conv2d_4a_3x3")(x)
    x = _max_pool(x, 2)
    x = InceptionA(32, name="Mixed_5b")(x)
    x = InceptionA(64, name="Mixed_5c")(x)
    x = InceptionA(64, name="Mixed_5d")(x)
    x = InceptionB(name="Mixed_6a")(x)
    for name, channels in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
      x = InceptionC(channels, name=name)(x)
    x = InceptionD(name="Mixed_7a")(x)
    x = InceptionE(name="Mixed_7b")(x)
    x = InceptionE(max_pool=True, name="Mixed_7c")(x)
    return jnp.mean(x, axis=(1, 2))


def resize_bilinear(images: jax.Array, size: int = INPUT_SIZE) -> jax.Array:
  """Bilinear resize with half-pixel centres and edge clamping, without antialiasing.

  This is PyTorch's `F.interpolate(mode='bilinear', align_corners=False)`, which the
  reference FID code uses (jax.image.resize antialiases when shrinking, which it does not).
  """
  def axis_weights(n_in):
    coords = (jnp.arange(size, dtype=jnp.float32) + 0.5) * (n_in / size) - 0.5
    coords = jnp.clip(coords, 0.0, n_in - 1)
    low = jnp.floor(coords).astype(jnp.int32)
    high = jnp.minimum(low + 1, n_in - 1)
    frac = coords - low
    return low, high, frac

  _, height, width, _ = images.shape
  y0, y1, fy = axis_weights(height)
  x0, x1, fx = axis_weights(width)
  rows = images[:, y0] * (1 - fy)[None, :, None, None] + images[:, y1] * fy[None, :, None, None]
  return rows[:, :, x0] * (1 - fx)[None, None, :, None] + rows[:, :, x1] * fx[None, None, :, None]


def preprocess(images: jax.Array, size: int = INPUT_SIZE) -> jax.Array:
  """Images in [0, 1], [N, H, W, 1 or 3] -> the network's input: RGB, size x size (299 for FID), in [-1, 1]."""
  if images.shape[-1] == 1:
    images = jnp.repeat(images, 3, axis=-1)
  return 2.0 * resize_bilinear(images.astype(jnp.float32), size) - 1.0


def variables_from_state_dict(state: dict[str, np.ndarray]) -> dict:
  """Flax variables from a pytorch-fid state dict (the `fc.*` classifier entries are not used)."""
  params: dict = {}
  stats: dict = {}
  for key, value in state.items():
    *path, layer, leaf = key.split(".")
    if layer == "fc" or (path and path[0] == "fc"):
      continue
    value = np.asarray(value, np.float32)
    if layer == "conv" and leaf == "weight":
      _nest(params, path + [layer])["kernel"] = value.transpose(2, 3, 1, 0)  # [O, I, kh, kw] -> [kh, kw, I, O]
    elif layer == "bn" and leaf in ("weight", "bias"):
      _nest(params, path + [layer])["scale" if leaf == "weight" else "bias"] = value
    elif layer == "bn" and leaf in ("running_mean", "running_var"):
      _nest(stats, path + [layer])["mean" if leaf == "running_mean" else "var"] = value
    elif leaf != "num_batches_tracked":
      raise WeightsError(f"unexpected entry {key!r} in the FID weights: not pytorch-fid's Inception-v3")
  return {"params": params, "batch_stats": stats}


def _nest(tree: dict, path: list[str]) -> dict:
  for name in path:
    tree = tree.setdefault(name, {})
  return tree


def weights_path(configured: str = "") -> str:
  """The weights file: the configured path, else $GAN_JAX_FID_WEIGHTS; WeightsError saying how to provide it."""
  path = configured or os.environ.get(WEIGHTS_ENV, "")
  if not path:
    raise WeightsError(f"FID needs the Inception weights, which cannot be downloaded here: get {WEIGHTS_NAME} "
                       f"(pytorch-fid's release) and pass --config.fid_weights=PATH or set {WEIGHTS_ENV}=PATH")
  if not fs.exists(path):
    raise WeightsError(f"FID weights {path} do not exist (from --config.fid_weights or ${WEIGHTS_ENV})")
  return path


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """The state dict of a .pth (via torch, SHA-256 prefix checked) or .npz file."""
  data = fs.read_bytes(path)
  if path.endswith(".npz"):
    import io  # pylint: disable=g-import-not-at-top
    with np.load(io.BytesIO(data)) as arrays:
      return {k: arrays[k] for k in arrays.files}
  digest = hashlib.sha256(data).hexdigest()
  if not digest.startswith(WEIGHTS_SHA256_PREFIX):
    raise WeightsError(f"{path} has SHA-256 {digest[:16]}..., not pytorch-fid's FID Inception weights "
                       f"({WEIGHTS_NAME}, SHA-256 {WEIGHTS_SHA256_PREFIX}...)")
  return _torch_state_dict(data, path)


def _torch_state_dict(data: bytes, path: str) -> dict[str, np.ndarray]:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise WeightsError(f"reading {path} needs torch (pip install torch); or convert it once where torch is "
                       f"installed: python -c 'from gan_jax import inception; inception.convert(\"{path}\", "
                       f"\"fid_inception.npz\")'") from e
  import io  # pylint: disable=g-import-not-at-top
  state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
  return {k: v.numpy() for k, v in state.items()}


def convert(pth: str, npz: str) -> None:
  """Writes the .pth weights as an .npz that `read_state_dict` reads without torch."""
  fs.save_npz(npz, **read_state_dict(pth))


def load_variables(path: str) -> dict:
  """Flax variables of `FIDInceptionV3` from a weights file."""
  return variables_from_state_dict(read_state_dict(path))


def make_feature_fn(variables: dict, batch_size: int = 200, size: int = INPUT_SIZE):
  """`features(images uint8 [N, H, W, C]) -> float64 [N, 2048]`, jitted, in chunks of one compiled shape.

  `size` is the network's input side: 299 for FID (smaller only to test the network quickly).
  """
  from gan_jax import batching  # pylint: disable=g-import-not-at-top
  model = FIDInceptionV3()
  apply = jax.jit(lambda v, x: model.apply(v, preprocess(x / 255.0, size)))

  def features(images: np.ndarray) -> np.ndarray:
    out = batching.map_chunks(lambda _, rows: apply(variables, np.asarray(images[rows], np.float32)), len(images),
                              batch_size)
    return np.asarray(out, np.float64)

  return features
