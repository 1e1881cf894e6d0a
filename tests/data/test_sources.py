"""Data set registry, the IDX/TFDS choice in load_arrays, its offline errors, and pixel scaling."""
import dataclasses
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from gan_jax.data import idx
from gan_jax.data import sources


def test_registry():
  assert sorted(sources.DATASETS) == ["cifar10", "fashion_mnist", "mnist"]
  for name, info in sources.DATASETS.items():
    assert info.name == name and len(info.class_names) == info.num_classes == 10
  assert sources.DATASETS["cifar10"].image_shape == (32, 32, 3) and not sources.DATASETS["cifar10"].has_idx
  assert sources.DATASETS["fashion_mnist"].class_names[0] == "T-shirt/top"
  assert sources.DATASETS["fashion_mnist"].class_names[-1] == "Ankle boot"
  assert sources.get_dataset_info("mnist").image_shape == (28, 28, 1)
  with pytest.raises(dataclasses.FrozenInstanceError):
    sources.DATASETS["mnist"].num_classes = 3


def test_unknown_dataset_message():
  with pytest.raises(ValueError) as info:
    sources.get_dataset_info("svhn")
  assert str(info.value) == "Unknown dataset 'svhn'; choose one of: cifar10, fashion_mnist, mnist, tfds:<name>[:<version>] or folder:<path>"


def test_default_idx_dir_reads_the_environment(monkeypatch, tmp_path):
  monkeypatch.setenv(sources.IDX_DIR_ENV, str(tmp_path))
  assert sources.default_idx_dir() == str(tmp_path)
  monkeypatch.delenv(sources.IDX_DIR_ENV)
  assert sources.default_idx_dir() is None


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
def test_idx_source_equals_the_idx_reader(idx_dir, dataset):
  images, labels = sources.load_arrays(dataset, "test", idx_dir=idx_dir)
  want_images, want_labels = idx.load_idx_split(idx_dir, dataset, "test")
  assert images.dtype == np.uint8 and images.shape == (10000, 28, 28, 1)
  assert labels.dtype == np.int32
  np.testing.assert_array_equal(images, want_images)
  np.testing.assert_array_equal(labels, want_labels)


def assert_one_line_naming_both_sources(message):
  assert "\n" not in message
  assert sources.IDX_DIR_ENV in message and "TFDS" in message


def test_missing_idx_folder_falls_through_to_tfds_and_fails_fast(tmp_path):
  (tmp_path / "tfds").mkdir()
  start = time.monotonic()
  with pytest.raises(sources.DataUnavailableError) as info:
    sources.load_arrays("mnist", "train", idx_dir=tmp_path, tfds_data_dir=str(tmp_path / "tfds"), allow_download=False)
  assert time.monotonic() - start < 30  # downloading is off: no network timeouts
  message = str(info.value)
  assert_one_line_naming_both_sources(message)
  assert message.startswith("Cannot load 'mnist' (train): TFDS has not prepared it")
  assert f"{tmp_path} has no mnist/ folder" in message
  assert "mnist/train-images-idx3-ubyte.gz" in message


def test_cifar10_has_no_idx_source(idx_dir, tmp_path):
  with pytest.raises(sources.DataUnavailableError) as info:
    sources.load_arrays("cifar10", "test", idx_dir=idx_dir, tfds_data_dir=str(tmp_path), allow_download=False)
  message = str(info.value)
  assert_one_line_naming_both_sources(message)
  assert "IDX files are not available for cifar10" in message and "only TFDS works" in message


def test_broken_idx_folder_is_not_silently_replaced_by_tfds(tmp_path):
  (tmp_path / "mnist").mkdir()
  with pytest.raises(idx.IdxFormatError, match="train-images-idx3-ubyte.gz: file not found"):
    sources.load_arrays("mnist", "train", idx_dir=tmp_path, allow_download=False)


@pytest.mark.parametrize("name,shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_tfds_source_with_mock_data(name, shape):
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=12):
    images, labels = sources.load_arrays(name, "train")
  assert images.shape == (12, *shape) and images.dtype == np.uint8
  assert labels.shape == (12,) and labels.dtype == np.int32
  assert labels.min() >= 0 and labels.max() < 10


