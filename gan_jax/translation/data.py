"""The data of a translation run: two image domains A and B, paired or not, and a test set.

`config.data` chooses the source:

* `edges2digits` (paired, built offline from MNIST/Fashion-MNIST): A = the Sobel edge
  magnitude of an image, B = the image.
* `thin2thick` (unpaired): A = images from one half of the train split, B = the other
  half dilated with a (2r+1)x(2r+1) square, so no pair is ever shown; the true map is
  the dilation, and the test set holds test images with their dilations.
* `folder:<path>`: a pix2pix folder (`train/` and `test/` or `val/`, each file A|B side
  by side) or a CycleGAN folder (`trainA/`, `trainB/`, `testA/`, `testB/`).
* `tfds:cycle_gan/<name>` (horse2zebra, apple2orange, ...): TFDS's unpaired splits.

Digit images are padded from 28 to `image_size` (32) with black borders, since the
generators halve the side repeatedly; nothing is resized.
"""
from __future__ import annotations

import dataclasses
import io
from typing import Callable

import numpy as np

from gan_jax import fs
from gan_jax.data import folders
from gan_jax.data import sources

DIGIT_TASKS = ("edges2digits", "thin2thick")
DIGIT_SOURCES = ("mnist", "fashion_mnist")
_UNPAIRED_FOLDERS = ("trainA", "trainB", "testA", "testB")
_TASK_TAG = 0x7A5C  # seeds the thin2thick split, apart from every other use of config.seed


@dataclasses.dataclass(frozen=True)
class TranslationData:
  """uint8 [N, S, S, C] images of both domains.

  Attributes:
    name: the source, as config.data gives it.
    train_a: domain A's training images.
    train_b: domain B's training images.
    paired: train_b[i] is the translation of train_a[i].
    test_a: test inputs.
    test_b: test images of domain B; the true translations of test_a when `test_paired`.
    test_paired: whether test errors against the truth can be computed.
    true_pairs: for an unpaired task with a known answer, train_a with its true
      translations (the training set of the paired upper bound); else None.
  """
  name: str
  train_a: np.ndarray
  train_b: np.ndarray
  paired: bool
  test_a: np.ndarray
  test_b: np.ndarray
  test_paired: bool
  true_pairs: tuple[np.ndarray, np.ndarray] | None = None

  @property
  def side(self) -> int:
    return int(self.train_a.shape[1])

  @property
  def channels(self) -> tuple[int, int]:
    return int(self.train_a.shape[-1]), int(self.train_b.shape[-1])


def pad_to(images: np.ndarray, side: int) -> np.ndarray:
  """Centres [N, H, W, C] images on a black `side` x `side` canvas."""
  n, h, w, c = images.shape
  if h > side or w > side:
    raise ValueError(f"image_size={side} is smaller than the {h}x{w} images; use at least {max(h, w)}")
  top, left = (side - h) // 2, (side - w) // 2
  out = np.zeros((n, side, side, c), images.dtype)
  out[:, top:top + h, left:left + w] = images
  return out


