"""CNN classifier used by the imbalance benchmark and as a feature extractor."""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2 max-pooling with stride 2 ('VALID': an odd last row/column is dropped), NHWC.

  Equals `nn.max_pool(x, (2, 2), strides=(2, 2))`, written as a reshape and a max so its
  gradient is an elementwise mask: XLA:CPU's select-and-scatter gradient of reduce_window
  was 6x slower (60 against 10 ms at 128x28x28x32).
  """
  n, h, w, c = x.shape
  x = x[:, :h - h % 2, :w - w % 2, :]
  return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


HEADS = ("linear", "cosine")


class CosineHead(nn.Module):
  """Cosine similarities of the features with one learned direction per class, in [-1, 1].

  The normalised linear layer of LDAM (Cao et al., NeurIPS 2019): the loss multiplies
  the cosines by a scale s; `CNNClassifier` does the same for predictions.
  """
  num_classes: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.num_classes))
    normalize = lambda v, axis: v / (jnp.linalg.norm(v, axis=axis, keepdims=True) + 1e-12)
    return normalize(x, -1) @ normalize(kernel, 0)


class CNNClassifier(nn.Module):
  """Two (3x3 conv, ReLU, 2x2 max-pool) blocks, dense hidden layer, dropout, logits.

  `__call__(..., return_features=True)` also returns the hidden-layer activations,
  which serve as the feature space of the Frechet distance of generated images.
  `head='cosine'` replaces the last dense layer by a `CosineHead` whose cosines are
  multiplied by `cosine_scale` to give the logits.
  """
  num_classes: int = 10
  conv_widths: Sequence[int] = (32, 64)
  hidden: int = 128
  dropout_rate: float = 0.5
  head: str = "linear"
  cosine_scale: float = 30.0

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = True, return_features: bool = False):
    x = images
    for width in self.conv_widths:
      x = nn.relu(nn.Conv(width, (3, 3), padding="SAME")(x))
      x = max_pool_2x2(x)
    x = x.reshape(x.shape[0], -1)
    features = nn.relu(nn.Dense(self.hidden)(x))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(features)
    if self.head == "cosine":
      logits = self.cosine_scale * CosineHead(self.num_classes, name="cosine_head")(x)
    else:
      logits = nn.Dense(self.num_classes)(x)
    return (logits, features) if return_features else logits
