"""Up-sampling convolutions for generators.

`UpConv` owns a transposed-convolution kernel with the layout of
`flax.linen.ConvTranspose` (kh, kw, in, out), so checkpoints do not depend on how
the layer is computed. `impl` selects the computation:

* `transpose`: `flax.linen.ConvTranspose` (XLA: an input-dilated convolution).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

UPSAMPLE_IMPLS = ("transpose",)


class UpConv(nn.Module):
  """A stride-`stride` transposed convolution with 'SAME' padding (output = stride x input)."""
  features: int
  kernel_size: int
  stride: int
  use_bias: bool = True
  impl: str = "transpose"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.impl not in UPSAMPLE_IMPLS:
      raise ValueError(f"Unknown upsample_impl '{self.impl}'; choose one of: {', '.join(UPSAMPLE_IMPLS)}")
    return nn.ConvTranspose(self.features, (self.kernel_size, self.kernel_size),
                            strides=(self.stride, self.stride), padding="SAME",
                            use_bias=self.use_bias, dtype=self.dtype, name="conv")(x)
