"""Building blocks shared by the GAN families: label conditioning and output heads."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any
CONDITIONINGS = ("none", "concat", "projection")


def check_conditioning(conditioning: str) -> None:
  if conditioning not in CONDITIONINGS:
    raise ValueError(f"Unknown conditioning '{conditioning}'; choose one of: {', '.join(CONDITIONINGS)}")


def concat_label_embedding(z: jax.Array, labels: jax.Array | None, num_classes: int, embed_dim: int) -> jax.Array:
  """Concatenates a learned label embedding to a flat input (the cGAN generator input).

  Must be called inside a compact module; the embedding is created in the caller's scope.
  """
  if num_classes <= 0:
    return z
  if labels is None:
    raise ValueError("This model is conditional: pass integer labels of shape [batch].")
  embedding = nn.Embed(num_classes, embed_dim, name="label_embedding")(labels)
  return jnp.concatenate([z, embedding.astype(z.dtype)], axis=-1)


class LabelPlane(nn.Module):
  """Maps labels to one extra image channel, so a discriminator sees (x, y) jointly."""
  num_classes: int
  height: int
  width: int

  @nn.compact
  def __call__(self, images: jax.Array, labels: jax.Array) -> jax.Array:
    plane = nn.Embed(self.num_classes, self.height * self.width, name="label_plane")(labels)
    plane = plane.reshape(labels.shape[0], self.height, self.width, 1).astype(images.dtype)
    return jnp.concatenate([images, plane], axis=-1)


class DiscriminatorHead(nn.Module):
  """Turns discriminator features into (adversarial logit [N], class logits [N, C] or None).

  `projection` adds <embed(y), features> to the logit (Miyato & Koyama, 2018);
  `aux_classifier` adds the ACGAN class head (Odena et al., 2017).
  """
  num_classes: int = 0
  conditioning: str = "none"
  aux_classifier: bool = False

  @nn.compact
  def __call__(self, features: jax.Array, labels: jax.Array | None):
    features = features.astype(jnp.float32)
    logit = nn.Dense(1, name="adversarial")(features)[:, 0]
    if self.conditioning == "projection":
      class_embedding = nn.Embed(self.num_classes, features.shape[-1], name="projection")(labels)
      logit = logit + jnp.sum(class_embedding * features, axis=-1)
    class_logits = nn.Dense(self.num_classes, name="classifier")(features) if self.aux_classifier else None
    return logit, class_logits


def needs_labels(num_classes: int, conditioning: str, aux_classifier: bool) -> bool:
  del aux_classifier  # the ACGAN discriminator predicts labels, it does not take them
  return num_classes > 0 and conditioning != "none"
