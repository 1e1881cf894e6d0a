"""Two-image structural analogy (Benaim, Mokady, Bermano & Wolf, "Structural Analogy
from a Single Image Pair", Computer Graphics Forum 2021): images A and B each get a
SinGAN pyramid, and at every scale the generator of one image also learns to
translate the other image into its own patch distribution.

At scale n, with G_A, G_B the scale's (residual) generators and I_A, I_B the real
images at that scale, training (in `gan_jax.singan.scale_step`) adds to SinGAN's terms
for each image:
  * an adversarial term for the translation: D_B judges G_B(I_A, I_A) (A -> B)
    and D_A judges G_A(I_B, I_B) (B -> A), next to the samples from noise;
  * the cycle loss ||I_A - G_A(t, t)||^2 with t = G_B(I_A, I_A), and the same for B.
The translation feeds the image as both the generator's noisy input and its
residual base (zero noise), as the official code does.

Simplifications: B is resized to A's pyramid sizes (the official code resizes
both images to one square size), every scale keeps SinGAN's residual generator
(the official code drops the residual connection at the two finest scales), and
the cycle starts from the real images rather than from generated samples.

Outputs: A -> B at full resolution both as the official code evaluates it (the
finest G_B applied to the finest I_A) and coarse to fine: A is translated by G_B
at `start_scale` and B's finer generators then add B's detail with zero noise.
"""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import fs
from gan_jax import images as images_lib
from gan_jax import losses
from gan_jax.singan import apply as apply_lib

# gen(domain, [(noisy, prev), ...]) -> [image, ...]: the generator of `domain` at the current scale.
GenerateFn = Callable[[str, list[tuple[jax.Array, jax.Array]]], list[jax.Array]]


def other(domains: Sequence[str], domain: str) -> str:
  return domains[1] if domain == domains[0] else domains[0]


def translation_inputs(domains: Sequence[str], real: dict[str, jax.Array],
                       domain: str) -> list[tuple[jax.Array, jax.Array]]:
  """Generator inputs that translate the other image into `domain` (none with a single image)."""
  if len(domains) < 2:
    return []
  source = real[other(domains, domain)]
  return [(source, source)]


def cycle_loss(gen: GenerateFn, domains: Sequence[str], real: dict[str, jax.Array],
               translated: dict[str, jax.Array]) -> jax.Array:
  """Sum over d of mean (I_d - G_d(t_d, t_d))^2, where t_d is I_d translated into the other domain."""
  return sum(losses.cycle_consistency_loss(gen(d, [(translated[d], translated[d])])[0], real[d], "l2")
             for d in domains)


@functools.partial(jax.jit, static_argnames=("start",))
def translate(target: apply_lib.Pyramid, source_reals: Sequence[jax.Array], start: int = 0) -> jax.Array:
  """The source image rendered in the target's style, coarse to fine.

  Args:
    target: the pyramid of the style image (B for A -> B).
    source_reals: the structure image's pyramid, same sizes as `target`.
    start: scale where the source is translated; finer scales continue with zero noise.

  Returns:
    [1, h, w, C] at the finest size.
  """
  if not 0 <= start < target.num_scales:
    raise ValueError(f"analogy start scale {start} is outside 0..{target.num_scales - 1}")
  source = source_reals[start]
  x = target.modules[start].apply(target.variables[start], source, source, train=False)
  if start == target.num_scales - 1:
    return x
  sizes = target.sizes[start + 1:]
  noises = [jnp.zeros(x.shape[:1] + size + x.shape[-1:]) for size in sizes]
  return apply_lib.run_scales(target.modules[start + 1:], target.variables[start + 1:],
                              target.noise_amps[start + 1:], noises, apply_lib.upsample(x, sizes[0]), sizes)


def write_outputs(workdir: str, pyramids: dict[str, apply_lib.Pyramid], reals: dict[str, Sequence[jax.Array]],
                  start: int = 0) -> list[str]:
  """Writes a_to_b.png and b_to_a.png: [structure image | finest-scale translation | coarse-to-fine | style image].

  The finest-scale translation is `translate` started at the finest scale.
  """
  names = []
  for source, target in (("a", "b"), ("b", "a")):
    last = pyramids[target].num_scales - 1
    row = [reals[source][-1], translate(pyramids[target], reals[source], last),
           translate(pyramids[target], reals[source], start), reals[target][-1]]
    name = f"{source}_to_{target}.png"
    images_lib.save_grid(fs.join(workdir, name), np.concatenate([np.asarray(jax.device_get(x)) for x in row]),
                         1, len(row), apply_lib.VALUE_RANGE)
    names.append(name)
  return names
