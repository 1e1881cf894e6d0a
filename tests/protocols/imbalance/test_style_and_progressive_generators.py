"""The `stylegan2` and `progan` methods of the imbalance benchmark: one conditional model on the imbalanced set."""
import jax
import numpy as np
import pytest

from experiments.configs import imbalance as imbalance_config
from gan_jax.protocols.imbalance import generators
from gan_jax.protocols.imbalance import layout as layout_lib
from gan_jax.protocols.imbalance import methods
from gan_jax.train import gan_loop


def test_stylegan2_is_a_generator_method_and_combines_with_a_loss():
  assert methods.parse_methods("stylegan2+logit_adjustment,stylegan2") == ["stylegan2", "stylegan2+logit_adjustment"]
  config = imbalance_config.get_config()
  assert "stylegan2" in methods.parse_methods(config.methods)
  section = config.generators.stylegan2
  assert (section.model, section.ada_target) == ("stylegan2", 0.6)
  # StyleGAN2-ADA's small-data recipe: lazy R1 and augmentation of what D sees.
  assert section.r1_gamma > 0 and section.r1_interval == 16


def test_progan_is_an_opt_in_generator_method_that_reaches_the_last_phase():
  config = imbalance_config.get_config()
  assert "progan" not in methods.parse_methods(config.methods)
  assert methods.parse_methods("progan+balanced_softmax") == ["progan+balanced_softmax"]
  for variant in (None, "cpu"):
    section = imbalance_config.get_config(variant).generators.progan
    schedule = gan_loop.phase_schedule(section, (28, 28, 1))
    assert schedule.stage_at(section.num_steps - 1) == schedule.num_stages - 1
    assert section.loss == "wasserstein" and section.drift_weight == 1e-3


@pytest.mark.parametrize("name", ["stylegan2", "progan"])
def test_method_trains_once_and_generates_each_class(name, tmp_path):
  section = imbalance_config.get_config("smoke").generators[name]
  rng = np.random.default_rng(0)
  # Ten classes, as the standalone smoke configs: the steps are then their programs.
  labels = np.repeat(np.arange(10), [16] + [8] * 9).astype(np.int32)
  images = rng.integers(0, 256, (labels.size, 28, 28, 1)).astype(np.uint8)
  data = generators.Data(images, labels, num_classes=10, seed=0, num_devices=jax.device_count())
  method = generators.GENERATORS[name]
  assert not method.per_class
  method.validate(section, data.image_shape, data.num_classes, data.num_devices, f"generators.{name}.")
  layout = layout_lib.Layout(str(tmp_path))
  (stage,) = method.stages(section, layout, data, range(10))
  record = stage.run()
  assert record["step"] == section.num_steps
  model = method.load(section, layout, data, range(10))
  assert model.classes == tuple(range(10))
  first = model.generate(2, 5, jax.random.PRNGKey(1))
  assert first.shape == (5, 28, 28, 1) and first.dtype == np.uint8
  np.testing.assert_array_equal(model.generate(2, 5, jax.random.PRNGKey(1)), first)  # same key, same images
  assert not np.array_equal(model.generate(2, 5, jax.random.PRNGKey(2)), first)


def test_stylegan2_section_refuses_another_model():
  section = imbalance_config.get_config("smoke").generators.stylegan2
  section.model = "cgan"
  with pytest.raises(ValueError, match="model must be 'stylegan2'"):
    generators.GENERATORS["stylegan2"].validate(section, (28, 28, 1), 3, 1, "generators.stylegan2.")
