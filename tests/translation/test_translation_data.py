"""Translation data: the offline digit tasks from real IDX files, image folders written as real PNGs,
TFDS's cycle_gan through its mock data, and the one-line errors for bad folders."""
import ml_collections
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage import filters

from gan_jax.translation import data as data_lib


def config(**overrides):
  values = dict(data="edges2digits", dataset="mnist", image_size=32, channels=0, train_examples=50,
                test_examples=20, thicken=1, seed=0, direction="AtoB")
  values.update(overrides)
  return ml_collections.ConfigDict(values)


def test_sobel_edges_are_scikit_images_sobel_up_to_scale():
  digit = np.zeros((1, 20, 20, 1), np.uint8)
  digit[0, 5:15, 8:12] = 200
  digit[0, 9:11, 4:16] = 120
  ours = data_lib.sobel_edges(digit)[0, ..., 0].astype(np.float64)
  reference = filters.sobel(np.pad(digit[0, ..., 0].astype(np.float64), 1, mode="constant"))[1:-1, 1:-1]
  reference = np.rint(reference * 255.0 / reference.max())
  np.testing.assert_allclose(ours, reference, atol=1.0)
  assert ours.max() == 255 and ours[0, 0] == 0


@pytest.mark.parametrize("radius", [1, 2])
def test_dilation_is_grey_dilation_by_a_square(radius):
  images = np.random.default_rng(0).integers(0, 256, (3, 12, 12, 1)).astype(np.uint8)
  expected = ndimage.grey_dilation(images, size=(1, 2 * radius + 1, 2 * radius + 1, 1), mode="constant", cval=0)
  np.testing.assert_array_equal(data_lib.dilate(images, radius), expected)


def test_pad_to_centres_without_resizing():
  images = np.full((2, 28, 28, 1), 7, np.uint8)
  padded = data_lib.pad_to(images, 32)
  assert padded.shape == (2, 32, 32, 1)
  assert padded[:, 2:30, 2:30].min() == 7 and padded.sum() == images.sum()
  with pytest.raises(ValueError, match="smaller than"):
    data_lib.pad_to(images, 16)


def test_edges2digits_pairs_edges_with_their_digits(idx_dir):
  task = data_lib.load(config(), str(idx_dir))
  assert task.paired and task.test_paired and task.true_pairs is None
  assert task.train_a.shape == task.train_b.shape == (50, 32, 32, 1)
  assert task.test_a.shape == (20, 32, 32, 1)
  np.testing.assert_array_equal(task.train_a, data_lib.sobel_edges(task.train_b))
  np.testing.assert_array_equal(task.test_a, data_lib.sobel_edges(task.test_b))


def test_thin2thick_draws_the_domains_from_disjoint_halves(idx_dir):
  task = data_lib.load(config(data="thin2thick", train_examples=0, test_examples=30), str(idx_dir))
  assert not task.paired and task.test_paired
  assert len(task.train_a) == len(task.train_b) == 30_000
  np.testing.assert_array_equal(task.test_b, data_lib.dilate(task.test_a, 1))
  a, b = task.true_pairs
  np.testing.assert_array_equal(a, task.train_a)
  np.testing.assert_array_equal(b, data_lib.dilate(task.train_a, 1))
  # no B image is the dilation of an A image: the halves share no row
  a_keys = {x.tobytes() for x in data_lib.dilate(task.train_a[:2000], 1)}
  assert not a_keys & {x.tobytes() for x in task.train_b}
  # the split is the same every run for one seed, another for another seed
  again = data_lib.load(config(data="thin2thick", train_examples=5), str(idx_dir))
  np.testing.assert_array_equal(again.train_a, task.train_a[:5])
  other = data_lib.load(config(data="thin2thick", train_examples=5, seed=1), str(idx_dir))
  assert not np.array_equal(other.train_a, again.train_a)


def write_png(path, array):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(array).save(path)


