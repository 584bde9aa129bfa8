"""Evaluation: split ELBO and importance-weighted bounds in bits/dim (nats/image for binary data),
per-block and per-resolution KL, pictures."""

from mrflax.eval.images import save_grid, save_kl_plot, to_uint8
from mrflax.eval.nll import (
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
  "save_grid",
  "save_kl_plot",
  "to_uint8",
]
