"""Single-image GANs: SinGAN (Shaham et al., ICCV 2019) and two-image structural analogy (Benaim et al., 2021).

  pyramid: scale sizes, resizing, noise, image loading.
  train:   per-scale training with jitted scan chunks and per-scale checkpoints.
  apply:   random samples of any size, samples from a scale, reconstruction, super-resolution.
  analogy: A <-> B translation terms and outputs.
"""
