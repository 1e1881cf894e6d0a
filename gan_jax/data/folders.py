"""A user's image folder as uint8 arrays: one sub-folder per class, decoded once and cached.

Layout: `ROOT/<class>/*.png|jpg|jpeg|bmp`, or `ROOT/train/<class>/...` with an
optional `ROOT/test/<class>/...`. Class names are the sub-folder names, sorted;
label i is the i-th name. Hidden entries (a leading '.') are ignored.

Every image is converted to `channels` (1: grayscale, 3: RGB) and, with
`image_size > 0`, padded to a square (centred, black borders, so nothing is cut
and nothing is stretched) and resized with PIL's antialiased Lanczos filter.
Decoding a folder of thousands of JPEGs takes a while, so the arrays are cached
as a .npz named after a fingerprint of the source (file names, sizes and
modification times, and the conversion settings): a rerun loads the cache, a
changed folder gets a new fingerprint and is decoded again.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json

import numpy as np
from absl import logging

from gan_jax import fs

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
CHANNELS = (0, 1, 3)
_PIL_MODES = {1: "L", 3: "RGB"}


class FolderError(ValueError):
  """A folder that cannot serve as a labelled data set (the message names the file or folder)."""


@dataclasses.dataclass(frozen=True)
class ImageFolder:
  """The files of a class-per-folder data set.

  Attributes:
    root: the folder given by the user.
    class_names: sorted class folder names; label i is class_names[i].
    files: split ('train', and 'test' when the folder has a test/ tree) -> ((path, label), ...).
  """
  root: str
  class_names: tuple[str, ...]
  files: dict[str, tuple[tuple[str, int], ...]]

  @property
  def has_test(self) -> bool:
    return "test" in self.files

  def first_image(self) -> str:
    return self.files["train"][0][0]


def _visible(names):
  return [n for n in names if not n.startswith(".")]


def _class_files(folder: str, class_names) -> tuple[tuple[str, int], ...]:
  files = []
  for label, name in enumerate(class_names):
    class_dir = fs.join(folder, name)
    if not fs.isdir(class_dir):
      raise FolderError(f"{folder} has no class folder '{name}' (the train split has classes "
                        f"{', '.join(class_names)})")
    entries = [fs.join(class_dir, n) for n in _visible(fs.listdir(class_dir))]
    entries = [e for e in entries if not fs.isdir(e)]
    if not entries:
      raise FolderError(f"class folder {class_dir} is empty; every class needs at least one image")
    files += [(e, label) for e in entries]
  return tuple(files)


def scan(root: str) -> ImageFolder:
  """Lists a class-per-folder data set without decoding anything.

  Raises:
    FolderError: the path does not exist, is not a folder, holds fewer than two class
      folders, or a class folder is empty.
  """
  if not fs.exists(root):
    raise FolderError(f"image folder {root} does not exist")
  if not fs.isdir(root):
    raise FolderError(f"{root} is a file; give a folder with one sub-folder per class")
  entries = _visible(fs.listdir(root))
  train_root = fs.join(root, "train") if "train" in entries else root
  class_names = tuple(n for n in _visible(fs.listdir(train_root)) if fs.isdir(fs.join(train_root, n)))
  if train_root == root:
    class_names = tuple(n for n in class_names if n != "test")
  if len(class_names) < 2:
    raise FolderError(f"{train_root} has {len(class_names)} class folder(s) ({', '.join(class_names) or 'none'}); "
                      f"a labelled data set needs at least two (one sub-folder per class)")
  files = {"train": _class_files(train_root, class_names)}
  if "test" in entries and train_root != root:
    files["test"] = _class_files(fs.join(root, "test"), class_names)
  return ImageFolder(root, class_names, files)


def _open(path: str):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image = Image.open(io.BytesIO(fs.read_bytes(path)))
  image.load()
  return image


def peek_shape(folder: ImageFolder, image_size: int, channels: int) -> tuple[int, int, int]:
  """(H, W, C) the arrays will have: from the settings, else from the folder's first image.

  channels 0 takes 3 if the first image has colour, else 1; image_size 0 keeps the first
  image's size (decoding then requires every image to have it).
  """
  if image_size and channels:
    return image_size, image_size, channels
  try:
    first = _open(folder.first_image())
  except Exception as e:  # pylint: disable=broad-except
    raise FolderError(f"{folder.first_image()} is not an image PIL can read ({type(e).__name__})") from e
  if not channels:
    channels = 1 if first.mode in ("1", "L", "LA", "I", "I;16", "F") else 3
  if image_size:
    return image_size, image_size, channels
  return first.height, first.width, channels


def conform(image, image_size: int, channels: int) -> np.ndarray:
  """A PIL image as uint8 [H, W, channels], padded to a square and resized when image_size > 0."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image = image.convert(_PIL_MODES[channels])
  if image_size and (image.width, image.height) != (image_size, image_size):
    side = max(image.width, image.height)
    if image.width != image.height:
      square = Image.new(image.mode, (side, side))
      square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
      image = square
    image = image.resize((image_size, image_size), Image.Resampling.LANCZOS)
  array = np.asarray(image, np.uint8)
  return array[..., None] if array.ndim == 2 else array


