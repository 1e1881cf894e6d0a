"""Where the images come from: offline IDX files or TFDS, as uint8 NumPy arrays.

Importing this module never imports TensorFlow; `tensorflow_datasets` is imported
only inside `load_arrays`, and only when the IDX source cannot serve the request.
"""
from __future__ import annotations

import dataclasses
import math
import os
import socket
from typing import Sequence

import numpy as np

from gan_jax import fs
from gan_jax.data import idx

IDX_DIR_ENV = "GAN_JAX_IDX_DIR"
_MAX_REASON_CHARS = 200
_TFDS_CHUNK = 8192


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Static facts about a supported data set.

  Attributes:
    name: the TFDS name, also the IDX sub-folder name.
    image_shape: (height, width, channels).
    num_classes: labels lie in [0, num_classes).
    class_names: human-readable name of each label.
    has_idx: whether IDX files exist for it (then it can be read without TFDS).
  """
  name: str
  image_shape: tuple[int, int, int]
  num_classes: int
  class_names: tuple[str, ...]
  has_idx: bool


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", (28, 28, 1), 10, tuple(str(d) for d in range(10)), has_idx=True),
    "fashion_mnist": DatasetInfo(
        "fashion_mnist", (28, 28, 1), 10,
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        has_idx=True),
    "cifar10": DatasetInfo(
        "cifar10", (32, 32, 3), 10,
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        has_idx=False),
}


class DataUnavailableError(RuntimeError):
  """Neither the IDX folder nor TFDS can provide the requested data set."""


def get_dataset_info(name: str) -> DatasetInfo:
  """The `DatasetInfo` of `name`; ValueError listing the supported names otherwise."""
  if name not in DATASETS:
    raise ValueError(f"Unknown dataset '{name}'; choose one of: {', '.join(sorted(DATASETS))}")
  return DATASETS[name]


def default_idx_dir() -> str | None:
  """The offline IDX folder named by $GAN_JAX_IDX_DIR, or None (entrypoints only)."""
  return os.environ.get(IDX_DIR_ENV) or None


def _how_to_provide(info: DatasetInfo, split: str, idx_dir: str | os.PathLike | None) -> str:
  """The part of the error message that says how to make the data available."""
  if not info.has_idx:
    return (f"IDX files are not available for {info.name} ({IDX_DIR_ENV} only covers "
            f"{', '.join(n for n in sorted(DATASETS) if DATASETS[n].has_idx)}), so only TFDS works: "
            f"run once with internet so TFDS can prepare it in TFDS_DATA_DIR.")
  names = [p for split_name in idx.SPLIT_PREFIXES for p in idx.idx_split_paths("", info.name, split_name)]
  missing = f" ({idx_dir} has no {info.name}/ folder)" if idx_dir is not None else ""
  return (f"Either set {IDX_DIR_ENV}=<folder> holding the IDX files {', '.join(names)}{missing}, "
          f"or run once with internet so TFDS can prepare it in TFDS_DATA_DIR.")


def _short_reason(error: BaseException) -> str:
  """One line of an exception's text: TFDS errors are often multi-paragraph."""
  text = " ".join(str(error).split()) or type(error).__name__
  if len(text) > _MAX_REASON_CHARS:
    text = text[:_MAX_REASON_CHARS - 3] + "..."
  return f"{type(error).__name__}: {text}"


def tfds_unavailable_error(name: str, split: str, cause: BaseException, *, allow_download: bool = True,
                           idx_dir: str | os.PathLike | None = None) -> DataUnavailableError:
  """The one-line error for a TFDS failure, naming both ways to provide the data.

  Args:
    name: a key of `DATASETS`.
    split: the requested split.
    cause: what TFDS raised (an ImportError when it is not installed).
    allow_download: whether TFDS was allowed to download.
    idx_dir: the IDX folder that was tried, if any.

  Returns:
    A DataUnavailableError to raise `from cause`.
  """
  missing_module = getattr(cause, "name", None) if isinstance(cause, ImportError) else None
  if missing_module and missing_module.split(".")[0] in ("tensorflow", "tensorflow_datasets"):
    # TFDS imports TensorFlow lazily, so a missing TensorFlow shows up only here.
    what = f"{missing_module} is not importable"
  elif allow_download:
    what = "TFDS could not download or prepare it"
  else:
    what = "TFDS has not prepared it and downloading is off"
  return DataUnavailableError(f"Cannot load '{name}' ({split}): {what} ({_short_reason(cause)}). "
                              f"{_how_to_provide(get_dataset_info(name), split, idx_dir)}")


def _check_network(host: str = "storage.googleapis.com", port: int = 443, timeout: float = 5.0) -> None:
  """Raises ConnectionError quickly when the host TFDS downloads from cannot be reached."""
  try:
    with socket.create_connection((host, port), timeout=timeout):
      pass
  except OSError as e:
    raise ConnectionError(f"no network: cannot reach {host}:{port} ({e})") from e


