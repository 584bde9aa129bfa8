"""Evaluation: split ELBO and importance-weighted bounds in bits/dim (nats/image for binary data),
per-block and per-resolution KL, pictures, and the decoder-state diagnostics of THEORY §5.4 and
§6.3 (state-norm clock, depth probe, spread, exposure ratio, relative increments)."""

from mrflax.evaluation.diagnostics import (
  depth_probe,
  exposure_ratio,
  haar_spectrum,
  mean_image_rms,
  nonfinite_fraction,
  pairwise_distance,
  probe_features,
  relative_increments,
  ridge_probe,
  spearman,
  spearman_within,
  state_rms,
  state_spread,
)
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
  "depth_probe",
  "evaluate_elbo",
  "evaluate_iw",
  "exposure_ratio",
  "haar_spectrum",
  "hvae_log_weights",
  "hvae_terms",
  "kl_per_resolution",
  "mean_image_rms",
  "nonfinite_fraction",
  "pairwise_distance",
  "probe_features",
  "relative_increments",
  "rescale_to_uint8",
  "ridge_probe",
  "save_grid",
  "save_kl_plot",
  "spearman",
  "spearman_within",
  "state_rms",
  "state_spread",
]
