"""A user's image folder as a data source: real PNG/JPEG/BMP files written by the tests."""
import os

import chex
import numpy as np
import pytest
from PIL import Image

from gan_jax.data import folders
from gan_jax.data import sources
from gan_jax.data import splits


def _write(path, array, fmt=None):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array).save(path, format=fmt)


def _class_folder(root, counts, size=(20, 24), rgb=True):
  """counts[c] images of class 'c<c>': RGB PNGs of varying size, plus one grayscale JPEG per class."""
  rng = np.random.default_rng(0)
  for c, n in enumerate(counts):
    for i in range(n):
      height, width = size[0] + i % 3, size[1]
      pixels = np.full((height, width, 3), 40 * c, np.uint8) + rng.integers(0, 20, (height, width, 3), np.uint8)
      if i == 0:
        _write(os.path.join(root, f"c{c}", f"{i}.jpg"), pixels[..., 0])
      else:
        _write(os.path.join(root, f"c{c}", f"{i}.png" if rgb else f"{i}.bmp"), pixels)
  return root


def test_folder_loads_converted_held_out_and_cached(tmp_path):
  root = _class_folder(str(tmp_path / "cells"), [12, 6, 5])
  (tmp_path / "cells" / "c1" / "notes.txt").write_text("not an image")
  source = sources.DataSource(f"folder:{root}", image_size=32, channels=3, test_fraction=0.2)
  info = sources.get_dataset_info(source)
  assert info.class_names == ("c0", "c1", "c2") and info.num_classes == 3 and info.image_shape == (32, 32, 3)
  cache = str(tmp_path / "run" / "data")
  train = sources.load_arrays(source, "train", cache_dir=cache)
  test = sources.load_arrays(source, "test", cache_dir=cache)
  chex.assert_shape((train[0], test[0]), ((None, 32, 32, 3), (None, 32, 32, 3)))
  # Of 12, 6 (the text file skipped) and 5 images, round(0.2 n) are held out: stratified.
  np.testing.assert_array_equal(np.bincount(test[1]), [2, 1, 1])
  np.testing.assert_array_equal(np.bincount(train[1]), [10, 5, 4])
  # Class colour survives conversion (the grayscale JPEG became RGB too).
  means = [train[0][train[1] == c].mean() for c in range(3)]
  assert means[0] < means[1] < means[2]
  cached = [n for n in os.listdir(cache) if n.endswith(".npz")]
  assert len(cached) == 1
  # A rerun reads the cache; a changed folder is decoded again and the stale cache goes.
  folder = folders.scan(root)
  *_, from_cache = folders.load_split(folder, "train", info.image_shape, strict=False, cache_dir=cache)
  assert from_cache
  _write(os.path.join(root, "c2", "new.png"), np.zeros((20, 24, 3), np.uint8))
  again = sources.load_arrays(source, "train", cache_dir=cache)
  assert len(again[1]) + len(sources.load_arrays(source, "test", cache_dir=cache)[1]) == 24
  assert [n for n in os.listdir(cache) if n.endswith(".npz")] != cached


def test_held_out_split_is_the_same_every_run_and_disjoint(tmp_path):
  root = _class_folder(str(tmp_path / "d"), [9, 7])
  source = sources.DataSource(f"folder:{root}", image_size=28, channels=1)
  first = [sources.load_arrays(source, s)[0] for s in ("train", "test")]
  second = [sources.load_arrays(source, s)[0] for s in ("train", "test")]
  for a, b in zip(first, second):
    np.testing.assert_array_equal(a, b)
  train, test = first
  assert not any((image == train).all(axis=(1, 2, 3)).any() for image in test)


def test_train_and_test_trees_are_used_as_given(tmp_path):
  _class_folder(str(tmp_path / "d" / "train"), [4, 3], rgb=False)
  _class_folder(str(tmp_path / "d" / "test"), [2, 2], rgb=False)
  data = splits.load_splits(sources.DataSource(f"folder:{tmp_path / 'd'}", image_size=28, channels=1))
  np.testing.assert_array_equal(np.bincount(data.train[1]), [4, 3])
  np.testing.assert_array_equal(np.bincount(data.test[1]), [2, 2])
  assert data.image_shape == (28, 28, 1)


def test_padding_keeps_the_aspect_ratio():
  wide = np.full((10, 40), 255, np.uint8)  # a white bar, 4x wider than tall
  square = folders.conform(Image.fromarray(wide), 40, 1)
  chex.assert_shape(square, (40, 40, 1))
  rows = square[:, :, 0].mean(axis=1)
  assert rows[:14].max() < 10 and rows[16:24].min() > 245 and rows[26:].max() < 10  # centred, black above/below


def _error(source_kwargs, tmp_path):
  with pytest.raises(ValueError) as info:
    source = sources.DataSource(**source_kwargs)
    sources.load_arrays(source, "train", cache_dir=str(tmp_path / "cache"))
  message = str(info.value)
  assert "\n" not in message
  return message


def test_bad_folders_are_one_line_errors_naming_the_path(tmp_path):
  assert "does not exist" in _error(dict(dataset=f"folder:{tmp_path / 'nowhere'}"), tmp_path)
  one = _class_folder(str(tmp_path / "one"), [3])
  assert "at least two" in _error(dict(dataset=f"folder:{one}", image_size=28), tmp_path)
  empty = _class_folder(str(tmp_path / "empty"), [3, 2])
  os.makedirs(os.path.join(empty, "c2"))
  message = _error(dict(dataset=f"folder:{empty}", image_size=28), tmp_path)
  assert "c2" in message and "empty" in message
  tiny = _class_folder(str(tmp_path / "tiny"), [5, 1])
  message = _error(dict(dataset=f"folder:{tiny}", image_size=28), tmp_path)
  assert "'c1' has 1 image" in message and "test_fraction=0.2" in message
  mixed = _class_folder(str(tmp_path / "mixed"), [4, 4])
  assert "set config.image_size" in _error(dict(dataset=f"folder:{mixed}", channels=3), tmp_path)


def test_non_images_are_skipped_by_default_and_refused_when_strict(tmp_path):
  root = _class_folder(str(tmp_path / "d"), [4, 4])
  stray = os.path.join(root, "c0", "Thumbs.db")
  with open(stray, "wb") as f:
    f.write(b"\x00\x01junk")
  folder = folders.scan(root)
  _, labels, skipped = folders.decode(folder.files["train"], (28, 28, 3), strict=False)
  assert skipped == [stray] and len(labels) == 8
  message = _error(dict(dataset=f"folder:{root}", image_size=28, strict_images=True), tmp_path)
  assert "Thumbs.db" in message and "strict_images" in message


def test_class_names_are_written_to_the_run_folder(tmp_path):
  root = _class_folder(str(tmp_path / "d"), [3, 3])
  info = sources.get_dataset_info(sources.DataSource(f"folder:{root}", image_size=32))
  splits.write_class_names(str(tmp_path / "run"), info)
  assert splits.read_class_names(str(tmp_path / "run")) == ("c0", "c1")
  assert splits.read_class_names(str(tmp_path / "elsewhere")) is None
