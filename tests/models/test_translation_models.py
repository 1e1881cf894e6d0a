"""pix2pix's U-Net, CycleGAN's ResNet generator and the PatchGAN: sizes, receptive field, dropout."""
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.models import translation as nets


@pytest.mark.parametrize("side", [32, 64])
@pytest.mark.parametrize("out_channels", [1, 3])
def test_unet_keeps_the_input_size(side, out_channels):
  model = nets.UNetGenerator(out_channels, width=4)
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, side, side, 3), minval=-1, maxval=1)
  variables = jax.jit(model.init)(jax.random.PRNGKey(1), x)
  y = jax.jit(model.apply)(variables, x)
  chex.assert_shape(y, (2, side, side, out_channels))
  assert float(jnp.max(jnp.abs(y))) <= 1.0
  # down to 1x1: log2(side) encoder layers
  assert len([k for k in variables["params"] if k.startswith("down")]) == nets.unet_depth(side)


@pytest.mark.parametrize("side", [8, 28, 32, 64])
def test_resnet_generator_keeps_the_input_size(side):
  model = nets.ResnetGenerator(2, width=4, num_blocks=1)
  x = jnp.zeros((1, side, side, 1))
  chex.assert_shape(jax.jit(lambda key: model.apply(model.init(key, x), x))(jax.random.PRNGKey(0)),
                    (1, side, side, 2))


def test_resnet_blocks_follow_the_paper():
  assert nets.resnet_blocks(32) == 6 and nets.resnet_blocks(128) == 6  # "6 blocks for 128 x 128"
  assert nets.resnet_blocks(256) == 9 and nets.resnet_blocks(512) == 9  # "9 for 256 x 256 or higher"


@pytest.mark.parametrize("side", [28, 48, 2])
def test_unet_rejects_sizes_it_cannot_halve_to_one_pixel(side):
  with pytest.raises(ValueError, match="power of two"):
    nets.unet_depth(side)


def test_resnet_rejects_a_side_not_divisible_by_four():
  with pytest.raises(ValueError, match="divisible by 4"):
    nets.check_resnet_size(30)


def test_receptive_fields_of_the_papers_patchgans():
  assert nets.patch_receptive_field(3) == 70  # the 70x70 PatchGAN of both papers
  assert nets.patch_receptive_field(1) == 16
  assert nets.patch_num_layers(34) == 2
  with pytest.raises(ValueError, match="choose one of: 16, 34, 70"):
    nets.patch_num_layers(50)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_patch_receptive_field_equals_the_input_gradient_support(num_layers):
  # Without normalisation (instance norm couples every pixel through its statistics)
  # one output logit depends on exactly one receptive field of the input.
  model = nets.PatchDiscriminator(width=4, num_layers=num_layers, norm="none")
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 96, 96, 1))
  variables = model.init(jax.random.PRNGKey(1), x)
  out = model.apply(variables, x)
  i, j = out.shape[1] // 2, out.shape[2] // 2
  grad = jax.grad(lambda v: model.apply(variables, v)[0, i, j, 0])(x)[0, ..., 0]
  rows, cols = np.nonzero(np.asarray(grad))
  field = nets.patch_receptive_field(num_layers)
  assert rows.max() - rows.min() + 1 == field
  assert cols.max() - cols.min() + 1 == field


def test_unet_dropout_is_the_noise_source_in_training_only():
  model = nets.UNetGenerator(1, width=4, dropout_blocks=2)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 32, 32, 1))
  variables = model.init(jax.random.PRNGKey(1), x)
  a = model.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(2)})
  b = model.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(3)})
  assert float(jnp.max(jnp.abs(a - b))) > 1e-4
  chex.assert_trees_all_equal(model.apply(variables, x), model.apply(variables, x))
  no_dropout = nets.UNetGenerator(1, width=4, dropout_blocks=0)
  chex.assert_trees_all_close(no_dropout.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(2)}),
                              model.apply(variables, x), atol=1e-6)


class _Layer(nn.Module):
  """One of the translation networks' stride-2 layers, as they build it, under a fixed name."""
  kind: str
  kernel: int

  @nn.compact
  def __call__(self, x):
    if self.kind == "down":
      return nets._stride2_conv(x, 6, self.kernel, False, "layer")  # pylint: disable=protected-access
    return nets._up_conv(x, 6, self.kernel, False, "layer")  # pylint: disable=protected-access


@pytest.mark.parametrize("kind, kernel, side", [("down", 4, 8), ("down", 4, 4), ("down", 4, 2), ("down", 4, 7),
                                                ("down", 3, 8), ("up", 4, 1), ("up", 4, 2), ("up", 4, 4),
                                                ("up", 3, 4)])
def test_stride2_layers_equal_the_flax_layers_they_replace(kind, kernel, side):
  """Same parameters (names, shapes, N(0, 0.02) draws), outputs and gradients as nn.Conv / nn.ConvTranspose."""
  init = nn.initializers.normal(0.02)
  if kind == "down":
    flax_layer = nn.Conv(6, (kernel, kernel), strides=(2, 2), padding=((1, 1), (1, 1)), use_bias=False,
                         kernel_init=init, name="layer")
  else:
    flax_layer = nn.ConvTranspose(6, (kernel, kernel), strides=(2, 2), padding="SAME", use_bias=False,
                                  kernel_init=init, name="layer")
  x = jax.random.normal(jax.random.PRNGKey(0), (3, side, side, 5))
  ours, theirs = _Layer(kind, kernel), _Wrap(flax_layer)
  params = jax.jit(ours.init)(jax.random.PRNGKey(1), x)
  chex.assert_trees_all_equal(params, jax.jit(theirs.init)(jax.random.PRNGKey(1), x))
  target = jax.random.normal(jax.random.PRNGKey(2), jax.eval_shape(theirs.apply, params, x).shape)
  loss = lambda module: lambda p, x: jnp.sum(jnp.sin(module.apply(p, x)) * target)
  # Each layer's output and gradients as one jitted program (eagerly, every primitive compiles apart).
  both = jax.jit(lambda module: (module.apply(params, x), jax.grad(loss(module), argnums=(0, 1))(params, x)),
                 static_argnums=0)
  (ours_out, ours_grads), (theirs_out, theirs_grads) = both(ours), both(theirs)
  np.testing.assert_allclose(ours_out, theirs_out, rtol=1e-5, atol=1e-6)
  # Gradients of order 1-10 summed over every output: float32 rounding alone reaches 1e-6 in absolute terms.
  chex.assert_trees_all_close(ours_grads, theirs_grads, rtol=1e-4, atol=1e-5)


class _Wrap(nn.Module):
  layer: nn.Module

  @nn.compact
  def __call__(self, x):
    return self.layer(x)
