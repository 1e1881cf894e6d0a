"""The resumable batch order: determinism, epoch structure, process slices, InMemoryDataset."""
import numpy as np
import pytest

from gan_jax.data import batch_order


def batches(steps, **kwargs):
  return [batch_order.batch_indices(s, **kwargs) for s in steps]


def test_same_arguments_same_batch():
  kwargs = dict(num_examples=1000, batch_size=32, seed=5)
  first = batch_order.batch_indices(17, **kwargs)
  assert first.dtype == np.int64 and first.shape == (32,)
  first[:] = -1  # callers may scribble on the result without changing later batches
  again = batch_order.batch_indices(17, **kwargs)
  np.testing.assert_array_equal(again, batch_order.batch_indices(17, **kwargs))
  assert again.min() >= 0


def test_a_resumed_run_sees_the_same_batches():
  kwargs = dict(num_examples=100, batch_size=8, seed=0)
  straight = batches(range(40), **kwargs)
  interrupted = batches(range(13), **kwargs)
  batch_order._epoch_permutation.cache_clear()  # pylint: disable=protected-access  # a restarted process
  resumed = interrupted + batches(range(13, 40), **kwargs)
  assert len(resumed) == len(straight)
  for a, b in zip(straight, resumed):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("num_examples,batch_size", [(100, 10), (103, 10), (64, 64), (7, 2)])
def test_an_epoch_visits_distinct_examples(num_examples, batch_size):
  per_epoch = batch_order.steps_per_epoch(num_examples, batch_size)
  assert per_epoch == num_examples // batch_size
  for epoch in range(3):
    steps = range(epoch * per_epoch, (epoch + 1) * per_epoch)
    seen = np.concatenate(batches(steps, num_examples=num_examples, batch_size=batch_size, seed=1))
    assert len(np.unique(seen)) == per_epoch * batch_size
    assert seen.min() >= 0 and seen.max() < num_examples


def test_epochs_and_seeds_change_the_order():
  kwargs = dict(num_examples=1000, batch_size=100)
  epoch0 = np.concatenate(batches(range(10), seed=0, **kwargs))
  epoch1 = np.concatenate(batches(range(10, 20), seed=0, **kwargs))
  other_seed = np.concatenate(batches(range(10), seed=1, **kwargs))
  np.testing.assert_array_equal(np.sort(epoch0), np.arange(1000))
  np.testing.assert_array_equal(np.sort(epoch1), np.arange(1000))
  assert not np.array_equal(epoch0, epoch1)
  assert not np.array_equal(epoch0, other_seed)


@pytest.mark.parametrize("process_count", [1, 2, 4, 8])
def test_process_slices_concatenate_to_the_global_batch(process_count):
  global_batch = batch_order.batch_indices(3, num_examples=500, batch_size=64, seed=2)
  parts = [batch_order.process_slice(global_batch, i, process_count) for i in range(process_count)]
  assert all(len(p) == 64 // process_count for p in parts)
  np.testing.assert_array_equal(np.concatenate(parts), global_batch)


@pytest.mark.parametrize("kwargs,phrase", [
    (dict(step=0, num_examples=10, batch_size=11, seed=0), "num_examples=10 is smaller than batch_size=11"),
    (dict(step=0, num_examples=10, batch_size=0, seed=0), "batch_size must be positive, got 0"),
    (dict(step=-1, num_examples=10, batch_size=2, seed=0), "step must be non-negative, got -1"),
    (dict(step=0, num_examples=10, batch_size=2, seed=-4), "seed must be non-negative, got -4"),
])
def test_batch_indices_errors(kwargs, phrase):
  step = kwargs.pop("step")
  with pytest.raises(ValueError, match=phrase):
    batch_order.batch_indices(step, **kwargs)


@pytest.mark.parametrize("process_index,process_count,phrase", [
    (0, 3, "global batch size 8 is not divisible by process_count=3"),
    (2, 2, r"process_index must lie in \[0, process_count\), got 2 of 2"),
    (-1, 2, "got -1 of 2"),
    (0, 0, "got 0 of 0"),
])
def test_process_slice_errors(process_index, process_count, phrase):
  with pytest.raises(ValueError, match=phrase):
    batch_order.process_slice(np.arange(8), process_index, process_count)


@pytest.fixture
def dataset():
  images = np.arange(40, dtype=np.float32).reshape(40, 1, 1, 1)  # pixel value = row number
  return batch_order.InMemoryDataset(images, np.arange(40) % 10)


def test_in_memory_batch_rows_follow_batch_indices(dataset):
  assert dataset.num_examples == 40
  batch = dataset.batch(6, batch_size=8, seed=3)
  rows = batch_order.batch_indices(6, num_examples=40, batch_size=8, seed=3)
  assert batch["image"].dtype == np.float32 and batch["image"].shape == (8, 1, 1, 1)
  assert batch["label"].dtype == np.int32
  np.testing.assert_array_equal(batch["image"][:, 0, 0, 0], rows)
  np.testing.assert_array_equal(batch["label"], rows % 10)


def test_in_memory_process_batches_make_the_global_batch(dataset):
  whole = dataset.batch(11, 8, 0)
  parts = [dataset.batch(11, 8, 0, process_index=i, process_count=4) for i in range(4)]
  for key in ("image", "label"):
    assert parts[0][key].shape[0] == 2
    np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), whole[key])


@pytest.mark.parametrize("images,labels,phrase", [
    (np.zeros((4, 2, 2, 1), np.uint8), np.zeros(4, np.int32), "images must be scaled floats"),
    (np.zeros((4, 2, 2, 1), np.float32), np.zeros(4, np.float32), "labels must be a 1-D integer array"),
    (np.zeros((4, 2, 2, 1), np.float32), np.zeros(3, np.int32), "4 images but 3 labels"),
])
def test_in_memory_dataset_rejects_bad_arrays(images, labels, phrase):
  with pytest.raises(ValueError, match=phrase):
    batch_order.InMemoryDataset(images, labels)
