"""Step and layer benchmarks (JAX only) and their PyTorch reference (the optional torch extra)."""
