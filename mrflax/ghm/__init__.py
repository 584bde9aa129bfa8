r"""Generative hierarchical models and exact belief propagation, in pure JAX (THEORY §7).

Models (:class:`GHM`, :func:`random_hierarchy_model`, :func:`dirichlet_ghm`), exact ancestral
sampling and parsing, Gaussian and discrete noise channels on one-hot leaves, log-domain belief
propagation (Bayes denoiser, Bayes classifier, log-likelihoods, exact posterior sampling, the exact
score), reference denoisers and the evaluation of denoisers and samplers against the model. The
noise schedules and the reverse VE sampler are generic: :mod:`mrflax.diffusion`. No flax or optax
imports.
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
from mrflax.ghm.layout import from_tree_order, to_tree_order, tuple_digits, tuple_index
from mrflax.ghm.metrics import (
  bp_reference,
  copy_fraction,
  distinct_fraction,
  per_leaf_mse,
  root_tv,
  total_variation,
  validity_per_level,
)
from mrflax.ghm.model import GHM, dirichlet_ghm, random_hierarchy_model
from mrflax.ghm.noise import (
  add_noise,
  decode_leaves,
  gaussian_leaf_log_messages,
  gaussian_log_normaliser,
  masking_log_messages,
  one_hot,
  uniform_replacement_log_messages,
)
from mrflax.ghm.sampling import (
  Parse,
  num_clean_sequences,
  parse,
  rhm_log_likelihood,
  sample,
  sample_levels,
)

__all__ = [
  "GHM",
  "BPResult",
  "Parse",
  "add_noise",
  "belief_propagation",
  "bp_reference",
  "copy_fraction",
  "decode_leaves",
  "dirichlet_ghm",
  "distinct_fraction",
  "empirical_bayes_denoiser",
  "from_tree_order",
  "gaussian_leaf_log_messages",
  "gaussian_log_normaliser",
  "leaf_posteriors",
  "local_denoiser",
  "log_evidence",
  "log_likelihood",
  "masking_log_messages",
  "num_clean_sequences",
  "one_hot",
  "parse",
  "per_leaf_mse",
  "posterior_sample",
  "posterior_sample_levels",
  "prior_marginals",
  "random_hierarchy_model",
  "rhm_log_likelihood",
  "root_posterior",
  "root_tv",
  "sample",
  "sample_levels",
  "score",
  "to_tree_order",
  "total_variation",
  "tuple_digits",
  "tuple_index",
  "uniform_replacement_log_messages",
  "validity_per_level",
]
