"""Where the images come from, as uint8 NumPy arrays: built-in data sets, any TFDS data set, image folders.

`config.dataset` names the source:
  mnist, fashion_mnist, cifar10   built in (offline IDX files for the first two, else TFDS);
  tfds:<name>[:<version>]         any TFDS image-classification data set (image and label
                                  features read from its info);
  folder:<path>                   one sub-folder per class (see `gan_jax.data.folders`).
`DataSource` adds the conversion settings (image_size, channels), the held-out test
fraction for sources without a test split, and the policy for non-image files.

Importing this module never imports TensorFlow; `tensorflow_datasets` is imported
only when a TFDS source is used, and only when the IDX source cannot serve the request.
"""
from __future__ import annotations

import dataclasses
import math
import os
import socket
from typing import Sequence

import numpy as np

from gan_jax import checks
from gan_jax import fs
from gan_jax.data import folders
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


TFDS_PREFIX, FOLDER_PREFIX = "tfds:", "folder:"
# The config fields every entrypoint reads next to `dataset`, at their defaults.
SOURCE_DEFAULTS = {"image_size": 0, "channels": 0, "test_fraction": 0.2, "strict_images": False}
# Held-out test images of a source without a test split: the same for every run and seed.
HELD_OUT_TAG = 0x7E5F


@dataclasses.dataclass(frozen=True)
class DataSource:
  """A data set and how its images are converted.

  Attributes:
    dataset: a built-in name, 'tfds:<name>[:<version>]' or 'folder:<path>'.
    image_size: > 0 resizes every image to image_size x image_size (padded to a square first);
      0 keeps the source's size.
    channels: 1 (grayscale) or 3 (RGB) converts every image; 0 keeps the source's.
    test_fraction: the share of each class held out as the test split when the source has none.
    strict_images: refuse a file of an image folder that is not an image (default: skip it with a
      warning, because real folders collect stray files such as Thumbs.db or notes).
  """
  dataset: str
  image_size: int = 0
  channels: int = 0
  test_fraction: float = 0.2
  strict_images: bool = False

  @classmethod
  def from_config(cls, config) -> "DataSource":
    """The source of a config with a `dataset` field (the other fields default as in SOURCE_DEFAULTS)."""
    get = lambda k: config.get(k, SOURCE_DEFAULTS[k])
    return cls(config.dataset, int(get("image_size")), int(get("channels")), float(get("test_fraction")),
               bool(get("strict_images")))

  @property
  def kind(self) -> str:
    if self.dataset.startswith(TFDS_PREFIX):
      return "tfds"
    if self.dataset.startswith(FOLDER_PREFIX):
      return "folder"
    return "builtin"

  @property
  def target(self) -> str:
    """The built-in name, the TFDS name (with version) or the folder path."""
    return self.dataset.split(":", 1)[1] if self.kind != "builtin" else self.dataset

  def validate(self) -> None:
    checks.one_of(self.channels, folders.CHANNELS, "channels")
    checks.non_negative(self.image_size, "image_size")
    checks.in_range(self.test_fraction, "test_fraction", 0.0, 1.0, low_open=True, high_open=True)
    if self.kind == "builtin" and self.dataset not in DATASETS:
      raise ValueError(f"Unknown dataset '{self.dataset}'; choose one of: {', '.join(sorted(DATASETS))}, "
                       f"{TFDS_PREFIX}<name>[:<version>] or {FOLDER_PREFIX}<path>")
    if self.kind != "builtin" and not self.target:
      raise ValueError(f"config.dataset={self.dataset!r} names no {self.kind}; e.g. {TFDS_PREFIX}svhn_cropped or "
                       f"{FOLDER_PREFIX}/data/defects")


def non_default_settings(config) -> dict:
  """The source settings of a config that differ from SOURCE_DEFAULTS (what a stage's fingerprint adds)."""
  return {k: config[k] for k, default in SOURCE_DEFAULTS.items() if k in config and config[k] != default}


def _as_source(source: "str | DataSource") -> DataSource:
  return source if isinstance(source, DataSource) else DataSource(source)


def _converted_shape(shape: Sequence[int], source: DataSource) -> tuple[int, int, int]:
  height, width, channels = shape
  if source.image_size:
    height = width = source.image_size
  return int(height), int(width), int(source.channels or channels)


def get_dataset_info(source: "str | DataSource") -> DatasetInfo:
  """The `DatasetInfo` of a source (its image shape after conversion); ValueError naming what is allowed.

  A folder is listed (not decoded); a TFDS name reads the builder's info.
  """
  source = _as_source(source)
  source.validate()
  if source.kind == "folder":
    folder = folders.scan(source.target)
    shape = folders.peek_shape(folder, source.image_size, source.channels)
    return DatasetInfo(source.dataset, shape, len(folder.class_names), folder.class_names, has_idx=False)
  if source.kind == "tfds":
    from gan_jax.data import tfds_source  # pylint: disable=g-import-not-at-top
    return tfds_source.info(source.target, source.image_size, source.channels)
  info = DATASETS[source.dataset]
  return dataclasses.replace(info, image_shape=_converted_shape(info.image_shape, source))


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


