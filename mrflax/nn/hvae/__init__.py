"""The VDVAE-exact hierarchical VAE with weight sharing over time steps (Flax NNX).

Specification: VDVAE_REFERENCE.md (§1-7) and THEORY.md §4-5.

* :mod:`~mrflax.nn.hvae.spec`: :class:`HVAESpec`, the architecture (parameter tree and maths);
* :mod:`~mrflax.nn.hvae.policy`: :class:`ExecPolicy`, how it runs (scan / unroll, remat,
  convolution VJP, precision), nothing that changes the parameters;
* :mod:`~mrflax.nn.hvae.encoder`, :mod:`~mrflax.nn.hvae.block`, :mod:`~mrflax.nn.hvae.decoder`,
  :mod:`~mrflax.nn.hvae.model`: :class:`Encoder`, :class:`DecBlock`, :class:`Decoder`,
  :class:`HVAE`;
* :mod:`~mrflax.nn.hvae.presets` (named specs, parameter counts), :mod:`~mrflax.nn.hvae.convert`
  (released VDVAE state dicts), :mod:`~mrflax.nn.hvae.euler_view` (a block as an Euler step).

Weight sharing (THEORY.md §5.3): with ``share=k`` consecutive groups of ``k`` applications at a
resolution use one cell (``"full"``: one cell per resolution); initial scalings use the number of
applications ``N_app``, not of distinct cells.
"""

from mrflax.nn.hvae.block import DecBlock
from mrflax.nn.hvae.convert import from_vdvae_state_dict, state_dict_shapes, to_vdvae_state_dict
from mrflax.nn.hvae.decoder import Decoder, DecoderOutput
from mrflax.nn.hvae.encoder import Encoder
from mrflax.nn.hvae.euler_view import BlockSDE, decblock_as_sde
from mrflax.nn.hvae.model import HVAE
from mrflax.nn.hvae.policy import ExecPolicy
from mrflax.nn.hvae.presets import (
  ParamCount,
  from_vdvae_hparams,
  spec_param_count,
  spec_param_count_full,
)
from mrflax.nn.hvae.presets import get as get_preset
from mrflax.nn.hvae.presets import names as preset_names
from mrflax.nn.hvae.spec import HVAESpec

__all__ = [
  "HVAE",
  "BlockSDE",
  "DecBlock",
  "Decoder",
  "DecoderOutput",
  "Encoder",
  "ExecPolicy",
  "HVAESpec",
  "ParamCount",
  "decblock_as_sde",
  "from_vdvae_hparams",
  "from_vdvae_state_dict",
  "get_preset",
  "preset_names",
  "spec_param_count",
  "spec_param_count_full",
  "state_dict_shapes",
  "to_vdvae_state_dict",
]
