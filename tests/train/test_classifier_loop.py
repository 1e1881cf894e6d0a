"""Classifier training on uint8 arrays: class weights, determinism and data parallelism."""
import jax
import ml_collections
import numpy as np
import chex
import pytest

from gan_jax import parallel
from gan_jax.data import batch_order
from gan_jax.train import classifier_loop
from gan_jax.train import classifier_step


def _config(**overrides):
  return ml_collections.ConfigDict(dict(dict(
      model="cnn", conv_widths=(4, 8), hidden=16, dropout_rate=0.5, resnet_blocks=1, optimizer="adam",
      learning_rate=1e-2, momentum=0.9, weight_decay=0.0, schedule="constant", warmup_steps=0,
      decay_at="0.8,0.9", decay_factor=0.01, augment="", batch_size=32, num_steps=20, log_every=0), **overrides))


def _data():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 3, size=96)
  images = (rng.random((96, 8, 8, 1)) * 60 + 60 * labels[:, None, None, None]).astype(np.uint8)
  return images, labels


def _train(mesh, images, labels, weights=None, seed=0, config=None, num_steps=60):
  programs = classifier_loop.build_programs(config or _config(), 3, (8, 8, 1), mesh)
  variables = classifier_loop.train_classifier(programs, images, labels, seed=seed, num_steps=num_steps,
                                               batch_size=32, class_weights=weights)
  return programs, jax.device_get(variables)


def test_sharded_training_equals_single_device_and_learns():
  images, labels = _data()
  programs, sharded = _train(parallel.make_mesh(), images, labels)
  _, single = _train(parallel.make_mesh(jax.devices()[:1]), images, labels)
  assert jax.device_count() == 8
  assert set(sharded) == {"params"}  # the CNN has no BatchNorm statistics
  chex.assert_trees_all_close(sharded["params"], single["params"], atol=2e-4)
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
  assert list(base) == ["params"]  # the CNN has no BatchNorm statistics
  assert not np.allclose(base["params"]["Dense_1"]["bias"], other_seed["params"]["Dense_1"]["bias"])
  assert not np.allclose(base["params"]["Dense_1"]["bias"], weighted["params"]["Dense_1"]["bias"])


def test_recipe_schedule_warms_up_then_decays_at_its_fractions():
  recipe = classifier_loop.Recipe(learning_rate=0.1, warmup_steps=10, decay_at=(0.8, 0.9), decay_factor=0.01)
  rates = [recipe.learning_rate_at(s, 100) for s in range(100)]
  assert rates[0] == pytest.approx(0.01) and rates[9] == pytest.approx(0.1) and rates[79] == pytest.approx(0.1)
  assert rates[80] == pytest.approx(1e-3) and rates[89] == pytest.approx(1e-3) and rates[90] == pytest.approx(1e-5)
  assert recipe.decay_steps(100) == [80, 90]
  constant = classifier_loop.Recipe(optimizer="adam", learning_rate=1e-3, schedule="constant")
  assert {constant.learning_rate_at(s, 100) for s in range(100)} == {1e-3}
  with pytest.raises(ValueError, match="decay_at must increase"):
    classifier_loop.Recipe(decay_at=(0.9, 0.8)).validate()
  with pytest.raises(ValueError, match="Unknown optimizer 'rmsprop'"):
    classifier_loop.Recipe(optimizer="rmsprop").validate()


@pytest.mark.parametrize("model", ["cnn", "resnet"])
def test_head_only_training_leaves_every_feature_parameter_bit_identical(model):
  images, labels = _data()
  mesh = parallel.make_mesh()
  config = _config(model=model)
  programs, trained = _train(mesh, images, labels, config=config, num_steps=20)
  head_only = classifier_loop.build_programs(config, 3, (8, 8, 1), mesh, head_only=True)
  retrained = jax.device_get(classifier_loop.train_classifier(
      head_only, images, labels, seed=5, num_steps=20, batch_size=32, init_variables=trained, class_balanced=True))
  for name in trained["params"]:
    same = jax.tree.map(np.array_equal, trained["params"][name], retrained["params"][name])
    assert all(jax.tree.leaves(same)) == (name != "Dense_1"), name  # only the head moved
  # BatchNorm's running statistics are features too: frozen as well.
  chex.assert_trees_all_equal(trained.get("batch_stats", {}), retrained.get("batch_stats", {}))
  fresh = jax.device_get(head_only.init(jax.random.PRNGKey(5)).params)
  assert not np.array_equal(retrained["params"]["Dense_1"]["kernel"], fresh["Dense_1"]["kernel"])


