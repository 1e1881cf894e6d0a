"""parallel.use_devices: a run's mesh, its batch checks and its report over a subset of the devices."""
import jax
import pytest

from experiments.configs import variants
from gan_jax import parallel
from gan_jax.protocols.imbalance import report
from gan_jax.train import gan_loop


def test_meshes_span_every_device_unless_a_context_names_fewer():
  everything = jax.devices()
  assert len(everything) == 8 and parallel.mesh_devices() == everything
  with parallel.use_devices(everything[2:4]):
    assert parallel.make_mesh().devices.tolist() == everything[2:4]
    with parallel.use_devices(everything[:1]):  # nested: the innermost wins, then the outer one again
      assert parallel.make_mesh().size == 1
    assert parallel.mesh_devices() == everything[2:4]
    assert parallel.make_mesh(everything).size == 8  # an explicit list still wins
  assert parallel.make_mesh().size == 8


def test_an_empty_device_list_is_refused():
  with pytest.raises(ValueError, match="at least one device"):
    with parallel.use_devices([]):
      pass


def test_batch_checks_and_the_report_count_the_mesh_devices():
  config = variants.load("dcgan_mnist", "smoke", batch_size=12)
  with pytest.raises(ValueError, match=r"batch_size=12 is not divisible by the number of devices \(8\)"):
    gan_loop.validate_config(config)
  with parallel.use_devices(jax.devices()[:4]):
    gan_loop.validate_config(config)  # 12 splits over 4 devices
    assert report.versions()["device"].startswith("4 x cpu")
  assert report.versions()["device"].startswith("8 x cpu")
