"""CycleGAN on TFDS's cycle_gan/horse2zebra at 256 px, the paper's setting (batch 1, 9 residual blocks, 70x70 PatchGAN).

TFDS must have prepared the data set (internet once) or use --config.data=folder:<path> with trainA/ trainB/
testA/ testB/. The test set has no true translations: results.md shows translations only.
"""
from experiments.configs import translation_common


def get_config(variant=None):
  config = translation_common.base_config("cyclegan", "tfds:cycle_gan/horse2zebra")
  config.image_size = 256
  config.channels = 3
  config.patch_size = 70
  config.batch_size = 1
  config.num_steps = 266_800  # 200 epochs of the larger domain (1,334 zebras; 1,067 horses), as in the paper
  config.decay_steps = 133_400
  config.test_examples = 0
  config.upper_bound = False
  config.jitter = True
  config.flip = True
  config = translation_common.apply_variant(config, variant)
  if variant in ("smoke", "cpu"):
    config.image_size = 32 if variant == "smoke" else 64
    config.batch_size = 8
  return config