def test_resnet_updates_batch_statistics_over_the_global_batch():
  """BatchNorm under the global-view jit normalises over the whole batch: 8 devices equal one."""
  images, labels = _data()
  # One SGD step: BatchNorm's backward pass amplifies the rounding differences between the
  # 8 per-device convolutions and the single one (chaotically over many steps).
  config = _config(model="resnet", optimizer="sgd", learning_rate=0.05)
  programs, sharded = _train(parallel.make_mesh(), images, labels, config=config, num_steps=1)
  _, single = _train(parallel.make_mesh(jax.devices()[:1]), images, labels, config=config, num_steps=1)
  initial = jax.device_get(programs.init(jax.random.PRNGKey(0)).batch_stats)
  assert set(sharded) == {"params", "batch_stats"}
  moved = jax.tree.map(lambda a, b: not np.allclose(a, b), initial, sharded["batch_stats"])
  assert all(jax.tree.leaves(moved))  # every BatchNorm layer tracked its statistics
  chex.assert_trees_all_close(sharded["batch_stats"], single["batch_stats"], atol=1e-6)
  chex.assert_trees_all_close(sharded["params"], single["params"], atol=2e-4)


def test_class_balanced_batches_are_deterministic_and_balanced_in_expectation():
  labels = np.array([0] * 90 + [1] * 9 + [2])
  draws = np.concatenate([batch_order.class_balanced_indices(s, labels, 64, seed=3) for s in range(50)])
  shares = np.bincount(labels[draws], minlength=3) / len(draws)
  np.testing.assert_allclose(shares, [1 / 3] * 3, atol=0.04)
  np.testing.assert_array_equal(batch_order.class_balanced_indices(7, labels, 64, seed=3),
                                batch_order.class_balanced_indices(7, labels, 64, seed=3))
  assert not np.array_equal(batch_order.class_balanced_indices(7, labels, 64, seed=3),
                            batch_order.class_balanced_indices(8, labels, 64, seed=3))


@pytest.mark.parametrize("model, mixup_alpha", [("cnn", 0.0), ("resnet", 0.0), ("cnn", 1.0)])
def test_stacked_seeds_equal_their_sequential_runs(model, mixup_alpha):
  # One vmapped program of 3 seeds against 3 runs of train_classifier: equal up to float rounding,
  # with the SGD recipe, augmentation, dropout, (for the ResNet) BatchNorm statistics and mixup with
  # Remix's labels (whose rounding differs, by about 1e-8 a step: docs/device_check.md).
  images, labels = _data()
  mesh = parallel.make_mesh()
  config = _config(model=model, optimizer="sgd", learning_rate=0.05, weight_decay=5e-4, schedule="step",
                   warmup_steps=3, augment="translate")
  loss = classifier_step.LossConfig(mixup_alpha=mixup_alpha, remix_kappa=3.0 if mixup_alpha else 0.0,
                                    augment="translate")
  programs = classifier_loop.build_programs(config, 3, (8, 8, 1), mesh, loss=loss)
  seeds = (0, 7, 1003)
  stacked = jax.device_get(classifier_loop.train_classifiers(programs, images, labels, seeds=seeds, num_steps=12,
                                                             batch_size=32))
  sequential = [jax.device_get(classifier_loop.train_classifier(programs, images, labels, seed=s, num_steps=12,
                                                                batch_size=32)) for s in seeds]
  assert len(stacked) == 3
  for together, alone in zip(stacked, sequential):
    chex.assert_trees_all_close(together, alone, atol=1e-5, rtol=1e-5)
  # The members differ from each other: each read its own seed's batches and initialisation.
  assert not np.allclose(jax.tree.leaves(stacked[0]["params"])[-1], jax.tree.leaves(stacked[1]["params"])[-1])


def test_stacked_training_needs_a_seed():
  images, labels = _data()
  programs = classifier_loop.build_programs(_config(), 3, (8, 8, 1), parallel.make_mesh())
  with pytest.raises(ValueError, match="at least one seed"):
    classifier_loop.train_classifiers(programs, images, labels, seeds=(), num_steps=1, batch_size=32)
