"""pix2pix on edges2digits: Sobel edges of MNIST digits -> the digits (paired; --config.dataset=fashion_mnist too)."""
from experiments.configs import translation_common


def get_config(variant=None):
  return translation_common.apply_variant(translation_common.base_config("pix2pix", "edges2digits"), variant)
