"""tf.data pipelines over TFDS: mock data for shapes, and a small real TFDS dataset for sharding and order."""
import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from gan_jax.data import sources  # pylint: disable=g-import-not-at-top,wrong-import-position
from gan_jax.data import tfds_pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position
from tensorflow_datasets.image_classification import cifar  # pylint: disable=g-import-not-at-top,wrong-import-position

NUM_TRAIN = 43  # odd, so two equal process shards must drop one example


class TinyCifar10(cifar.Cifar10, skip_registration=True):
  """CIFAR-10's real builder and file format, with example i an image filled with pixel value i."""
  name = "cifar10"

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return {"train": self._generate_examples(range(NUM_TRAIN)), "test": self._generate_examples(range(200, 210))}

  def _generate_examples(self, ids):  # pylint: disable=arguments-renamed
    for i in ids:
      yield i, {"id": f"train_{i}", "image": np.full((32, 32, 3), i, np.uint8), "label": i % 10}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp("tfds")
  TinyCifar10(data_dir=str(path)).download_and_prepare()
  return str(path)


def example_ids(batch, output_range=(0.0, 1.0)):
  """Undoes the scaling of the first pixel, which holds the example id."""
  lo, hi = output_range
  return np.round((batch["image"][:, 0, 0, 0] - lo) / (hi - lo) * 255).astype(int)


def one_pass(data_dir, **kwargs):
  ds = tfds_pipeline.make_tfds_dataset("cifar10", "train", data_dir=data_dir, repeat=False, output_range=(0.0, 1.0),
                                       **kwargs)
  return list(tfds_pipeline.as_numpy_batches(ds))


@pytest.mark.parametrize("name,shape", [("cifar10", (32, 32, 3)), ("mnist", (28, 28, 1))])
@pytest.mark.parametrize("output_range", [(-1.0, 1.0), (0.0, 1.0)])
def test_mock_batches_have_the_documented_shapes(name, shape, output_range):
  with tfds.testing.mock_data(num_examples=16):
    ds = tfds_pipeline.make_tfds_dataset(name, "train", batch_size=4, seed=0, output_range=output_range,
                                         process_index=1, process_count=2)
    batches = [b for b, _ in zip(tfds_pipeline.as_numpy_batches(ds), range(6))]  # repeats past one pass
  assert len(batches) == 6
  for batch in batches:
    assert batch["image"].shape == (4, *shape) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (4,) and batch["label"].dtype == np.int32
    assert output_range[0] <= batch["image"].min() and batch["image"].max() <= output_range[1]
    assert 0 <= batch["label"].min() and batch["label"].max() < 10


def test_process_shards_are_equal_disjoint_and_cover_the_split(data_dir):
  shards = []
  for process_index in range(2):
    batches = one_pass(data_dir, batch_size=7, seed=0, process_index=process_index, process_count=2)
    assert len(batches) == 3  # 43 // 2 = 21 examples per process
    shards.append(np.concatenate([example_ids(b) for b in batches]))
  assert [len(np.unique(s)) for s in shards] == [21, 21]
  assert not set(shards[0]) & set(shards[1])
  assert set(shards[0]) | set(shards[1]) <= set(range(NUM_TRAIN))


def test_defaults_to_this_jax_process(data_dir):
  batches = one_pass(data_dir, batch_size=NUM_TRAIN, seed=0)  # one process: nothing dropped
  np.testing.assert_array_equal(np.sort(example_ids(batches[0])), np.arange(NUM_TRAIN))


def test_same_seed_same_batches_other_seed_other_order(data_dir):
  first = one_pass(data_dir, batch_size=8, seed=4)
  again = one_pass(data_dir, batch_size=8, seed=4)
  other = one_pass(data_dir, batch_size=8, seed=5)
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
  assert not np.array_equal(example_ids(first[0]), example_ids(other[0]))


def test_labels_stay_with_their_images_and_scaling_matches_numpy(data_dir):
  output_range = (-0.3, 0.7)
  ds = tfds_pipeline.make_tfds_dataset("cifar10", "train", batch_size=NUM_TRAIN, seed=0, shuffle=False, repeat=False,
                                       output_range=output_range, data_dir=data_dir)
  (batch,) = list(tfds_pipeline.as_numpy_batches(ds))
  ids = example_ids(batch, output_range)
  np.testing.assert_array_equal(batch["label"], ids % 10)
  pixels = np.broadcast_to(ids.astype(np.uint8)[:, None, None, None], batch["image"].shape)
  np.testing.assert_array_equal(batch["image"], sources.scale_images(pixels, output_range))


def test_repeat_reshuffles_every_epoch(data_dir):
  ds = tfds_pipeline.make_tfds_dataset("cifar10", "train", batch_size=7, seed=0, output_range=(0.0, 1.0),
                                       data_dir=data_dir, process_index=0, process_count=2)
  ids = [example_ids(b) for b, _ in zip(tfds_pipeline.as_numpy_batches(ds), range(6))]
  epoch0, epoch1 = np.concatenate(ids[:3]), np.concatenate(ids[3:])
  np.testing.assert_array_equal(np.sort(epoch0), np.sort(epoch1))
  assert not np.array_equal(epoch0, epoch1)


def test_load_arrays_reads_a_prepared_tfds_dataset(data_dir):
  images, labels = sources.load_arrays("cifar10", "train", tfds_data_dir=data_dir, allow_download=False)
  assert images.shape == (NUM_TRAIN, 32, 32, 3) and images.dtype == np.uint8 and labels.dtype == np.int32
  np.testing.assert_array_equal(np.sort(images[:, 0, 0, 0]), np.arange(NUM_TRAIN))
  np.testing.assert_array_equal(labels, images[:, 0, 0, 0] % 10)


@pytest.mark.parametrize("kwargs,error,phrase", [
    (dict(name="svhn"), ValueError, "Unknown dataset 'svhn'"),
    (dict(batch_size=0), ValueError, "batch_size must be positive, got 0"),
    (dict(process_index=2, process_count=2), ValueError, "got 2 of 2"),
    (dict(output_range=(1.0, -1.0)), ValueError, "lo < hi"),
    (dict(), sources.DataUnavailableError, "Cannot load 'cifar10' \\(train\\): TFDS has not prepared it"),
])
def test_errors(tmp_path, kwargs, error, phrase):
  # tmp_path is an empty TFDS folder and downloading is off, so valid arguments fail fast.
  args = {"name": "cifar10", "split": "train", "batch_size": 4, "seed": 0, "data_dir": str(tmp_path),
          "download": False, **kwargs}
  with pytest.raises(error, match=phrase):
    tfds_pipeline.make_tfds_dataset(args.pop("name"), args.pop("split"), **args)