def test_pix2pix_folder_splits_each_file_into_a_and_b(tmp_path):
  rng = np.random.default_rng(0)
  files = {}
  for split, count in (("train", 3), ("val", 2)):
    for i in range(count):
      whole = rng.integers(0, 256, (16, 32, 3)).astype(np.uint8)
      write_png(tmp_path / split / f"{i}.png", whole)
      files[(split, i)] = whole
  (tmp_path / "train" / "notes.txt").write_text("not an image, not listed")
  task = data_lib.load(config(data=f"folder:{tmp_path}", image_size=0, train_examples=0, test_examples=0))
  assert task.paired and task.test_paired
  np.testing.assert_array_equal(task.train_a[1], files[("train", 1)][:, :16])
  np.testing.assert_array_equal(task.train_b[1], files[("train", 1)][:, 16:])
  np.testing.assert_array_equal(task.test_b[0], files[("val", 0)][:, 16:])
  resized = data_lib.load(config(data=f"folder:{tmp_path}", image_size=8, channels=1, train_examples=0))
  assert resized.train_a.shape == (3, 8, 8, 1)


def test_cyclegan_folder_reads_each_domain(tmp_path):
  for split, count in (("trainA", 4), ("trainB", 3), ("testA", 2), ("testB", 2)):
    for i in range(count):
      write_png(tmp_path / split / f"{i}.png", np.full((12, 12, 3), 10 * i, np.uint8))
  task = data_lib.load(config(data=f"folder:{tmp_path}", image_size=16, train_examples=0, test_examples=0))
  assert not task.paired and not task.test_paired and task.true_pairs is None
  assert task.train_a.shape == (4, 16, 16, 3) and task.train_b.shape == (3, 16, 16, 3)


def test_bad_folders_fail_with_one_line_naming_the_place(tmp_path):
  for split in ("trainA", "trainB", "testA"):
    write_png(tmp_path / split / "0.png", np.zeros((8, 8), np.uint8))
  with pytest.raises(ValueError, match="missing testB/"):
    data_lib.load(config(data=f"folder:{tmp_path}", image_size=0))
  write_png(tmp_path / "testB" / "0.png", np.zeros((8, 8), np.uint8))
  (tmp_path / "trainA" / "1.png").write_bytes(b"not a png")
  with pytest.raises(ValueError, match=r"trainA/1.png is not an image"):
    data_lib.load(config(data=f"folder:{tmp_path}", image_size=0))
  write_png(tmp_path / "trainA" / "1.png", np.zeros((10, 8), np.uint8))
  with pytest.raises(ValueError, match=r"trainA/1.png is 8x10x1 but .*trainA/0.png is 8x8x1"):
    data_lib.load(config(data=f"folder:{tmp_path}", image_size=0))
  (tmp_path / "trainA" / "1.png").unlink()
  write_png(tmp_path / "trainB" / "0.png", np.zeros((12, 12), np.uint8))
  with pytest.raises(ValueError, match="A images are 8x8 but B images are 12x12"):
    data_lib.load(config(data=f"folder:{tmp_path}", image_size=0))
  with pytest.raises(ValueError, match="does not exist"):
    data_lib.load(config(data=f"folder:{tmp_path}/nowhere"))


@pytest.mark.parametrize("data,message", [
    ("edges2dogs", "choose one of: edges2digits, thin2thick, folder:<path>, tfds:cycle_gan/<name>"),
    ("tfds:mnist", "tfds:cycle_gan/<name>"),
])
def test_unknown_data_lists_the_choices(data, message):
  with pytest.raises(ValueError, match=message):
    data_lib.check_source(config(data=data))


def test_tfds_cycle_gan_with_mock_data():
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=6):
    task = data_lib.load(config(data="tfds:cycle_gan/horse2zebra", image_size=16, channels=3, train_examples=4,
                                test_examples=0))
  assert task.name == "tfds:cycle_gan/horse2zebra" and not task.paired and not task.test_paired
  assert task.train_a.shape == (4, 16, 16, 3) and task.test_b.shape == (6, 16, 16, 3)
  assert task.train_a.dtype == np.uint8


def test_b_to_a_direction_makes_thick2thin(idx_dir):
  task = data_lib.load(config(data="thin2thick", train_examples=5, test_examples=5, direction="BtoA"), str(idx_dir))
  np.testing.assert_array_equal(task.test_a, data_lib.dilate(task.test_b, 1))
  np.testing.assert_array_equal(task.true_pairs[0], data_lib.dilate(task.true_pairs[1], 1))
