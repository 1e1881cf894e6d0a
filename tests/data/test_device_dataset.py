"""DeviceDataset serves exactly the host sampler's batches, sharded over the mesh."""
import chex
import numpy as np
import pytest

from gan_jax import data
from gan_jax import parallel
from gan_jax.data import device_dataset


def test_device_batches_equal_host_sampler_batches():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (100, 4, 4, 1), dtype=np.uint8)
  labels = rng.integers(0, 10, 100).astype(np.int32)
  mesh = parallel.make_mesh()
  dataset = device_dataset.DeviceDataset(images, labels, mesh, (-1.0, 1.0))
  host = data.InMemoryDataset(data.scale_images(images, (-1.0, 1.0)), labels)
  steps = [7, 8, 9]  # crosses an epoch boundary at 100 // 16 = 6 batches per epoch
  batch = dataset.batches(steps, batch_size=16, seed=3)
  chex.assert_shape(batch["image"], (3, 16, 4, 4, 1))
  assert batch["image"].sharding.is_equivalent_to(parallel.batch_sharding(mesh, 1), 5)
  expected = [host.batch(s, 16, 3) for s in steps]
  np.testing.assert_allclose(np.asarray(batch["image"]), np.stack([e["image"] for e in expected]), atol=1e-6)
  np.testing.assert_array_equal(np.asarray(batch["label"]), np.stack([e["label"] for e in expected]))


def test_rejects_scaled_images():
  with pytest.raises(ValueError, match="uint8"):
    device_dataset.DeviceDataset(np.zeros((4, 2, 2, 1), np.float32), np.zeros(4), parallel.make_mesh(), (0, 1))