def sobel_edges(images: np.ndarray) -> np.ndarray:
  """Sobel gradient magnitude of uint8 [N, H, W, 1] images (zero outside), each scaled so its maximum is 255."""
  x = np.pad(images[..., 0].astype(np.float64), ((0, 0), (1, 1), (1, 1)))
  h, w = images.shape[1:3]
  window = lambda dy, dx: x[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
  gx = (window(-1, 1) + 2 * window(0, 1) + window(1, 1)) - (window(-1, -1) + 2 * window(0, -1) + window(1, -1))
  gy = (window(1, -1) + 2 * window(1, 0) + window(1, 1)) - (window(-1, -1) + 2 * window(-1, 0) + window(-1, 1))
  magnitude = np.hypot(gx, gy)
  peak = magnitude.reshape(len(images), -1).max(axis=1)[:, None, None]
  scaled = np.where(peak > 0, magnitude * 255.0 / np.maximum(peak, 1e-12), 0.0)
  return np.rint(scaled).astype(np.uint8)[..., None]


def dilate(images: np.ndarray, radius: int) -> np.ndarray:
  """Grey-level dilation of [N, H, W, C] images by a (2r+1)x(2r+1) square (zero outside)."""
  if radius < 1:
    raise ValueError(f"thicken must be a positive radius in pixels, got {radius}")
  h, w = images.shape[1:3]
  x = np.pad(images, ((0, 0), (radius, radius), (radius, radius), (0, 0)))
  shifts = [x[:, dy:dy + h, dx:dx + w] for dy in range(2 * radius + 1) for dx in range(2 * radius + 1)]
  return np.max(np.stack(shifts), axis=0)


def _first(images: np.ndarray, limit: int) -> np.ndarray:
  return images[:limit] if limit else images


def _digits(config, split: str, idx_dir) -> np.ndarray:
  images, _ = sources.load_arrays(config.dataset, split, idx_dir=idx_dir)
  return pad_to(images, config.image_size or 32)


def edges2digits(config, idx_dir) -> TranslationData:
  """Paired: A = Sobel edges of each digit, B = the digit."""
  train = _first(_digits(config, "train", idx_dir), config.train_examples)
  test = _first(_digits(config, "test", idx_dir), config.test_examples)
  return TranslationData("edges2digits", sobel_edges(train), train, True, sobel_edges(test), test, True)


def thin2thick(config, idx_dir) -> TranslationData:
  """Unpaired: A from one half of the (shuffled) train split, B = the other half dilated."""
  train = _digits(config, "train", idx_dir)
  order = np.random.default_rng([config.seed, _TASK_TAG]).permutation(len(train))
  half = len(train) // 2
  a, b_source = train[order[:half]], train[order[half:]]
  a, b_source = _first(a, config.train_examples), _first(b_source, config.train_examples)
  test = _first(_digits(config, "test", idx_dir), config.test_examples)
  radius = int(config.thicken)
  return TranslationData("thin2thick", a, dilate(b_source, radius), False, test, dilate(test, radius), True,
                         true_pairs=(a, dilate(a, radius)))


def _read_image(path: str, image_size: int, channels: int) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    image = Image.open(io.BytesIO(fs.read_bytes(path)))
    image.load()
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"{path} is not an image PIL can read ({type(e).__name__})") from e
  channels = channels or (1 if image.mode in ("1", "L", "LA", "I", "I;16", "F") else 3)
  return folders.conform(image, image_size, channels)


def _image_files(folder: str) -> list[str]:
  if not fs.isdir(folder):
    raise ValueError(f"{folder} does not exist or is not a folder")
  names = sorted(n for n in fs.listdir(folder) if n.lower().endswith(folders.IMAGE_SUFFIXES) and not n.startswith("."))
  if not names:
    raise ValueError(f"{folder} holds no image ({', '.join(folders.IMAGE_SUFFIXES)})")
  return [fs.join(folder, n) for n in names]


def _stack(arrays: list[np.ndarray], files: list[str]) -> np.ndarray:
  """One array of same-shaped images; ValueError naming the first file whose shape differs."""
  for array, path in zip(arrays, files):
    if array.shape != arrays[0].shape:
      raise ValueError(f"{path} is {array.shape[1]}x{array.shape[0]}x{array.shape[2]} but {files[0]} is "
                       f"{arrays[0].shape[1]}x{arrays[0].shape[0]}x{arrays[0].shape[2]}; set config.image_size "
                       "and config.channels to convert them to one shape")
  return np.stack(arrays)


def _read_domain(folder: str, config, limit: int) -> np.ndarray:
  files = _first(np.asarray(_image_files(folder)), limit).tolist()
  return _stack([_read_image(f, config.image_size, config.channels) for f in files], files)


