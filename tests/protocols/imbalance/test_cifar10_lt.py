"""The :cifar10_lt config end to end on TFDS mock CIFAR-10: ResNet with BatchNorm, crops and flips, DRW, cRT."""
import flax
import numpy as np
import pytest

from experiments.configs import imbalance as imbalance_config
from gan_jax import fs
from gan_jax.protocols.imbalance import pipeline
from gan_jax.protocols.imbalance import report

# End-to-end runs: their assertions do not depend on the device count (see conftest.mesh_devices).
MESH_DEVICES = 2


# Generators on MNIST-sized data are the smoke pipeline's; here every generator section is only
# validated against the CIFAR-10 shape (a run checks all of them before its first stage).
METHODS = "none,ldam_drw,crt,logit_adjustment_posthoc"


def test_config_is_cao_et_al_recipe():
  config = imbalance_config.get_config("cifar10_lt")
  cls = config.classifier
  assert (config.dataset, config.profile, cls.model, cls.resnet_blocks) == ("cifar10", "lt_100", "resnet", 5)
  assert (cls.optimizer, cls.learning_rate, cls.momentum, cls.weight_decay, cls.batch_size) == (
      "sgd", 0.1, 0.9, 2e-4, 128)
  train_images = sum(round(5000 * 100 ** (-i / 9)) for i in range(10))  # lt_100: n_i = 5000 * 100^(-i/9)
  assert cls.num_steps == 200 * train_images // 128 and cls.warmup_steps == 5 * train_images // 128
  assert cls.decay_at == "0.8,0.9" and cls.decay_factor == 0.01  # epochs 160 and 180
  assert cls.augment == "crop_flip"
  counts = [int(c) for c in config.test_profile.split(",")]
  assert counts[0] == 1000 and counts[-1] == 10 and counts == sorted(counts, reverse=True)


@pytest.fixture(scope="module")
def mock_run(tmp_path_factory):
  tfds = pytest.importorskip("tensorflow_datasets")
  config = imbalance_config.get_config("cifar10_lt")
  # The whole protocol at toy size: the mock split holds ~300 images per class, so the same
  # rho = 100 profile starts from 200; ResNet-8 (one block per stage) instead of ResNet-32.
  config.methods = METHODS
  config.profile, config.imbalance_rho, config.imbalance_n_max = "exponential", 100.0, 200
  config.num_seeds = 1
  config.classifier.update(resnet_blocks=1, batch_size=16, num_steps=10, warmup_steps=2, crt_steps=4, log_every=0)
  config.evaluator_steps = config.cas_steps = 4
  workdir = str(tmp_path_factory.mktemp("cifar10_lt"))
  with tfds.testing.mock_data(num_examples=3000):
    results = pipeline.run_benchmark(config, workdir)
  return config, workdir, results


def test_mock_cifar10_lt_runs_every_kind_of_method(mock_run):
  config, workdir, results = mock_run
  counts = results["train_counts"]
  assert counts[0] == 200 and counts[-1] == 2 and counts == sorted(counts, reverse=True)
  assert set(results["methods"]) == set(METHODS.split(","))
  recipe = results["classifier_recipe"]
  assert recipe["architecture"] == {"model": "resnet", "resnet_blocks": 1}
  assert recipe["augment"] == "crop_flip" and recipe["drw_start_step"] == 8  # the first decay, 0.8 * 10
  for entry in results["methods"].values():
    for test_set in report.TEST_SETS:
      assert 0.0 <= entry[test_set]["balanced_accuracy"]["mean"] <= 100.0
  # No validation set on CIFAR-10-LT (the head class uses all 5,000 images): tau = la_tau.
  record = fs.read_json(fs.join(workdir, "classifiers", "logit_adjustment_posthoc", "seed0.json"))
  assert record["tau"] == config.la_tau
  # The plain classifier that cRT and post-hoc adjustment build on is kept with its BatchNorm statistics.
  kept = flax.serialization.msgpack_restore(fs.read_bytes(fs.join(workdir, "classifiers", "none", "seed0.msgpack")))
  assert set(kept) == {"params", "batch_stats"}
  assert all(np.all(np.isfinite(v)) for v in flax.traverse_util.flatten_dict(kept["batch_stats"]).values())
