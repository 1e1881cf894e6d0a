"""Speed-only formulations of convolutions: same parameters and values as `flax.linen.Conv`, faster programs.

Models choose a formulation per layer (`impl='auto'`) from the layer's shape and
the backend; the choices and their measured reasons are documented per module.
"""
