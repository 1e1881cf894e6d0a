"""The classifier's 2x2 max-pooling equals Flax's, forward and gradient."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.models import classifier


@pytest.mark.parametrize("shape", [(2, 28, 28, 3), (3, 7, 9, 2)])
def test_max_pool_2x2_matches_flax(shape):
  x = jax.random.normal(jax.random.PRNGKey(0), shape)
  reference = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))
  np.testing.assert_array_equal(classifier.max_pool_2x2(x), reference(x))
  target = jax.random.normal(jax.random.PRNGKey(1), reference(x).shape)
  grad = lambda pool: jax.grad(lambda x: jnp.sum(pool(x) * target))(x)
  # Continuous inputs have no ties, so both route the gradient to the same maxima.
  np.testing.assert_allclose(grad(classifier.max_pool_2x2), grad(reference), rtol=1e-6)
