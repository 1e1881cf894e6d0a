"""Vanilla fully connected GAN (Goodfellow et al., 2014) for 28x28 images."""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax

from gan_jax.models import layers


class MLPGenerator(nn.Module):
  """z(100) -> 256 -> 512 -> 1024 -> H*W*C, LeakyReLU(0.2), sigmoid output in [0, 1]."""
  image_shape: Sequence[int] = (28, 28, 1)
  hidden: Sequence[int] = (256, 512, 1024)
  num_classes: int = 0
  embed_dim: int = 10

  @nn.compact
  def __call__(self, z: jax.Array, labels: jax.Array | None = None, train: bool = True) -> jax.Array:
    del train  # no batch statistics or dropout in this generator
    x = layers.concat_label_embedding(z, labels, self.num_classes, self.embed_dim)
    for width in self.hidden:
      x = nn.leaky_relu(nn.Dense(width)(x), 0.2)
    x = nn.Dense(math.prod(self.image_shape))(x)
    return nn.sigmoid(x).reshape((z.shape[0],) + tuple(self.image_shape))


class MLPDiscriminator(nn.Module):
  """H*W*C -> 1024 -> 512 -> 256 -> 1, LeakyReLU(0.2), Dropout(0.3)."""
  hidden: Sequence[int] = (1024, 512, 256)
  dropout_rate: float = 0.3
  num_classes: int = 0
  conditioning: str = "none"
  aux_classifier: bool = False
  embed_dim: int = 10

  @nn.compact
  def __call__(self, images: jax.Array, labels: jax.Array | None = None, train: bool = True):
    layers.check_conditioning(self.conditioning)
    x = images.reshape(images.shape[0], -1)
    if self.conditioning == "concat":
      x = layers.concat_label_embedding(x, labels, self.num_classes, self.embed_dim)
    for width in self.hidden:
      x = nn.leaky_relu(nn.Dense(width)(x), 0.2)
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return layers.DiscriminatorHead(self.num_classes, self.conditioning, self.aux_classifier)(x, labels)
