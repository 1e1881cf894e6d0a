"""The latent-diffusion U-Net: attention against hand computation, shapes, conditioning, initial output."""
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.models import unet


def test_timestep_embedding_is_cos_then_sin_of_geometric_frequencies():
  emb = np.asarray(unet.timestep_embedding(jnp.array([0, 3]), 8, max_period=10_000.0))
  freqs = 10_000.0 ** (-np.arange(4) / 4)
  chex.assert_trees_all_close(emb[1], np.concatenate([np.cos(3 * freqs), np.sin(3 * freqs)]), atol=1e-6)
  chex.assert_trees_all_close(emb[0], np.concatenate([np.ones(4), np.zeros(4)]))
  with pytest.raises(ValueError, match="even dim, got 7"):
    unet.timestep_embedding(jnp.array([1]), 7)


def test_attention_equals_the_naive_formula():
  kq, kk, kv = jax.random.split(jax.random.PRNGKey(0), 3)
  q, k, v = (jax.random.normal(key, (2, n, 3, 4)) for key, n in ((kq, 5), (kk, 6), (kv, 6)))
  out = np.asarray(unet.attention(q, k, v))
  q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
  for b in range(2):
    for h in range(3):
      scores = q[b, :, h] @ k[b, :, h].T / math.sqrt(4)
      weights = np.exp(scores - scores.max(-1, keepdims=True))
      weights /= weights.sum(-1, keepdims=True)
      chex.assert_trees_all_close(out[b, :, h], weights @ v[b, :, h], atol=1e-5)


def test_cross_attention_with_one_condition_token_adds_its_projected_value_everywhere():
  # One key: the softmax weight is 1 whatever the query, so every pixel gets out(value(token)).
  module = unet.CrossAttention(heads=2)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 3, 8))
  context = jax.random.normal(jax.random.PRNGKey(1), (2, 1, 5))
  params = module.init(jax.random.PRNGKey(2), x, context)["params"]
  out = module.apply({"params": params}, x, context)
  value = context[:, 0] @ params["value"]["kernel"]
  added = value @ params["out"]["kernel"] + params["out"]["bias"]
  chex.assert_trees_all_close(out, x + added[:, None, None, :], atol=1e-5)


@pytest.mark.parametrize("shape, widths", [((28, 28, 1), (16, 32, 32)), ((7, 7, 4), (16, 32)), ((32, 32, 3), (16, 32))])
def test_denoiser_keeps_the_input_shape_and_starts_at_zero(shape, widths):
  model = unet.ConditionalDenoiser(num_classes=10, out_channels=shape[-1], widths=widths, heads=2, context_dim=16)
  x = jax.random.normal(jax.random.PRNGKey(0), (2,) + shape)
  t, labels = jnp.array([0, 999]), jnp.array([3, 10])
  variables = model.init(jax.random.PRNGKey(1), x, t, labels)
  out = model.apply(variables, x, t, labels)
  chex.assert_shape(out, (2,) + shape)
  # The last convolution starts at zero (as in the latent-diffusion U-Net): a fresh model predicts 0.
  chex.assert_trees_all_equal(out, jnp.zeros_like(out))


def test_the_label_and_the_timestep_change_a_trained_looking_prediction():
  model = unet.ConditionalDenoiser(num_classes=10, out_channels=1, widths=(16, 32), heads=2, context_dim=16)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 1))
  variables = model.init(jax.random.PRNGKey(1), x, jnp.array([5, 5]), jnp.array([1, 1]))
  # Random (non-zero) weights everywhere, as after training, so every path reaches the output.
  leaves, tree = jax.tree.flatten(variables)
  keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
  variables = jax.tree.unflatten(tree, [0.1 * jax.random.normal(k, l.shape) for k, l in zip(keys, leaves)])
  base = model.apply(variables, x, jnp.array([5, 5]), jnp.array([1, 1]))
  other_label = model.apply(variables, x, jnp.array([5, 5]), jnp.array([2, 10]))
  other_time = model.apply(variables, x, jnp.array([6, 500]), jnp.array([1, 1]))
  assert not np.allclose(base, other_label, atol=1e-4)
  assert not np.allclose(base, other_time, atol=1e-4)
  # Examples are independent: changing example 1's label leaves example 0 alone.
  other_second = model.apply(variables, x, jnp.array([5, 5]), jnp.array([1, 7]))
  chex.assert_trees_all_close(other_second[0], base[0], atol=1e-6)


@pytest.mark.parametrize("channels, groups", [(256, 32), (64, 16), (16, 4), (12, 2), (3, 1)])
def test_group_norm_keeps_at_least_four_channels_per_group(channels, groups):
  assert unet.norm_groups(channels) == groups


def test_heads_must_divide_the_channels():
  with pytest.raises(ValueError, match="8 channels do not split into 3 attention heads"):
    unet.CrossAttention(heads=3).init(jax.random.PRNGKey(0), jnp.zeros((1, 2, 2, 8)))