def test_any_tfds_image_data_set_by_name_with_mock_data():
  tfds = pytest.importorskip("tensorflow_datasets")
  # cats_vs_dogs has images of varying size: each is padded to a square and resized.
  source = sources.DataSource("tfds:cats_vs_dogs", image_size=32, channels=1)
  info = sources.get_dataset_info(source)
  assert info.class_names == ("cat", "dog") and info.image_shape == (32, 32, 1)
  with tfds.testing.mock_data(num_examples=10):
    images, labels = sources.load_arrays(source, "train")
    rgb_mnist = sources.load_arrays(sources.DataSource("tfds:mnist", channels=3), "train")[0]
  assert images.shape == (10, 32, 32, 1) and images.dtype == np.uint8 and set(labels) <= {0, 1}
  assert rgb_mnist.shape == (10, 28, 28, 3)
  np.testing.assert_array_equal(rgb_mnist[..., 0], rgb_mnist[..., 2])  # grayscale copied to every channel


@pytest.mark.parametrize("source,message", [
    (sources.DataSource("tfds:cats_vs_dogs"), "varying size; set config.image_size"),
    (sources.DataSource("tfds:no_such_data_set"), "TFDS has no data set 'no_such_data_set'"),
    (sources.DataSource("tfds:imdb_reviews"), "Not an image-classification data set"),
    (sources.DataSource("tfds:"), "names no tfds"),
    (sources.DataSource("mnist", channels=2), "channels"),
])
def test_bad_tfds_sources_are_one_line_errors(source, message):
  pytest.importorskip("tensorflow_datasets")
  with pytest.raises(ValueError, match=message) as info:
    sources.get_dataset_info(source)
  assert "\n" not in str(info.value)


def test_built_in_data_converted_to_another_size_and_channels(idx_dir):
  images, labels = sources.load_arrays(sources.DataSource("mnist", image_size=32, channels=3), "test",
                                       idx_dir=idx_dir)
  plain, _ = sources.load_arrays("mnist", "test", idx_dir=idx_dir)
  assert images.shape == (len(plain), 32, 32, 3) and len(labels) == 10000
  # Lanczos resampling keeps the digit where it was: centre mass matches the 28x28 original.
  assert abs(images[:100].mean() - plain[:100].mean()) < 0.05 * plain[:100].mean()


_WITHOUT_TENSORFLOW = textwrap.dedent("""
    import importlib.abc, sys

    class NoTensorFlow(importlib.abc.MetaPathFinder):
      # Makes this interpreter look like a GPU machine without TensorFlow.
      def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tensorflow_datasets"):
          raise ImportError(f"No module named {name!r}", name=name)
        return None

    sys.meta_path.insert(0, NoTensorFlow())
    from gan_jax import data
    assert "jax" not in sys.modules, "gan_jax.data pulled in jax"
    images, labels = data.load_arrays("mnist", "test", idx_dir=sys.argv[1])
    assert images.shape == (10000, 28, 28, 1), images.shape
    try:
      data.load_arrays("cifar10", "test", idx_dir=sys.argv[1])
    except data.DataUnavailableError as e:
      print(e)
""")


def test_package_works_without_tensorflow(idx_dir):
  result = subprocess.run([sys.executable, "-c", _WITHOUT_TENSORFLOW, str(idx_dir)], capture_output=True, text=True,
                          timeout=120, check=False)
  assert result.returncode == 0, result.stderr
  assert "Cannot load 'cifar10' (test): tensorflow_datasets is not importable" in result.stdout


@pytest.mark.parametrize("output_range", [(0.0, 1.0), (-1.0, 1.0), (-0.3, 0.7), (2, 5)])
def test_scale_images_maps_the_pixel_range_exactly(output_range):
  lo, hi = output_range
  pixels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
  scaled = sources.scale_images(pixels, output_range)
  assert scaled.dtype == np.float32 and scaled.shape == pixels.shape
  assert scaled.min() == np.float32(lo) and scaled.max() == np.float32(hi)
  assert scaled.flat[0] == np.float32(lo) and scaled.flat[255] == np.float32(hi)
  assert np.all(np.diff(scaled.reshape(-1)) > 0)
  np.testing.assert_allclose(scaled.reshape(-1), lo + (hi - lo) * np.arange(256) / 255.0, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("output_range,phrase", [
    ((1.0, 0.0), r"lo < hi, got \(1.0, 0.0\)"),
    ((0.5, 0.5), r"lo < hi, got \(0.5, 0.5\)"),
    ((0.0, float("inf")), "finite"),
    ((float("nan"), 1.0), "finite"),
    ((0.0,), "two numbers"),
    ("ab", "two numbers"),
])
def test_scale_images_rejects_bad_ranges(output_range, phrase):
  with pytest.raises(ValueError, match=phrase):
    sources.scale_images(np.zeros((2, 2), np.uint8), output_range)


def test_scale_images_refuses_already_scaled_images():
  with pytest.raises(ValueError, match="expects uint8 pixels, got float32"):
    sources.scale_images(np.zeros((2, 2), np.float32), (0.0, 1.0))
