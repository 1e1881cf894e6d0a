"""Any TFDS image-classification data set as uint8 arrays (`config.dataset=tfds:<name>[:<version>]`).

The image and label features come from the builder's info: its supervised keys when
it has them, else its first `Image` and first `ClassLabel` feature. Data sets whose
images vary in size (many real ones) are converted one example at a time, which
needs `config.image_size`; fixed-size ones are read in chunks.

Only this module imports `tensorflow_datasets`, and only when a TFDS source is used.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gan_jax.data import folders

_CHUNK = 8192


def _tfds():
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tfds


def _builder(target: str, data_dir: str | None):
  """The builder of 'name' or 'name:version'; ValueError naming the data set when TFDS does not know it."""
  tfds = _tfds()
  try:
    return tfds.builder(target, data_dir=data_dir)
  except Exception as e:  # pylint: disable=broad-except  # DatasetNotFoundError and version errors alike
    reason = " ".join(str(e).split())[:160]
    raise ValueError(f"TFDS has no data set '{target}' ({type(e).__name__}: {reason}); see "
                     f"https://www.tensorflow.org/datasets/catalog for the names") from e


def feature_keys(features: Any, supervised_keys: Any) -> tuple[str, str]:
  """(image key, label key) of a TFDS FeaturesDict.

  Raises:
    ValueError: no image or no class-label feature.
  """
  tfds = _tfds()
  if supervised_keys and len(supervised_keys) == 2 and all(isinstance(k, str) for k in supervised_keys):
    image_key, label_key = supervised_keys
    if (isinstance(features[image_key], tfds.features.Image)
        and isinstance(features[label_key], tfds.features.ClassLabel)):
      return image_key, label_key
  images = [k for k, f in features.items() if isinstance(f, tfds.features.Image)]
  labels = [k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)]
  if not images or not labels:
    raise ValueError(f"Not an image-classification data set: features {', '.join(features)} have "
                     f"{'no Image' if not images else 'no ClassLabel'} feature")
  return images[0], labels[0]


def info(target: str, image_size: int, channels: int, data_dir: str | None = None):
  """The `sources.DatasetInfo` of a TFDS data set, its image shape after conversion.

  Raises:
    ValueError: unknown data set, not image classification, fewer than two classes, or images of
      varying size without `image_size`.
  """
  from gan_jax.data import sources  # pylint: disable=g-import-not-at-top  # sources imports this module lazily
  builder_info = _builder(target, data_dir).info
  image_key, label_key = feature_keys(builder_info.features, builder_info.supervised_keys)
  height, width, source_channels = builder_info.features[image_key].shape
  label = builder_info.features[label_key]
  if label.num_classes < 2:
    raise ValueError(f"tfds:{target} has {label.num_classes} class; a labelled data set needs at least two")
  if not image_size and (height is None or width is None):
    raise ValueError(f"tfds:{target} has images of varying size; set config.image_size (e.g. 64) to resize them")
  shape = (image_size or height, image_size or width, channels or source_channels or 3)
  return sources.DatasetInfo(f"tfds:{target}", tuple(int(s) for s in shape), int(label.num_classes),
                             tuple(label.names), has_idx=False)


def load(target: str, split: str, shape: tuple[int, int, int], *, data_dir: str | None,
         download: bool) -> tuple[tuple[np.ndarray, np.ndarray], bool]:
  """The split as (uint8 [N, *shape], int32 [N]), converted to `shape`, and whether it needs a held-out test share.

  A data set whose prepared info lists no 'test' split serves 'train' and 'test' from its
  'train' split; the second value is then True and the caller holds out the test share.
  """
  tfds = _tfds()
  builder = _builder(target, data_dir)
  if download:
    builder.download_and_prepare()
  known = tuple(builder.info.splits.keys())  # empty until prepared (and under mock data)
  held_out = bool(known) and "test" not in known and split in ("train", "test")
  image_key, label_key = feature_keys(builder.info.features, builder.info.supervised_keys)
  ds = builder.as_dataset(split="train" if held_out else split)
  ds = ds.map(lambda example: (example[image_key], example[label_key]))
  stored = tuple(builder.info.features[image_key].shape)
  images, labels = [], []
  if None in stored:
    for image, label in tfds.as_numpy(ds):
      images.append(folders.conform_array(image, shape[0], shape[2]))
      labels.append(label)
    return (np.stack(images), np.asarray(labels, np.int32)), held_out
  # Chunks rather than batch_size=-1: that sizes one batch from the split metadata,
  # which is absent under tfds.testing.mock_data.
  for chunk_images, chunk_labels in tfds.as_numpy(ds.batch(_CHUNK)):
    images.append(folders.convert_arrays(chunk_images, shape))
    labels.append(chunk_labels)
  return (np.concatenate(images), np.concatenate(labels).astype(np.int32)), held_out
