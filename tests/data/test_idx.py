"""IDX reader: the real MNIST / Fashion-MNIST files, round trips of every dtype, and broken files."""
import gzip
import hashlib
import shutil

import numpy as np
import pytest

from gan_jax.data import idx

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
# SHA-256 prefixes of the uncompressed files, from ../shared/datasets/README.md.
LABEL_SHA256 = {
    ("mnist", "train-labels-idx1-ubyte.gz"): "65a50cbbf4e906d7",
    ("mnist", "t10k-labels-idx1-ubyte.gz"): "ff7bcfd416de3373",
    ("fashion_mnist", "train-labels-idx1-ubyte.gz"): "bad3541b69d91243",
    ("fashion_mnist", "t10k-labels-idx1-ubyte.gz"): "0402a96d92fd2663",
}
CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(array, code):
  """An IDX file's content, written independently of the reader under test."""
  header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
  return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path, content):
  path.write_bytes(gzip.compress(content) if path.suffix == ".gz" else content)
  return path


@pytest.fixture(scope="module")
def mnist_train(idx_dir):
  return idx.load_idx_split(idx_dir, "mnist", "train")


def test_mnist_train_shapes_dtypes_and_class_counts(mnist_train):
  images, labels = mnist_train
  assert images.shape == (60000, 28, 28, 1) and images.dtype == np.uint8
  assert labels.shape == (60000,) and labels.dtype == np.int32
  np.testing.assert_array_equal(np.bincount(labels, minlength=10), MNIST_TRAIN_COUNTS)
  assert images.min() == 0 and images.max() == 255
  assert images.flags.writeable


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
def test_test_split_sizes(idx_dir, dataset):
  images, labels = idx.load_idx_split(idx_dir, dataset, "test")
  assert images.shape == (10000, 28, 28, 1)
  counts = np.bincount(labels, minlength=10)
  assert counts.sum() == 10000 and len(counts) == 10
  if dataset == "fashion_mnist":
    np.testing.assert_array_equal(counts, [1000] * 10)


@pytest.mark.parametrize("dataset,name", sorted(LABEL_SHA256))
def test_label_files_match_readme_checksums(idx_dir, dataset, name):
  labels = idx.read_idx(idx_dir / dataset / name)
  content = idx_bytes(labels, 0x08)  # re-serialising must reproduce the original file exactly
  assert hashlib.sha256(content).hexdigest()[:16] == LABEL_SHA256[(dataset, name)]


@pytest.mark.parametrize("dtype", list(CODES), ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip_of_every_dtype(tmp_path, dtype, suffix):
  array = (np.arange(2 * 3 * 5).reshape(2, 3, 5) * 37 - 100).astype(dtype)
  path = write(tmp_path / f"a.idx{suffix}", idx_bytes(array, CODES[dtype]))
  read = idx.read_idx(path)
  assert read.dtype == np.dtype(dtype) and read.dtype.isnative
  np.testing.assert_array_equal(read, array)


def test_raw_file_equals_gzip_file(idx_dir, tmp_path):
  gz_path = idx_dir / "mnist" / "t10k-labels-idx1-ubyte.gz"
  raw_path = write(tmp_path / "t10k-labels-idx1-ubyte", gzip.decompress(gz_path.read_bytes()))
  np.testing.assert_array_equal(idx.read_idx(raw_path), idx.read_idx(gz_path))


VALID = idx_bytes(np.arange(10, dtype=np.uint8), 0x08)
CORRUPTIONS = {
    "bad magic": (b"\x01" + VALID[1:], "bad magic number"),
    "unknown dtype": (VALID[:2] + b"\x07" + VALID[3:], "unknown IDX dtype code 0x07"),
    "zero dims": (b"\x00\x00\x08\x00", "0 dimensions"),
    "short header": (b"\x00\x00", "too short for an IDX header"),
    "truncated dims": (b"\x00\x00\x08\x03\x00\x00", "truncated header"),
    "truncated payload": (VALID[:-3], "truncated payload"),
    "trailing bytes": (VALID + b"\x00", "trailing bytes"),
}


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_malformed_content_is_reported_with_the_path(tmp_path, kind, suffix):
  content, phrase = CORRUPTIONS[kind]
  path = write(tmp_path / f"bad{suffix}", content)
  with pytest.raises(idx.IdxFormatError, match=phrase) as info:
    idx.read_idx(path)
  assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_truncated_gzip_stream(idx_dir, tmp_path):
  data = (idx_dir / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes()
  path = tmp_path / "cut.gz"
  path.write_bytes(data[:len(data) // 2])
  with pytest.raises(idx.IdxFormatError, match="truncated gzip") as info:
    idx.read_idx(path)
  assert str(path) in str(info.value)


def test_gz_name_without_gzip_content(tmp_path):
  path = tmp_path / "plain.gz"
  path.write_bytes(VALID)
  with pytest.raises(idx.IdxFormatError, match="not a valid gzip file"):
    idx.read_idx(path)


def test_missing_file(tmp_path):
  with pytest.raises(idx.IdxFormatError, match="file not found") as info:
    idx.read_idx(tmp_path / "missing.gz")
  assert str(tmp_path / "missing.gz") in str(info.value)
  assert isinstance(info.value, ValueError)


def test_split_missing_label_file_names_it(idx_dir, tmp_path):
  (tmp_path / "mnist").mkdir()
  shutil.copy(idx_dir / "mnist" / "t10k-images-idx3-ubyte.gz", tmp_path / "mnist")
  with pytest.raises(idx.IdxFormatError, match="file not found") as info:
    idx.load_idx_split(tmp_path, "mnist", "test")
  assert str(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz") in str(info.value)


def make_split(root, images, labels, suffix=".gz"):
  folder = root / "toy"
  folder.mkdir(exist_ok=True)
  write(folder / f"train-images-idx3-ubyte{suffix}", idx_bytes(images, 0x08))
  write(folder / f"train-labels-idx1-ubyte{suffix}", idx_bytes(labels, 0x08))


def test_uncompressed_split_files_are_accepted(tmp_path):
  images = np.arange(5 * 28 * 28, dtype=np.int64).reshape(5, 28, 28).astype(np.uint8)
  labels = np.array([0, 9, 3, 3, 1], np.uint8)
  make_split(tmp_path, images, labels, suffix="")
  got_images, got_labels = idx.load_idx_split(tmp_path, "toy", "train")
  np.testing.assert_array_equal(got_images[..., 0], images)
  np.testing.assert_array_equal(got_labels, labels)
  assert got_images.shape == (5, 28, 28, 1) and got_labels.dtype == np.int32


@pytest.mark.parametrize("images,labels,phrase", [
    (np.zeros((4, 28, 28), np.uint8), np.zeros(3, np.uint8), "4 images but .* has 3 labels"),
    (np.zeros((3, 28, 28), np.uint8), np.array([0, 10, 2], np.uint8), r"label 10 is out of range \[0, 10\)"),
    (np.zeros((3, 28), np.uint8), np.zeros(3, np.uint8), r"expected uint8 images \[N, H, W\]"),
])
def test_inconsistent_split_is_rejected(tmp_path, images, labels, phrase):
  make_split(tmp_path, images, labels)
  with pytest.raises(idx.IdxFormatError, match=phrase):
    idx.load_idx_split(tmp_path, "toy", "train")


def test_unknown_split(idx_dir):
  with pytest.raises(ValueError, match="Unknown IDX split 'validation'; choose one of: train, test"):
    idx.load_idx_split(idx_dir, "mnist", "validation")
