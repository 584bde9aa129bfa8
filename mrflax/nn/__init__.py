"""Flax NNX modules: the VDVAE-exact HVAE, weight-shared HVAEs, U-Nets and BP-aligned networks."""

from mrflax.nn import conv_ops, convert, presets
from mrflax.nn.blockstr import parse_block_string, parse_width_string
from mrflax.nn.convert import from_vdvae_state_dict, state_dict_shapes, to_vdvae_state_dict
from mrflax.nn.euler_view import BlockSDE, decblock_as_sde
from mrflax.nn.layers import Block, FiLM, conv, gelu, sinusoidal_embedding
from mrflax.nn.presets import ParamCount, count_params, count_params_full, from_vdvae_hparams
from mrflax.nn.scan import EXEC_MODES, run_program
from mrflax.nn.unet import UNet, UNetFeatures, haar_unet
from mrflax.nn.vdvae import (
  COMPONENTS,
  HVAE,
  BlockStep,
  DecBlock,
  Decoder,
  DecoderOutput,
  Encoder,
  HVAESpec,
  JoinedBlock,
  pad_channels,
)

__all__ = [
  "COMPONENTS",
  "EXEC_MODES",
  "HVAE",
  "Block",
  "BlockSDE",
  "BlockStep",
  "DecBlock",
  "Decoder",
  "DecoderOutput",
  "Encoder",
  "FiLM",
  "HVAESpec",
  "JoinedBlock",
  "ParamCount",
  "UNet",
  "UNetFeatures",
  "conv",
  "conv_ops",
  "convert",
  "count_params",
  "count_params_full",
  "decblock_as_sde",
  "from_vdvae_hparams",
  "from_vdvae_state_dict",
  "gelu",
  "haar_unet",
  "pad_channels",
  "parse_block_string",
  "parse_width_string",
  "presets",
  "run_program",
  "sinusoidal_embedding",
  "state_dict_shapes",
  "to_vdvae_state_dict",
]
