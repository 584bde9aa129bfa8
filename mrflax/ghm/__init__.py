r"""Generative hierarchical models and exact belief propagation, in pure JAX (THEORY §7).

Models (:class:`GHM`, :func:`random_hierarchy_model`, :func:`dirichlet_ghm`), exact ancestral
sampling and parsing, Gaussian and discrete noise channels, log-domain belief propagation (Bayes
denoiser, Bayes classifier, log-likelihoods, exact posterior sampling, the exact score), reference
denoisers and the reverse VE diffusion sampler. No flax or optax imports.
"""

from mrflax.ghm.baselines import empirical_bayes_denoiser, local_denoiser
from mrflax.ghm.bp import (
  BPResult,
  belief_propagation,
  leaf_posteriors,
  log_evidence,
  log_likelihood,
  posterior_sample,
  posterior_sample_levels,
  prior_marginals,
  root_posterior,
  score,
)
from mrflax.ghm.diffusion import decode, reverse_ve, ve_sigma_grid
from mrflax.ghm.noise import (
  add_noise,
  ddpm,
  gaussian_leaf_log_messages,
  gaussian_log_normaliser,
  masking_log_messages,
  one_hot,
  uniform_replacement_log_messages,
  ve,
  vp,
)
from mrflax.ghm.spec import (
  GHM,
  Parse,
  dirichlet_ghm,
  from_tree_order,
  n_clean_sequences,
  parse,
  random_hierarchy_model,
  rhm_log_likelihood,
  sample,
  sample_levels,
  to_tree_order,
  tuple_digits,
  tuple_index,
)

__all__ = [
  "GHM",
  "BPResult",
  "Parse",
  "add_noise",
  "belief_propagation",
  "ddpm",
  "decode",
  "dirichlet_ghm",
  "empirical_bayes_denoiser",
  "from_tree_order",
  "gaussian_leaf_log_messages",
  "gaussian_log_normaliser",
  "leaf_posteriors",
  "local_denoiser",
  "log_evidence",
  "log_likelihood",
  "masking_log_messages",
  "n_clean_sequences",
  "one_hot",
  "parse",
  "posterior_sample",
  "posterior_sample_levels",
  "prior_marginals",
  "random_hierarchy_model",
  "reverse_ve",
  "rhm_log_likelihood",
  "root_posterior",
  "sample",
  "sample_levels",
  "score",
  "to_tree_order",
  "tuple_digits",
  "tuple_index",
  "uniform_replacement_log_messages",
  "ve",
  "ve_sigma_grid",
  "vp",
]
