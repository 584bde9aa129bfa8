"""Pure-JAX likelihoods: diagonal Gaussian (KL), VDVAE's DMoL, Bernoulli, discretised logistic,
and the table ``LIKELIHOODS`` of image heads."""

from mrflax.likelihoods.bernoulli import (
  bernoulli_log_prob,
  bernoulli_nll,
  bernoulli_sample,
  central_crop,
)
from mrflax.likelihoods.dmol import dmol_log_prob, dmol_nll, dmol_sample, num_dmol_channels
from mrflax.likelihoods.gaussian import gaussian_kl, gaussian_log_prob, gaussian_sample
from mrflax.likelihoods.logistic import (
  LOG_SCALE_MIN,
  discretized_logistic_log_prob,
  discretized_logistic_nll,
  discretized_logistic_sample,
  logistic_params,
  to_uint8,
)
from mrflax.likelihoods.table import LIKELIHOODS, Likelihood
from mrflax.likelihoods.units import bits_per_dim, nats_per_image

__all__ = [
  "LIKELIHOODS",
  "LOG_SCALE_MIN",
  "Likelihood",
  "bernoulli_log_prob",
  "bernoulli_nll",
  "bernoulli_sample",
  "bits_per_dim",
  "central_crop",
  "discretized_logistic_log_prob",
  "discretized_logistic_nll",
  "discretized_logistic_sample",
  "dmol_log_prob",
  "dmol_nll",
  "dmol_sample",
  "gaussian_kl",
  "gaussian_log_prob",
  "gaussian_sample",
  "logistic_params",
  "nats_per_image",
  "num_dmol_channels",
  "to_uint8",
]
