"""Denoising diffusion: noise schedules, the training objective and the DDPM / DDIM samplers (pure functions)."""
