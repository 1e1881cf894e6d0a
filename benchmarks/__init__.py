"""Benchmark helpers that need optional dependencies (PyTorch); see experiments/benchmark.py."""
