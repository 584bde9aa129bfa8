"""Haar multi-resolution analysis: pure, jit/vmap/grad-compatible, channels-last, 1-D to 3-D.

See THEORY.md §2 for the conventions. Every function takes the number of spatial axes as the
keyword ``ndim`` (never guessed from the rank) and leaves all leading batch axes untouched.
"""

from mrflax.wavelets.haar import haar_step, haar_step_inverse
from mrflax.wavelets.projections import (
  coefficients_to_pixels,
  detail,
  embed,
  l2_inner,
  l2_norm,
  pixels_to_coefficients,
  project,
)
from mrflax.wavelets.pyramid import (
  BandEnergies,
  HaarPyramid,
  band_energies,
  haar_analysis,
  haar_synthesis,
)

__all__ = [
  "BandEnergies",
  "HaarPyramid",
  "band_energies",
  "coefficients_to_pixels",
  "detail",
  "embed",
  "haar_analysis",
  "haar_step",
  "haar_step_inverse",
  "haar_synthesis",
  "l2_inner",
  "l2_norm",
  "pixels_to_coefficients",
  "project",
]
