"""Pure-JAX diffusion pieces: noise schedules, the reverse VE sampler, Euler(–Maruyama) steps."""

from mrflax.diffusion.euler import (
  brownian_increment,
  euler_maruyama_step,
  euler_step,
  hvae_block_fields,
)
from mrflax.diffusion.samplers import Denoiser, reverse_ve, ve_sigma_grid
from mrflax.diffusion.schedules import ddpm, log_uniform_sigmas, ve, vp

__all__ = [
  "Denoiser",
  "brownian_increment",
  "ddpm",
  "euler_maruyama_step",
  "euler_step",
  "hvae_block_fields",
  "log_uniform_sigmas",
  "reverse_ve",
  "ve",
  "ve_sigma_grid",
  "vp",
]
