"""Flax NNX modules: the VDVAE-exact HVAE, weight-shared HVAEs, U-Nets and BP-aligned networks.

One path per name. Internals stay in their modules (e.g. :func:`mrflax.nn.scan.run_program`,
:class:`mrflax.nn.hvae.block.ComposedBlock`, :mod:`mrflax.nn.conv_ops`).
"""

from mrflax.nn.blockstr import parse_block_string, parse_width_string
from mrflax.nn.hvae import (
  HVAE,
  BlockSDE,
  DecBlock,
  Decoder,
  DecoderOutput,
  Encoder,
  ExecPolicy,
  HVAESpec,
  ParamCount,
  decblock_as_sde,
  from_vdvae_hparams,
  from_vdvae_state_dict,
  get_preset,
  preset_names,
  spec_param_count,
  spec_param_count_full,
  state_dict_shapes,
  to_vdvae_state_dict,
)
from mrflax.nn.layers import Block, FiLM, conv, count_params, gelu, sinusoidal_embedding
from mrflax.nn.tree_nets import BPUNet, ConvNetClassifier, ExactBPDenoiser
from mrflax.nn.unet import UNet, UNetFeatures, haar_unet, transform_skip

__all__ = [
  "HVAE",
  "BPUNet",
  "Block",
  "BlockSDE",
  "ConvNetClassifier",
  "DecBlock",
  "Decoder",
  "DecoderOutput",
  "Encoder",
  "ExactBPDenoiser",
  "ExecPolicy",
  "FiLM",
  "HVAESpec",
  "ParamCount",
  "UNet",
  "UNetFeatures",
  "conv",
  "count_params",
  "decblock_as_sde",
  "from_vdvae_hparams",
  "from_vdvae_state_dict",
  "gelu",
  "get_preset",
  "haar_unet",
  "parse_block_string",
  "parse_width_string",
  "preset_names",
  "sinusoidal_embedding",
  "spec_param_count",
  "spec_param_count_full",
  "state_dict_shapes",
  "to_vdvae_state_dict",
  "transform_skip",
]
