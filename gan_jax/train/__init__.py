"""Train states, pure train steps and training loops."""
