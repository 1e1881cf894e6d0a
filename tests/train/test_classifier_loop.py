"""Classifier training on uint8 arrays: class weights, determinism and data parallelism."""
import jax
import ml_collections
import numpy as np
import chex

from gan_jax import parallel
from gan_jax.train import classifier_loop


def _config():
  return ml_collections.ConfigDict(dict(conv_widths=(4, 8), hidden=16, dropout_rate=0.5, learning_rate=1e-2,
                                        batch_size=32, num_steps=20, log_every=0))


def _data():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 3, size=96)
  images = (rng.random((96, 8, 8, 1)) * 60 + 60 * labels[:, None, None, None]).astype(np.uint8)
  return images, labels


def _train(mesh, images, labels, weights=None, seed=0):
  programs = classifier_loop.build_programs(_config(), 3, (8, 8, 1), mesh)
  params = classifier_loop.train_classifier(programs, images, labels, seed=seed, num_steps=60, batch_size=32,
                                            class_weights=weights)
  return programs, jax.device_get(params)


def test_sharded_training_equals_single_device_and_learns():
  images, labels = _data()
  programs, sharded = _train(parallel.make_mesh(), images, labels)
  _, single = _train(parallel.make_mesh(jax.devices()[:1]), images, labels)
  assert jax.device_count() == 8
  chex.assert_trees_all_close(sharded, single, atol=1e-5)
  probs, features = classifier_loop.predict(programs, sharded, images, batch_size=40)  # 3 batches, last padded
  chex.assert_shape((probs, features), ((96, 3), (96, 16)))
  assert np.mean(probs.argmax(-1) == labels) > 0.9


def test_seed_and_class_weights_change_the_result():
  images, labels = _data()
  mesh = parallel.make_mesh()
  _, base = _train(mesh, images, labels)
  _, same = _train(mesh, images, labels)
  _, other_seed = _train(mesh, images, labels, seed=1)
  _, weighted = _train(mesh, images, labels, weights=np.array([1.0, 5.0, 0.2], np.float32))
  chex.assert_trees_all_equal(base, same)
  assert not np.allclose(base["Dense_1"]["bias"], other_seed["Dense_1"]["bias"])
  assert not np.allclose(base["Dense_1"]["bias"], weighted["Dense_1"]["bias"])
