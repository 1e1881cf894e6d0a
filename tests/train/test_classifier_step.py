"""Classifier step: learns a separable toy task, weighting, data-parallel equivalence."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from gan_jax import models
from gan_jax import parallel
from gan_jax.train import classifier_step as cs


def toy_batch(n=32, seed=0):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, n).astype(np.int32)
  images = rng.normal(0, 0.1, (n, 8, 8, 1)).astype(np.float32)
  images[labels == 1, :4] += 1.0  # class 1 is bright in the top half
  return {"image": images, "label": labels}


def test_weighted_cross_entropy_by_hand():
  logits = jnp.array([[0.0, 0.0], [jnp.log(3.0), 0.0]])
  labels = jnp.array([0, 1])
  ce = np.array([np.log(2.0), np.log(4.0)])
  chex.assert_trees_all_close(cs.weighted_cross_entropy(logits, labels), ce.mean(), rtol=1e-6)
  chex.assert_trees_all_close(cs.weighted_cross_entropy(logits, labels, jnp.array([1.0, 3.0])),
                              (ce[0] + 3 * ce[1]) / 4, rtol=1e-6)


def test_classifier_learns_and_sharded_equals_single_device():
  model = models.CNNClassifier(num_classes=2, conv_widths=(4, 8), hidden=16)
  tx = optax.adam(1e-2)
  state0 = cs.init_classifier_state(model, tx, jax.random.PRNGKey(0), (8, 8, 1))
  step = cs.make_classifier_train_step(model, tx)
  finals = []
  for mesh in (parallel.make_mesh(jax.devices()[:1]), parallel.make_mesh()):
    jitted = parallel.data_parallel_jit(step, mesh)
    state = parallel.replicate(jax.device_get(state0), mesh)
    for i in range(30):
      state, metrics = jitted(state, parallel.shard_batch(toy_batch(seed=i), mesh))
    finals.append((jax.device_get(state.params), jax.device_get(metrics)))
  chex.assert_trees_all_close(finals[0], finals[1], rtol=1e-4, atol=1e-5)
  test = toy_batch(n=200, seed=999)
  logits = cs.make_predict_fn(model)(finals[0][0], test["image"])
  assert float(jnp.mean(jnp.argmax(logits, -1) == test["label"])) > 0.95