def _load_tfds(info: DatasetInfo, split: str, data_dir: str | None, allow_download: bool,
               idx_dir: str | os.PathLike | None) -> tuple[np.ndarray, np.ndarray]:
  """The whole split as NumPy arrays via TFDS; DataUnavailableError if TFDS cannot provide it."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise tfds_unavailable_error(info.name, split, e, allow_download=allow_download, idx_dir=idx_dir) from e
  try:
    try:
      # Data already prepared (or mocked in tests) needs no network.
      ds = tfds.load(info.name, split=split, data_dir=data_dir, download=False, as_supervised=True)
    except Exception:  # pylint: disable=broad-except
      if not allow_download:
        raise
      # TFDS retries a failing download for minutes; without a network, say so at once.
      _check_network()
      ds = tfds.load(info.name, split=split, data_dir=data_dir, download=True, as_supervised=True)
    # Chunks rather than batch_size=-1: that sizes one batch from the split
    # metadata, which is absent under tfds.testing.mock_data (and then crashes TF).
    chunks = list(tfds.as_numpy(ds.batch(_TFDS_CHUNK)))
    return np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])
  except Exception as e:  # pylint: disable=broad-except
    # TFDS fails in many ways offline (DNS errors, checksum mismatches, missing
    # optional modules, AssertionError for unprepared data); all mean "no data".
    raise tfds_unavailable_error(info.name, split, e, allow_download=allow_download, idx_dir=idx_dir) from e


def _with_channel_axis(images: np.ndarray, info: DatasetInfo) -> np.ndarray:
  """uint8 [N, H, W, C]: adds the channel axis a grayscale source may omit, and checks the shape."""
  images = np.asarray(images)
  if images.ndim == 3:
    images = images[..., np.newaxis]
  if images.dtype != np.uint8 or images.shape[1:] != info.image_shape:
    raise ValueError(f"{info.name}: expected uint8 images of shape [N, {', '.join(map(str, info.image_shape))}], "
                     f"got {images.dtype} {list(images.shape)}")
  return images


def load_arrays(name: str, split: str, *, idx_dir: str | os.PathLike | None = None, tfds_data_dir: str | None = None,
                allow_download: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """Loads a whole split into host memory.

  The IDX source is used when `idx_dir` is given and holds a folder for `name`;
  otherwise TFDS loads (and, with `allow_download`, downloads and prepares) it.

  Args:
    name: a key of `DATASETS`.
    split: 'train' or 'test' (TFDS also accepts slices such as 'train[:10%]').
    idx_dir: folder holding `<name>/train-images-idx3-ubyte.gz` etc., or None.
    tfds_data_dir: TFDS data folder (None: TFDS's default, $TFDS_DATA_DIR).
    allow_download: whether TFDS may download and prepare a data set it has not
      prepared yet; False fails fast, without network access.

  Returns:
    (images uint8 [N, H, W, C], labels int32 [N]).

  Raises:
    ValueError: unknown data set or IDX split.
    IdxFormatError: the IDX folder exists but a file is missing or malformed.
    DataUnavailableError: TFDS is not importable or cannot provide the data.
  """
  info = get_dataset_info(name)
  if idx_dir is not None and info.has_idx and fs.isdir(fs.join(idx_dir, name)):
    images, labels = idx.load_idx_split(idx_dir, name, split, num_classes=info.num_classes)
  else:
    images, labels = _load_tfds(info, split, tfds_data_dir, allow_download, idx_dir)
  return _with_channel_axis(images, info), np.asarray(labels).astype(np.int32)


def check_output_range(output_range: Sequence[float]) -> tuple[float, float]:
  """(lo, hi) as floats; ValueError unless two finite numbers with lo < hi."""
  try:
    lo, hi = (float(v) for v in output_range)
  except (TypeError, ValueError) as e:
    raise ValueError(f"output_range must be two numbers (lo, hi), got {output_range!r}") from e
  if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
    raise ValueError(f"output_range must be finite with lo < hi, got ({lo}, {hi})")
  return lo, hi


def scale_images(images: np.ndarray, output_range: Sequence[float]) -> np.ndarray:
  """Maps uint8 pixels linearly onto `output_range`: 0 -> lo, 255 -> hi.

  Args:
    images: uint8 array of any shape.
    output_range: (lo, hi): (0, 1) for sigmoid generators, (-1, 1) for tanh ones.

  Returns:
    float32 array of the same shape, lo + (hi - lo) * images / 255.

  Raises:
    ValueError: images are not uint8 (scaling twice is a silent bug), or the range
      is not two finite numbers with lo < hi.
  """
  lo, hi = check_output_range(output_range)
  images = np.asarray(images)
  if images.dtype != np.uint8:
    raise ValueError(f"scale_images expects uint8 pixels, got {images.dtype}")
  unit = images.astype(np.float32) / np.float32(255.0)
  # Interpolating (rather than lo + (hi - lo) * unit) maps 0 and 255 exactly onto lo and hi.
  return np.float32(lo) * (np.float32(1.0) - unit) + np.float32(hi) * unit
