"""Reader for the IDX files that MNIST and Fashion-MNIST ship as (NumPy only).

IDX layout: two zero bytes, a dtype code, the number of dimensions, one big-endian
uint32 per dimension, then the payload in big-endian C order. This module never
imports TensorFlow, so GPU/TPU machines without it can still read the offline
copies under `$GAN_JAX_IDX_DIR` (a local folder or a URL such as gs://bucket/datasets).
"""
from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from gan_jax import fs

# The dtype codes of the IDX specification; the payload is big-endian.
IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
SPLIT_PREFIXES = {"train": "train", "test": "t10k"}
_HEADER_BYTES = 4
_DIM_BYTES = 4


class IdxFormatError(ValueError):
  """An IDX file is missing, truncated or malformed."""


def _read_bytes(path: str) -> bytes:
  """The file's (decompressed, for .gz) content; IdxFormatError for missing or broken files."""
  try:
    content = fs.read_bytes(path)
    return gzip.decompress(content) if path.endswith(".gz") else content
  except FileNotFoundError as e:
    raise IdxFormatError(f"{path}: file not found") from e
  except EOFError as e:
    raise IdxFormatError(f"{path}: truncated gzip stream (the file ends early)") from e
  except (gzip.BadGzipFile, zlib.error) as e:
    raise IdxFormatError(f"{path}: not a valid gzip file ({e})") from e
  except OSError as e:
    raise IdxFormatError(f"{path}: cannot read ({e.strerror or e})") from e


def _parse_header(content: bytes, path: str) -> tuple[np.dtype, tuple[int, ...]]:
  """Validates the magic number and returns the payload dtype and shape."""
  if len(content) < _HEADER_BYTES:
    raise IdxFormatError(f"{path}: {len(content)} bytes is too short for an IDX header")
  zero0, zero1, code, ndim = content[:_HEADER_BYTES]
  if zero0 or zero1:
    raise IdxFormatError(f"{path}: bad magic number 0x{content[:_HEADER_BYTES].hex()} (must start with two zero bytes)")
  if code not in IDX_DTYPES:
    allowed = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
    raise IdxFormatError(f"{path}: unknown IDX dtype code 0x{code:02X}; expected one of: {allowed}")
  if ndim == 0:
    raise IdxFormatError(f"{path}: IDX header declares 0 dimensions")
  dims_end = _HEADER_BYTES + _DIM_BYTES * ndim
  if len(content) < dims_end:
    raise IdxFormatError(f"{path}: truncated header: {ndim} dimensions declared, file has {len(content)} bytes")
  shape = tuple(int(d) for d in np.frombuffer(content, ">u4", count=ndim, offset=_HEADER_BYTES))
  return IDX_DTYPES[code], shape


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads an IDX file, gzip-compressed (name ends in .gz) or raw.

  Args:
    path: the file.

  Returns:
    A writable native-endian array with the shape and dtype the header declares.

  Raises:
    IdxFormatError: the file is missing, is not valid gzip, has a bad magic number or
      dtype code, or its payload size does not match the declared dimensions.
  """
  path = os.fspath(path)
  content = _read_bytes(path)
  dtype, shape = _parse_header(content, path)
  offset = _HEADER_BYTES + _DIM_BYTES * len(shape)
  expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  found = len(content) - offset
  if found != expected:
    dims = "x".join(str(d) for d in shape)
    problem = "truncated payload" if found < expected else "trailing bytes after the payload"
    raise IdxFormatError(f"{path}: {problem}: header declares {dims} {dtype.name} = {expected} bytes, found {found}")
  array = np.frombuffer(content, dtype, offset=offset).reshape(shape)
  # frombuffer views immutable bytes; a native-endian copy is writable and fast to use.
  return array.astype(dtype.newbyteorder("="), copy=True)


def _existing(path: str) -> str:
  """`path` (the .gz name) or its uncompressed sibling, whichever exists."""
  if fs.exists(path):
    return path
  raw = path[:-len(".gz")]
  if fs.exists(raw):
    return raw
  raise IdxFormatError(f"{path}: file not found")


def idx_split_paths(root: str | os.PathLike, dataset: str, split: str) -> tuple[str, str]:
  """The gzip image and label file names of `split` under `root/dataset`.

  Args:
    root: folder holding one sub-folder per data set.
    dataset: sub-folder name, e.g. 'mnist' or 'fashion_mnist'.
    split: 'train' or 'test' (the t10k files).

  Returns:
    (images path, labels path); the files may not exist.

  Raises:
    ValueError: `split` is not 'train' or 'test'.
  """
  if split not in SPLIT_PREFIXES:
    raise ValueError(f"Unknown IDX split '{split}'; choose one of: {', '.join(SPLIT_PREFIXES)}")
  folder = fs.join(root, dataset)
  prefix = SPLIT_PREFIXES[split]
  return fs.join(folder, f"{prefix}-images-idx3-ubyte.gz"), fs.join(folder, f"{prefix}-labels-idx1-ubyte.gz")


def load_idx_split(root: str | os.PathLike, dataset: str, split: str, *,
                   num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
  """Loads one split of an IDX data set laid out like MNIST.

  Args:
    root: folder holding `dataset/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`
      (uncompressed files without .gz are accepted too).
    dataset: sub-folder name, e.g. 'mnist' or 'fashion_mnist'.
    split: 'train' or 'test'.
    num_classes: labels must lie in [0, num_classes).

  Returns:
    (images uint8 [N, H, W, 1], labels int32 [N]).

  Raises:
    ValueError: unknown split.
    IdxFormatError: a file is missing or malformed, the image and label counts differ,
      or a label is out of range.
  """
  image_path, label_path = (_existing(p) for p in idx_split_paths(root, dataset, split))
  images = read_idx(image_path)
  labels = read_idx(label_path)
  if images.dtype != np.uint8 or images.ndim != 3:
    raise IdxFormatError(f"{image_path}: expected uint8 images [N, H, W], got {images.dtype} {list(images.shape)}")
  if labels.dtype != np.uint8 or labels.ndim != 1:
    raise IdxFormatError(f"{label_path}: expected uint8 labels [N], got {labels.dtype} {list(labels.shape)}")
  if len(images) != len(labels):
    raise IdxFormatError(f"{image_path}: {len(images)} images but {fs.basename(label_path)} has {len(labels)} labels")
  if labels.size and labels.max() >= num_classes:
    raise IdxFormatError(f"{label_path}: label {labels.max()} is out of range [0, {num_classes})")
  return images[..., np.newaxis], labels.astype(np.int32)
