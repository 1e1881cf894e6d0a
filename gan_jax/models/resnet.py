"""ResNet-32 for 32x32 images (He et al., CVPR 2016, the CIFAR variant), the classifier of the long-tail protocol.

Three stages of `blocks_per_stage` basic blocks with 16, 32 and 64 channels
(5 blocks: ResNet-32, as in Cao et al., NeurIPS 2019), BatchNorm and ReLU, global
average pooling, then a linear or cosine head. Down-sampling shortcuts are the
parameter-free option A of the paper: a stride-2 subsample with zero-padded channels.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax.models import classifier as classifier_lib


class BasicBlock(nn.Module):
  features: int
  stride: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9)
    y = nn.Conv(self.features, (3, 3), strides=self.stride, padding="SAME", use_bias=False)(x)
    y = nn.relu(norm()(y))
    y = nn.Conv(self.features, (3, 3), padding="SAME", use_bias=False)(y)
    y = norm()(y)
    if self.stride != 1 or x.shape[-1] != self.features:
      shortcut = x[:, ::self.stride, ::self.stride, :]
      extra = self.features - x.shape[-1]
      x = jnp.pad(shortcut, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
    return nn.relu(x + y)


class ResNetClassifier(nn.Module):
  """CIFAR ResNet; `__call__(..., return_features=True)` also returns the pooled features (as CNNClassifier)."""
  num_classes: int = 10
  blocks_per_stage: int = 5
  widths: Sequence[int] = (16, 32, 64)
  head: str = "linear"
  cosine_scale: float = 30.0

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = True, return_features: bool = False):
    x = nn.Conv(self.widths[0], (3, 3), padding="SAME", use_bias=False)(images)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
    for stage, width in enumerate(self.widths):
      for block in range(self.blocks_per_stage):
        x = BasicBlock(width, stride=2 if stage > 0 and block == 0 else 1)(x, train)
    features = jnp.mean(x, axis=(1, 2))
    if self.head == "cosine":
      logits = self.cosine_scale * classifier_lib.CosineHead(self.num_classes, name="cosine_head")(features)
    else:
      logits = nn.Dense(self.num_classes, name="Dense_1")(features)
    return (logits, features) if return_features else logits
