"""Image-to-image translation: pix2pix (paired) and CycleGAN (unpaired), with tasks whose answer is known."""