def conform_array(image: np.ndarray, image_size: int, channels: int) -> np.ndarray:
  """`conform` for a uint8 [H, W, C] (or [H, W]) array."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image = np.asarray(image, np.uint8)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  return conform(Image.fromarray(image), image_size, channels)


def convert_arrays(images: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
  """uint8 images [N, ...] converted to [N, *shape] (the array itself when it has that shape)."""
  images = np.asarray(images, np.uint8)
  if images.ndim == 3:
    images = images[..., None]
  if tuple(images.shape[1:]) == tuple(shape):
    return images
  size = shape[0] if shape[0] == shape[1] else 0
  out = np.stack([conform_array(image, size, shape[2]) for image in images]) if len(images) else (
      np.zeros((0, *shape), np.uint8))
  if out.shape[1:] != tuple(shape):
    raise ValueError(f"cannot convert images of shape {list(images.shape[1:])} to {list(shape)}: set "
                     f"config.image_size to resize them")
  return out


def held_out_split(labels: np.ndarray, fraction: float, seed: int, class_names) -> tuple[np.ndarray, np.ndarray]:
  """(train rows, test rows): a stratified, seeded share `fraction` of each class held out as the test split.

  Each class keeps round(fraction * n) images (at least one) for the test split and the rest for training.

  Raises:
    FolderError: a class has too few images for both splits.
  """
  train, test = [], []
  for c, name in enumerate(class_names):
    members = np.flatnonzero(labels == c)
    num_test = max(1, int(round(fraction * len(members))))
    if len(members) - num_test < 1:
      raise FolderError(f"class '{name}' has {len(members)} image(s); holding out test_fraction={fraction} of it "
                        f"as the test split leaves none to train on (give it more images, or a test/ folder)")
    order = np.random.default_rng([seed, c]).permutation(members)
    test.append(order[:num_test])
    train.append(order[num_test:])
  return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def fingerprint(files, image_size: int, channels: int) -> str:
  """A digest of every file's name, size and modification time, and of the conversion settings."""
  digest = hashlib.sha256(json.dumps({"image_size": image_size, "channels": channels}).encode())
  for path, label in files:
    size, mtime = fs.signature(path)
    digest.update(f"{path}\0{label}\0{size}\0{mtime}\n".encode())
  return digest.hexdigest()


def decode(files, shape: tuple[int, int, int], *, strict: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
  """Decodes and converts `files` ((path, label) pairs) to `shape`.

  Returns:
    (uint8 images [N, H, W, C], int32 labels [N], paths skipped as not images).

  Raises:
    FolderError: a file is not an image and `strict`, or an image's size differs from
      `shape` while no image_size asks for resizing.
  """
  height, width, channels = shape
  resize_to = height if height == width else 0
  images, labels, skipped = [], [], []
  for path, label in files:
    try:
      image = _open(path)
    except Exception as e:  # pylint: disable=broad-except
      if strict:
        raise FolderError(f"{path} is not an image PIL can read ({type(e).__name__}); remove it, or set "
                          f"config.strict_images=False to skip such files") from e
      skipped.append(path)
      continue
    array = conform(image, resize_to, channels)
    if array.shape != shape:
      raise FolderError(f"{path} is {image.width}x{image.height}, unlike the first image ({width}x{height}); "
                        f"set config.image_size to resize every image to one size")
    images.append(array)
    labels.append(label)
  if skipped:
    logging.warning("Skipped %d file(s) that are not images, e.g. %s (config.strict_images=True refuses them)",
                    len(skipped), skipped[0])
  if not images:
    raise FolderError(f"no readable image among {len(files)} files")
  return np.stack(images), np.asarray(labels, np.int32), skipped


def load_split(folder: ImageFolder, split: str, shape: tuple[int, int, int], *, strict: bool,
               cache_dir: str | None) -> tuple[np.ndarray, np.ndarray, bool]:
  """The decoded arrays of one split, from the cache when its fingerprint matches.

  Args:
    folder: from `scan`.
    split: 'train' or 'test' (a key of folder.files).
    shape: (H, W, C) from `peek_shape`.
    strict: refuse files that are not images instead of skipping them.
    cache_dir: where the .npz caches live (None: decode without caching).

  Returns:
    (images, labels, whether they came from the cache).
  """
  files = folder.files[split]
  key = fingerprint(files, shape[0] if shape[0] == shape[1] else 0, shape[2])
  path = fs.join(cache_dir, f"{split}-{key[:20]}.npz") if cache_dir else None
  class_labels = np.asarray([label for _, label in files])
  if path and fs.exists(path):
    arrays = fs.load_npz(path)
    if arrays["image"].shape[1:] == shape:
      return arrays["image"], arrays["label"], True
  if cache_dir:
    stale = [n for n in fs.listdir(cache_dir) if n.startswith(f"{split}-") and n.endswith(".npz")]
    if stale:
      logging.warning("%s changed since it was decoded into %s (%d files now); decoding it again", folder.root,
                      cache_dir, len(files))
      for name in stale:
        fs.remove(fs.join(cache_dir, name))
  images, labels, skipped = decode(files, shape, strict=strict)
  missing = sorted(set(range(len(folder.class_names))) - set(labels.tolist()))
  if missing:
    raise FolderError(f"class folder '{folder.class_names[missing[0]]}' of {folder.root} has no readable image "
                      f"({int(np.sum(class_labels == missing[0]))} files, none an image)")
  if path:
    fs.save_npz(path, image=images, label=labels, skipped=np.asarray(skipped, dtype=str))
  return images, labels, False
