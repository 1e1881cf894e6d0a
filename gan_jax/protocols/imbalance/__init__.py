"""The imbalance benchmark: generative oversampling against the remedies that need no generator."""
