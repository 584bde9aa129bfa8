"""Evaluation: split ELBO and importance-weighted bounds in bits/dim (nats/image for binary data),
per-block and per-resolution KL, pictures."""

from mrflax.evaluation.images import rescale_to_uint8, save_grid, save_kl_plot
from mrflax.evaluation.nll import (
  ElboResult,
  IwResult,
  evaluate_elbo,
  evaluate_iw,
  hvae_log_weights,
  hvae_terms,
  kl_per_resolution,
)

__all__ = [
  "ElboResult",
  "IwResult",
  "evaluate_elbo",
  "evaluate_iw",
  "hvae_log_weights",
  "hvae_terms",
  "kl_per_resolution",
  "rescale_to_uint8",
  "save_grid",
  "save_kl_plot",
]
