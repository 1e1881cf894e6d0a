"""Classifier step: learns a separable toy task, weighting, data-parallel equivalence."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gan_jax import losses
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
  logits = cs.make_predict_fn(model)({"params": finals[0][0]}, test["image"])
  assert float(jnp.mean(jnp.argmax(logits, -1) == test["label"])) > 0.95


def _logit_model(num_classes=3):
  """A 'classifier' whose logits are its parameters: the loss kinds can be compared with the pure losses."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top

  class Logits(nn.Module):
    num_classes: int = 3

    @nn.compact
    def __call__(self, images, train=True):
      del train
      bias = self.param("bias", lambda k, s: jnp.array([0.4, -0.2, 0.1]), (num_classes,))
      return jnp.zeros((images.shape[0], num_classes)) + bias

  return Logits(num_classes)


@pytest.mark.parametrize("kind, expected", [
    ("cross_entropy", lambda z, y, n: losses.logit_adjusted_cross_entropy(z, y, n, tau=0.0)),
    ("logit_adjusted", lambda z, y, n: losses.logit_adjusted_cross_entropy(z, y, n, tau=1.0)),
    ("balanced_softmax", losses.balanced_softmax_cross_entropy),
    ("ldam", losses.ldam_loss),
])
def test_each_loss_kind_is_the_pure_loss(kind, expected):
  model = _logit_model()
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2, 2, 1)))["params"]
  state = cs.ClassifierState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optax.sgd(0.0).init(params),
                             rng=jax.random.PRNGKey(1))
  counts = np.array([50.0, 10.0, 2.0], np.float32)
  batch = {"image": np.zeros((4, 2, 2, 1), np.float32), "label": np.array([0, 1, 2, 2], np.int32)}
  step = cs.make_classifier_train_step(model, optax.sgd(0.0), cs.LossConfig(kind=kind))
  _, metrics = step(state, batch, cs.loss_args(3, class_counts=counts))
  logits = jnp.broadcast_to(params["bias"], (4, 3))
  chex.assert_trees_all_close(metrics["loss"], expected(logits, batch["label"], counts), rtol=1e-5)


def test_deferred_reweighting_switches_exactly_at_its_step():
  args = cs.loss_args(3, weights=np.ones(3), late_weights=np.array([0.5, 1.0, 4.0]), switch_step=7)
  np.testing.assert_array_equal(cs.class_weights_at(args, jnp.int32(6)), [1.0, 1.0, 1.0])
  np.testing.assert_array_equal(cs.class_weights_at(args, jnp.int32(7)), [0.5, 1.0, 4.0])
  model = _logit_model()
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2, 2, 1)))["params"]
  batch = {"image": np.zeros((2, 2, 2, 1), np.float32), "label": np.array([0, 2], np.int32)}
  step = cs.make_classifier_train_step(model, optax.sgd(0.0))
  values = []
  for s in (6, 7):
    state = cs.ClassifierState(step=jnp.int32(s), params=params, opt_state=optax.sgd(0.0).init(params),
                               rng=jax.random.PRNGKey(1))
    values.append(float(step(state, batch, args)[1]["loss"]))
  per = optax.softmax_cross_entropy_with_integer_labels(jnp.broadcast_to(params["bias"], (2, 3)), batch["label"])
  assert values[0] == pytest.approx(float(per.mean()), rel=1e-6)
  assert values[1] == pytest.approx(float((0.5 * per[0] + 4.0 * per[1]) / 4.5), rel=1e-6)


def test_remix_gives_the_minority_label_unless_the_majority_image_dominates():
  images = jnp.stack([jnp.zeros((2, 2, 1)), jnp.ones((2, 2, 1))])  # a majority-class and a minority-class image
  labels = jnp.array([0, 1])
  counts = jnp.array([100.0, 10.0])
  remix = cs.LossConfig(mixup_alpha=1.0, remix_kappa=3.0, remix_tau=0.5)
  checked = 0
  for seed in range(40):
    mixed, other, first = cs.mix_batch(images, labels, jax.random.PRNGKey(seed), remix, counts)
    if int(other[0]) != 1:
      continue  # the permutation kept the order: each image mixed with itself
    lam = 1.0 - float(mixed[0, 0, 0, 0])  # mixed[0] = lam * zeros + (1 - lam) * ones
    # Majority image first: its label goes to the minority class unless lam >= tau.
    assert float(first[0]) == pytest.approx(0.0 if lam < 0.5 else lam, abs=1e-6)
    # Minority image first: it keeps its label when the majority share 1 - lam is below tau.
    assert float(first[1]) == pytest.approx(1.0 if 1.0 - lam < 0.5 else lam, abs=1e-6)
    checked += 1
  assert checked > 5
  _, _, first = cs.mix_batch(images, labels, jax.random.PRNGKey(0), cs.LossConfig(mixup_alpha=1.0), counts)
  assert float(first[0]) == float(first[1])  # plain mixup: both keep lambda


def test_translation_moves_the_image_by_at_most_two_pixels():
  image = np.zeros((1, 8, 8, 1), np.float32)
  image[0, 3, 4, 0] = 1.0
  images = jnp.asarray(np.repeat(image, 64, axis=0))
  shifted = np.asarray(cs.augment_images(images, jax.random.PRNGKey(0), cs.LossConfig(augment="translate")))
  positions = [np.argwhere(s[..., 0] == 1.0) for s in shifted]
  offsets = {tuple(p[0] - np.array([3, 4])) for p in positions if len(p)}
  assert all(len(p) == 1 for p in positions) and len(offsets) > 10
  assert max(max(abs(a), abs(b)) for a, b in offsets) <= 2
  flipped = cs.augment_images(images, jax.random.PRNGKey(1), cs.LossConfig(augment="crop_flip", crop_padding=0))
  columns = {int(np.argwhere(np.asarray(f)[..., 0] == 1.0)[0][1]) for f in flipped}
  assert columns == {4, 3}  # unflipped, or mirrored about the centre of 8 columns