def prepared_or_downloaded(read, allow_download: bool):
  """`read(download=False)`: data already prepared (or mocked in tests) needs no network; else, when
  allowed, `read(download=True)` after a quick network check (TFDS retries a failing download for
  minutes; without a network, say so at once)."""
  try:
    return read(download=False)
  except ValueError:
    raise
  except Exception:  # pylint: disable=broad-except  # not prepared yet
    if not allow_download:
      raise
    _check_network()
    return read(download=True)


def _load_tfds(info: DatasetInfo, split: str, data_dir: str | None, allow_download: bool,
               idx_dir: str | os.PathLike | None) -> tuple[np.ndarray, np.ndarray]:
  """The whole split as NumPy arrays via TFDS; DataUnavailableError if TFDS cannot provide it."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise tfds_unavailable_error(info.name, split, e, allow_download=allow_download, idx_dir=idx_dir) from e
  try:
    ds = prepared_or_downloaded(
        lambda download: tfds.load(info.name, split=split, data_dir=data_dir, download=download,
                                   as_supervised=True), allow_download)
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


def _held_out(arrays, split: str, source: DataSource, class_names) -> tuple[np.ndarray, np.ndarray]:
  """The `split` part of a source without a test split: its train images, less a held-out test share."""
  images, labels = arrays
  train_rows, test_rows = folders.held_out_split(labels, source.test_fraction, HELD_OUT_TAG, class_names)
  rows = test_rows if split == "test" else train_rows
  return images[rows], labels[rows]


def _load_folder(source: DataSource, info: DatasetInfo, split: str,
                 cache_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
  folder = folders.scan(source.target)
  stored = split if folder.has_test else "train"
  images, labels, _ = folders.load_split(folder, stored, info.image_shape, strict=source.strict_images,
                                         cache_dir=cache_dir)
  if folder.has_test:
    return images, labels
  return _held_out((images, labels), split, source, info.class_names)


def _load_tfds_named(source: DataSource, info: DatasetInfo, split: str, data_dir: str | None,
                     allow_download: bool) -> tuple[np.ndarray, np.ndarray]:
  from gan_jax.data import tfds_source  # pylint: disable=g-import-not-at-top
  read = lambda download: tfds_source.load(source.target, split, info.image_shape, data_dir=data_dir,
                                           download=download)
  try:
    arrays, held_out = prepared_or_downloaded(read, allow_download)
  except ValueError:  # an unknown name or not image classification: the user's input, said as it is
    raise
  except Exception as e:  # pylint: disable=broad-except  # offline TFDS fails in many ways; all mean "no data"
    raise DataUnavailableError(
        f"Cannot load '{source.dataset}' ({split}): {_short_reason(e)}. Run once with internet so TFDS can "
        f"prepare it, or set TFDS_DATA_DIR to the folder where it is prepared.") from e
  return _held_out(arrays, split, source, info.class_names) if held_out else arrays


def load_arrays(source: "str | DataSource", split: str, *, idx_dir: str | os.PathLike | None = None,
                tfds_data_dir: str | None = None, allow_download: bool = True,
                cache_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Loads a whole split into host memory, converted as the source asks.

  Built-in data sets come from the IDX source when `idx_dir` is given and holds a
  folder for them, otherwise from TFDS (which, with `allow_download`, downloads and
  prepares them). A source without a test split (an image folder without `test/`, a
  TFDS data set whose info lists no 'test') holds out a stratified share
  `source.test_fraction` of each class of its train split, the same share every run.

  Args:
    source: a `DataSource` or a `config.dataset` string.
    split: 'train' or 'test' (TFDS also accepts slices such as 'train[:10%]').
    idx_dir: folder holding `<name>/train-images-idx3-ubyte.gz` etc., or None.
    tfds_data_dir: TFDS data folder (None: TFDS's default, $TFDS_DATA_DIR).
    allow_download: whether TFDS may download and prepare a data set it has not
      prepared yet; False fails fast, without network access.
    cache_dir: where an image folder's decoded arrays are cached (None: no cache).

  Returns:
    (images uint8 [N, H, W, C], labels int32 [N]).

  Raises:
    ValueError: unknown data set or IDX split, a folder that cannot serve (FolderError).
    IdxFormatError: the IDX folder exists but a file is missing or malformed.
    DataUnavailableError: TFDS is not importable or cannot provide the data.
  """
  source = _as_source(source)
  info = get_dataset_info(source)
  if source.kind == "folder":
    images, labels = _load_folder(source, info, split, cache_dir)
  elif source.kind == "tfds":
    images, labels = _load_tfds_named(source, info, split, tfds_data_dir, allow_download)
  else:
    stored = DATASETS[source.dataset]
    if idx_dir is not None and stored.has_idx and fs.isdir(fs.join(idx_dir, stored.name)):
      images, labels = idx.load_idx_split(idx_dir, stored.name, split, num_classes=stored.num_classes)
    else:
      images, labels = _load_tfds(stored, split, tfds_data_dir, allow_download, idx_dir)
    images = folders.convert_arrays(_with_channel_axis(images, stored), info.image_shape)
  return images, np.asarray(labels).astype(np.int32)


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
