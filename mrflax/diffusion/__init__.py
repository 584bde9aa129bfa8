"""Pure-JAX multi-resolution diffusion pieces: Euler–Maruyama / Euler steps, HVAE block fields."""

from mrflax.diffusion.euler import (
  brownian_increment,
  euler_maruyama_step,
  euler_step,
  hvae_block_fields,
)

__all__ = ["brownian_increment", "euler_maruyama_step", "euler_step", "hvae_block_fields"]
