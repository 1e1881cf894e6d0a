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
  `aux_classifier` adds the ACGAN class head (Odena et al., 2017). `spectral_norm`
  normalises the dense kernels and the projection embedding (as that paper does).
  """
  num_classes: int = 0
  conditioning: str = "none"
  aux_classifier: bool = False
  spectral_norm: bool = False

  @nn.compact
  def __call__(self, features: jax.Array, labels: jax.Array | None):
    features = features.astype(jnp.float32)
    dense = SpectralDense if self.spectral_norm else nn.Dense
    logit = dense(1, name="adversarial")(features)[:, 0]
    if self.conditioning == "projection":
      embed = nn.Embed(self.num_classes, features.shape[-1], name="projection")
      if self.spectral_norm:
        table = spectral_normalize(embed.embedding.T).T  # [C, F] normalised as the [F, C] map it applies
        class_embedding = jnp.take(table, labels, axis=0)
      else:
        class_embedding = embed(labels)
      logit = logit + jnp.sum(class_embedding * features, axis=-1)
    class_logits = dense(self.num_classes, name="classifier")(features) if self.aux_classifier else None
    return logit, class_logits


def needs_labels(num_classes: int, conditioning: str, aux_classifier: bool) -> bool:
  del aux_classifier  # the ACGAN discriminator predicts labels, it does not take them
  return num_classes > 0 and conditioning != "none"


def spectral_normalize(kernel: jax.Array, iterations: int = 20) -> jax.Array:
  """kernel / sigma, sigma the largest singular value of kernel as a [fan_in, out] matrix.

  Spectral normalisation (Miyato et al., ICLR 2018) with a stateless power iteration:
  `iterations` steps from a fixed random start on every call, instead of one step from a
  persisted vector, so the discriminator stays a pure function of its parameters (no extra
  state to checkpoint or synchronise). As in the paper, the singular vectors are constants
  for the gradient; sigma = u^T W v carries it. Power iteration approaches sigma from
  below, so the normalised kernel's norm is at least 1 (within 1 % for random Gaussian
  kernels, whose top singular values lie close together; trained ones converge faster).
  """
  matrix = kernel.reshape(-1, kernel.shape[-1]).astype(jnp.float32)
  normalize = lambda x: x / (jnp.linalg.norm(x) + 1e-12)
  v = normalize(jax.random.normal(jax.random.PRNGKey(0), (matrix.shape[1],), jnp.float32))
  u = normalize(matrix @ v)
  for _ in range(iterations):
    v = normalize(matrix.T @ u)
    u = normalize(matrix @ v)
  u, v = jax.lax.stop_gradient(u), jax.lax.stop_gradient(v)
  sigma = u @ matrix @ v
  return (kernel / sigma.astype(kernel.dtype)).astype(kernel.dtype)


class SpectralDense(nn.Module):
  """`nn.Dense` whose kernel is spectrally normalised on every call."""
  features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
    return x @ spectral_normalize(kernel) + bias


def latent_noise(key: jax.Array, shape, truncation: float = 0.0) -> jax.Array:
  """N(0, 1) noise; with truncation > 0, truncated to [-truncation, truncation] (the truncation
  trick of Brock et al., ICLR 2019: fidelity for variety)."""
  if truncation > 0:
    return jax.random.truncated_normal(key, -truncation, truncation, shape, jnp.float32)
  return jax.random.normal(key, shape, jnp.float32)
