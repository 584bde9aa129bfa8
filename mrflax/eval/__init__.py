"""Evaluation: test-set ELBO in bits/dim (nats/image for binary data), per-block KL."""

from mrflax.eval.images import save_grid, save_kl_plot, to_uint8
from mrflax.eval.nll import ElboResult, evaluate_elbo, hvae_terms

__all__ = [
  "ElboResult",
  "evaluate_elbo",
  "hvae_terms",
  "save_grid",
  "save_kl_plot",
  "to_uint8",
]
