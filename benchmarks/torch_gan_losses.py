"""gan_jax.losses' adversarial losses in PyTorch for the mirrors: (real, fake) -> D loss, fake -> G loss."""
import torch.nn.functional as F

D_LOSSES = {
    "minimax": lambda real, fake: F.softplus(-real).mean() + F.softplus(fake).mean(),
    "non_saturating": lambda real, fake: F.softplus(-real).mean() + F.softplus(fake).mean(),
    "wasserstein": lambda real, fake: fake.mean() - real.mean(),
    "hinge": lambda real, fake: F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean(),
    "least_squares": lambda real, fake: 0.5 * (real - 1.0).square().mean() + 0.5 * fake.square().mean(),
}
G_LOSSES = {
    "minimax": lambda fake: -F.softplus(fake).mean(),
    "non_saturating": lambda fake: F.softplus(-fake).mean(),
    "wasserstein": lambda fake: -fake.mean(),
    "hinge": lambda fake: -fake.mean(),
    "least_squares": lambda fake: 0.5 * (fake - 1.0).square().mean(),
}