def _read_side_by_side(folder: str, config, limit: int) -> tuple[np.ndarray, np.ndarray]:
  """A pix2pix folder: each file holds A (left half) and B (right half)."""
  files = _first(np.asarray(_image_files(folder)), limit).tolist()
  a, b = [], []
  for path in files:
    whole = _read_image(path, 0, config.channels)
    height, width = whole.shape[:2]
    if width % 2:
      raise ValueError(f"{path} is {width} px wide; a pix2pix file holds A and B side by side (even width)")
    for half, out in ((whole[:, :width // 2], a), (whole[:, width // 2:], b)):
      out.append(folders.conform_array(half, config.image_size, whole.shape[-1]) if config.image_size else half)
  return _stack(a, files), _stack(b, files)


def _check_same_size(a: np.ndarray, b: np.ndarray, where: str) -> None:
  if a.shape[1:3] != b.shape[1:3]:
    raise ValueError(f"{where}: A images are {a.shape[2]}x{a.shape[1]} but B images are {b.shape[2]}x{b.shape[1]}; "
                     "set config.image_size to resize both")


def folder(config, path: str) -> TranslationData:
  """A pix2pix folder (train/, test/ or val/) or a CycleGAN folder (trainA/, trainB/, testA/, testB/)."""
  if not fs.isdir(path):
    raise ValueError(f"{path} does not exist or is not a folder")
  name = f"folder:{path}"
  if fs.isdir(fs.join(path, "train")):
    test_folder = next((fs.join(path, s) for s in ("test", "val") if fs.isdir(fs.join(path, s))), None)
    if test_folder is None:
      raise ValueError(f"{path} has train/ but neither test/ nor val/ (pix2pix layout)")
    train_a, train_b = _read_side_by_side(fs.join(path, "train"), config, config.train_examples)
    test_a, test_b = _read_side_by_side(test_folder, config, config.test_examples)
    _check_same_size(train_a, test_a, path)
    return TranslationData(name, train_a, train_b, True, test_a, test_b, True)
  missing = [s for s in _UNPAIRED_FOLDERS if not fs.isdir(fs.join(path, s))]
  if missing:
    raise ValueError(f"{path} is neither a pix2pix folder (train/ with test/ or val/) nor a CycleGAN folder: "
                     f"missing {', '.join(s + '/' for s in missing)}")
  parts = {s: _read_domain(fs.join(path, s), config, config.test_examples if s.startswith("test")
                           else config.train_examples) for s in _UNPAIRED_FOLDERS}
  _check_same_size(parts["trainA"], parts["trainB"], path)
  _check_same_size(parts["trainA"], parts["testA"], path)
  return TranslationData(name, parts["trainA"], parts["trainB"], False, parts["testA"], parts["testB"], False)


def tfds_cycle_gan(config, target: str, data_dir: str | None = None, allow_download: bool = True) -> TranslationData:
  """TFDS's 'cycle_gan/<name>' splits trainA, trainB, testA, testB (unpaired, test truth unknown)."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise sources.DataUnavailableError(f"tfds:{target} needs tensorflow-datasets ({e})") from e

  def read(split: str, limit: int) -> np.ndarray:
    def load(download: bool):
      return tfds.load(target, split=split, data_dir=data_dir, download=download)
    try:
      ds = sources.prepared_or_downloaded(load, allow_download)
    except Exception as e:  # pylint: disable=broad-except
      raise sources.DataUnavailableError(
          f"Cannot load tfds:{target} ({split}): {type(e).__name__}: {' '.join(str(e).split())[:200]}. Run once "
          "with internet so TFDS can prepare it in TFDS_DATA_DIR, or use --config.data=folder:<path>") from e
    if limit:
      ds = ds.take(limit)
    images = [folders.conform_array(example["image"], config.image_size, config.channels or 3)
              for example in tfds.as_numpy(ds)]
    return np.stack(images)

  parts = {s: read(s, config.test_examples if s.startswith("test") else config.train_examples)
           for s in _UNPAIRED_FOLDERS}
  return TranslationData(f"tfds:{target}", parts["trainA"], parts["trainB"], False, parts["testA"],
                         parts["testB"], False)


# config.data -> loader(config, idx_dir); 'folder:' and 'tfds:' are prefixes.
TASKS: dict[str, Callable] = {"edges2digits": edges2digits, "thin2thick": thin2thick}


def check_source(config) -> None:
  """config.data and the fields it needs, checked before anything is read."""
  data = str(config.data)
  if data in TASKS:
    if config.dataset not in DIGIT_SOURCES:
      raise ValueError(f"Unknown dataset '{config.dataset}' for {data}; choose one of: {', '.join(DIGIT_SOURCES)}")
    if config.image_size and config.image_size < 28:
      raise ValueError(f"image_size={config.image_size} is smaller than the 28x28 digits; use 32 (or 0 for 32)")
    return
  if data.startswith("tfds:"):
    if not data[len("tfds:"):].startswith("cycle_gan/"):
      raise ValueError(f"Unknown data '{data}': TFDS translation data sets are tfds:cycle_gan/<name> "
                       "(e.g. tfds:cycle_gan/horse2zebra)")
    if not config.image_size:
      raise ValueError(f"{data} needs config.image_size (e.g. 64 or 256)")
    return
  if data.startswith("folder:"):
    return
  raise ValueError(f"Unknown data '{data}'; choose one of: {', '.join(TASKS)}, folder:<path>, tfds:cycle_gan/<name>")


def reversed_direction(data: TranslationData) -> TranslationData:
  """The same data translated the other way: B is the input, A the target (thin2thick becomes thick2thin)."""
  pairs = None if data.true_pairs is None else data.true_pairs[::-1]
  return dataclasses.replace(data, train_a=data.train_b, train_b=data.train_a, test_a=data.test_b,
                             test_b=data.test_a, true_pairs=pairs)


def load(config, idx_dir: str | None = None) -> TranslationData:
  """The TranslationData that config.data names (see the module docstring), B -> A when config.direction is BtoA."""
  check_source(config)
  data = str(config.data)
  if data in TASKS:
    loaded = TASKS[data](config, idx_dir)
  elif data.startswith("tfds:"):
    loaded = tfds_cycle_gan(config, data[len("tfds:"):])
  else:
    loaded = folder(config, data[len("folder:"):])
  return reversed_direction(loaded) if config.direction == "BtoA" else loaded
