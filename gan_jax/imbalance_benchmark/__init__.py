"""The imbalance benchmark: GAN oversampling against classic remedies (experiments.imbalance)."""
