"""Every validation branch of HVAESpec and ExecPolicy (and of the parsers) with its message.

Specs are built from the ``tiny8`` preset's fields: constructing an HVAESpec builds no parameters.
tiny8 is 8x8 grey (logistic), width 16, encoder "8x1,8d2,4x1,4d4,1x1" (resolutions 8, 4, 1) and
decoder "1x1,4m1,4x1,8m4". Execution keys (exec_mode, remat, conv_backward, ...) build an
ExecPolicy, checked against the spec as the model does.
"""

import dataclasses
import re

import jaxtyping
import pytest

from mrflax.nn import ExecPolicy, HVAESpec, blockstr, from_vdvae_hparams, get_preset, preset_names

POLICY = {f.name for f in dataclasses.fields(ExecPolicy)}


def _build(kwargs):
  """The spec of TINY8 with the architecture keys, then the policy of the execution keys."""
  arch = {k: v for k, v in kwargs.items() if k not in POLICY}
  spec = HVAESpec(**{**TINY8, **arch})
  ExecPolicy(**{k: v for k, v in kwargs.items() if k in POLICY}).check(spec)
  return spec


TINY8 = dict(
  image_size=8,
  image_channels=1,
  width=16,
  zdim=4,
  enc_blocks="8x1,8d2,4x1,4d4,1x1",
  dec_blocks="1x1,4m1,4x1,8m4",
  likelihood="logistic",
)

CASES = [
  # ---- fields on their own
  (
    dict(image_size=12, enc_blocks="12", dec_blocks="12"),
    r"image_size must be a power of two, got 12",
  ),
  (dict(image_size=0), r"image_size must be a power of two, got 0"),
  (dict(image_size=7), r"image_size must be a power of two, got 7"),
  (dict(image_channels=0), r"image_channels must be >= 1, got 0"),
  (dict(width=0), r"width must be >= 1, got 0"),
  (dict(zdim=0), r"zdim must be >= 1, got 0"),
  (dict(num_mixtures=0), r"num_mixtures must be >= 1, got 0"),
  (dict(scan_unroll=0), r"scan_unroll must be >= 1, got 0"),
  (dict(time_frequencies=0, time_embedding=True), r"time_frequencies must be >= 1, got 0"),
  (
    dict(likelihood="gauss"),
    r"likelihood must be one of \('dmol', 'bernoulli', 'logistic'\), got 'gauss'",
  ),
  (
    dict(likelihood="dmol"),
    r"the DMoL likelihood needs 3 image channels \(RGB\), got image_channels=1: use "
    r"likelihood='logistic' or 'bernoulli'",
  ),
  (dict(bits=0), r"bits must be an integer in \[1, 16\], got 0"),
  (dict(bits=17), r"bits must be an integer in \[1, 16\], got 17"),
  (dict(crop=4), r"crop=4 does not fit image_size=8"),
  (dict(crop=-1), r"crop=-1 does not fit image_size=8"),
  (dict(exec_mode="fast"), r"execution mode must be one of \('unroll', 'scan'.*got 'fast'"),
  (dict(exec_overrides=((4, "fast"),)), r"execution mode must be one of .*got 'fast'"),
  (dict(remat="all"), r"remat must be one of .*got 'all'"),
  (dict(remat_overrides=((4, "all"),)), r"remat must be one of .*got 'all'"),
  (dict(share=0), r"share must be a positive int or 'full', got 0"),
  (dict(share="half"), r"share must be a positive int or 'full', got 'half'"),
  (dict(share=2, share_components=()), r"share_components must be a non-empty subset of"),
  (
    dict(share=2, share_components=("prior", "decoder")),
    r"share_components must be a non-empty subset of \('posterior', 'prior', 'z_proj', "
    r"'residual'\), got \('prior', 'decoder'\)",
  ),
  (dict(share=2, share_components=("prior", "prior")), r"share_components must be a non-empty"),
  (dict(start_noise=-0.1), r"start_noise must be finite and >= 0, got -0.1"),
  (dict(start_noise=float("nan")), r"start_noise must be finite and >= 0, got nan"),
  (dict(start_noise=float("inf")), r"start_noise must be finite and >= 0, got inf"),
  (
    dict(step_size="implicit"),
    r"step_size must be one of \('absorbed', 'explicit'\), got 'implicit'",
  ),
  (
    dict(conv_backward="cuda"),
    r"conv_backward must be one of \('xla', 'custom', 'auto'\), got 'cuda'",
  ),
  (dict(conv_precision="low"), r"conv precision must be one of .*got 'low'"),
  (dict(compute_dtype="int8"), r"compute dtype must be one of .*got 'int8'"),
  (dict(bottleneck_multiple=0.0), r"bottleneck_multiple must be in \(0, 4\], got 0.0"),
  (dict(bottleneck_multiple=4.5), r"bottleneck_multiple must be in \(0, 4\], got 4.5"),
  # ---- block strings: the token, its position and the string are named
  (
    dict(enc_blocks=""),
    r"empty encoder block string '': expected comma-separated tokens R, RxN or RdK",
  ),
  (dict(dec_blocks="  "), r"empty decoder block string '  '"),
  (
    dict(dec_blocks="1x1,,8m1"),
    r"malformed token '' at position 1 of the decoder block string '1x1,,8m1': expected R, RxN or "
    r"RmS \(R a resolution, N a repeat count, S a mixin resolution: integers\)",
  ),
  (
    dict(enc_blocks="8x1,8y2,4x1,4d4,1x1"),
    r"malformed token '8y2' at position 1 of the encoder block string .*: expected R, RxN or RdK",
  ),
  (dict(enc_blocks="8xa,8d2,4x1,4d4,1x1"), r"malformed token '8xa' at position 0 of the encoder"),
  (dict(enc_blocks="8x-1"), r"malformed token '8x-1' at position 0 of the encoder"),
  (
    dict(enc_blocks="8x1,8d2,4m1"),
    r"token '4m1' at position 2 .*'m' \(mixing\) tokens are only valid in decoder block strings",
  ),
  (
    dict(dec_blocks="1x1,4d4,8m4"),
    r"token '4d4' at position 1 .*'d' \(pooling\) tokens are only valid in encoder block strings",
  ),
  (dict(dec_blocks="0x1,8m1"), r"token '0x1' at position 0 .*resolution must be >= 1"),
  (
    dict(enc_blocks="8x0,8d2,4x1,4d4,1x1"),
    r"token '8x0' at position 0 .*repeat count must be >= 1",
  ),
  (
    dict(dec_blocks="1x1,4m8,8m4"),
    r"token '4m8' at position 1 .*mixin resolution 8 must be a coarser power-of-two fraction of 4",
  ),
  (dict(dec_blocks="1x1,4m4,8m4"), r"token '4m4' at position 1 .*mixin resolution 4 must be"),
  (
    dict(enc_blocks="8d3"),
    r"token '8d3' at position 0 .*pooling factor 3 must be a power of two >= 2 dividing 8",
  ),
  (
    dict(enc_blocks="8x1,16"),
    r"token '16' at position 1 .*resolution 16 is not a power of two dividing the image size 8",
  ),
  (dict(dec_blocks="1x1,6,8m4"), r"token '6' at position 1 .*resolution 6 is not a power of two"),
  # ---- the structure of the block strings
  (
    dict(enc_blocks="8d2,8x1"),
    r"encoder block 1 is at resolution 8 but the state there has resolution 4",
  ),
  (
    dict(dec_blocks="1x1,2m1,8m2"),
    r"decoder block 1 at resolution 2 has no encoder activation there \(encoder resolutions "
    r"\[1, 4, 8\]\)",
  ),
  (dict(dec_blocks="1x1,8m4"), r"decoder block 1 mixes in resolution 4, not produced before it"),
  (dict(dec_blocks="1x1,4m1"), r"the last decoder block must be at the image resolution 8, got 4"),
  # ---- widths
  (
    dict(custom_width_str="4x8"),
    r"malformed token '4x8' at position 0 of width string '4x8': expected R:W with positive "
    r"integers",
  ),
  (dict(custom_width_str="4:24,1:0"), r"malformed token '1:0' at position 1 of width string"),
  (dict(custom_width_str="4:24,"), r"malformed token '' at position 1 of width string"),
  (
    dict(custom_width_str="4:24,4:32"),
    r"resolution 4 appears twice in width string '4:24,4:32' \(again at position 1\)",
  ),
  (
    dict(custom_width_str="2:32"),
    r"custom_width_str '2:32' sets the width at resolution 2, where the model has no state "
    r"\(its resolutions are \[1, 4, 8\]\); remove it",
  ),
  (
    dict(custom_width_str="8:32"),
    r"custom_width_str must not change the width at the image resolution 8 \(it is width=16\)",
  ),
  (
    dict(custom_width_str="4:8"),
    r"widths must not decrease towards low resolution: w\(4\) = 8 < w\(8\) = 16",
  ),
  (
    dict(custom_width_str="4:32,1:24"),
    r"widths must not decrease towards low resolution: w\(1\) = 24 < w\(4\) = 32",
  ),
  (
    dict(bottleneck_multiple=0.05),
    r"bottleneck_multiple=0.05 leaves no bottleneck channels at resolution 1 "
    r"\(int\(16 \* 0.05\) = 0\): raise it to at least 0.0625",
  ),
  # ---- weight sharing
  (
    dict(dec_blocks="1x1,4m1,8m4,4,8", share=2),
    r"weight sharing needs each resolution's decoder blocks to be contiguous .*resolution 4 "
    r"appears in two segments",
  ),
  # ---- settings the model would silently ignore
  (
    dict(share_components=("residual", "prior")),
    r"share_components=\('prior', 'residual'\) has no effect with share=1 \(no weight sharing\): "
    r"set share to a group size k > 1 or 'full'",
  ),
  (
    dict(time_local=True),
    r"time_local=True has no effect without time_embedding=True: set time_embedding=True or "
    r"leave time_local at its default False",
  ),
  (
    dict(time_frequencies=8),
    r"time_frequencies=8 has no effect without time_embedding=True: .*its default 16",
  ),
  (
    dict(num_mixtures=5),
    r"num_mixtures=5 has no effect with likelihood='logistic' \(only the DMoL has mixtures\)",
  ),
  (
    dict(likelihood="bernoulli", bits=5),
    r"bits=5 has no effect with the Bernoulli likelihood \(binary targets\)",
  ),
  (
    dict(exec_overrides=((2, "scan"),)),
    r"exec_overrides names resolution 2, where no encoder or decoder block runs \(resolutions "
    r"with blocks: \[8, 4, 1\]\); remove it",
  ),
  (
    dict(remat_overrides=((16, "block"),)),
    r"remat_overrides names resolution 16, where no encoder or decoder block runs",
  ),
  (
    dict(exec_overrides=((4, "scan"), (4, "unroll"))),
    r"exec_overrides names resolution 4 twice; keep one entry",
  ),
  (
    dict(remat_overrides=((1, "none"), (1, "block"))),
    r"remat_overrides names resolution 1 twice",
  ),
  (
    dict(scan_unroll=2),
    r"scan_unroll=2 has no effect: every resolution runs unrolled \(exec_mode='unroll', "
    r"exec_overrides=\(\)\); set exec_mode='scan' \(or a scan override\) or leave scan_unroll=1",
  ),
  (
    dict(
      scan_unroll=2, exec_mode="scan", exec_overrides=((8, "unroll"), (4, "unroll"), (1, "unroll"))
    ),
    r"scan_unroll=2 has no effect: every resolution runs unrolled",
  ),
]


@pytest.mark.parametrize(("kwargs", "message"), CASES, ids=[repr(kw) for kw, _ in CASES])
def test_invalid_spec_raises_with_message(kwargs, message):
  with pytest.raises(ValueError, match=message):
    _build(kwargs)


# Values of the wrong Python type: the ValueError users get (in the test run the jaxtyping check
# of the dataclass __init__ would answer first with a TypeCheckError).
ILL_TYPED = [
  (dict(bits=8.0), r"bits must be an integer in \[1, 16\], got 8.0"),
  (dict(share=1.5), r"share must be a positive int or 'full', got 1.5"),
  (dict(share=2, share_components="prior"), r"share_components must be a non-empty subset"),
  (dict(enc_blocks=None), r"empty encoder block string None"),
]


@pytest.mark.parametrize(("kwargs", "message"), ILL_TYPED, ids=[repr(kw) for kw, _ in ILL_TYPED])
def test_ill_typed_spec_raises_with_message(kwargs, message, monkeypatch):
  monkeypatch.setattr(jaxtyping.config, "jaxtyping_disable", True)
  with pytest.raises(ValueError, match=message):
    HVAESpec(**{**TINY8, **kwargs})


@pytest.mark.parametrize(
  "kwargs",
  [
    dict(share=2, share_components=("prior", "residual")),
    dict(share="full", share_components=("posterior",)),
    dict(time_embedding=True, time_local=True, time_frequencies=8),
    dict(likelihood="bernoulli"),
    dict(likelihood="logistic", bits=5),
    dict(exec_overrides=((2 * 2, "scan"),), scan_unroll=2),
    dict(exec_mode="scan", scan_unroll=3, remat_overrides=((1, "block"), (8, "resolution"))),
    dict(remat="block"),  # remat applies to unrolled stacks too
    dict(custom_width_str="4:24,1:32", no_bias_above=4),
    dict(bottleneck_multiple=0.0625),
    dict(start_noise=0.5, step_size="explicit", shared_sigma=True),
  ],
  ids=repr,
)
def test_the_enabling_settings_are_accepted(kwargs):
  _build(kwargs)


def test_the_rgb_dmol_and_every_preset_are_valid():
  HVAESpec(**{**TINY8, "image_channels": 3, "likelihood": "dmol", "num_mixtures": 2})
  for name in preset_names():
    get_preset(name)


def test_replace_validates_again():
  base = get_preset("tiny8")
  with pytest.raises(ValueError, match=r"time_local=True has no effect"):
    base.replace(time_local=True)
  assert base.replace(time_embedding=True, time_local=True).time_local


def test_presets_errors():
  with pytest.raises(ValueError, match=r"unknown preset 'nope'; available: cifar10, "):
    get_preset("nope")
  with pytest.raises(ValueError, match=r"scan_unroll=4 has no effect"):
    ExecPolicy(scan_unroll=4).check(get_preset("tiny8"))
  with pytest.raises(
    ValueError,
    match=re.escape("VDVAE hyperparameters missing: ['width', 'zdim', 'enc_blocks', 'dec_blocks']"),
  ):
    from_vdvae_hparams(dict(image_size=8))


def test_parser_errors_not_reachable_through_the_spec():
  with pytest.raises(ValueError, match=r"kind must be 'encoder', 'decoder' or 'any', got 'enc'"):
    blockstr.parse_block_string("8x1", kind="enc")
  with pytest.raises(ValueError, match=r"width must be >= 1, got 0"):
    blockstr.parse_width_string("4:8", width=0)
  with pytest.raises(ValueError, match=r"expected R, RxN, RmS or RdK \(positive integers\)"):
    blockstr.parse_block_string("8x1,8q", kind="any")


def test_policy_knobs_are_not_spec_fields_and_remat_mode_is_gone():
  for name in POLICY:
    with pytest.raises(TypeError, match=name):
      HVAESpec(**{**TINY8, name: None})
  with pytest.raises(ValueError, match=r"got 'remat' \(the old 'remat' mode is 'scan' with"):
    ExecPolicy(exec_mode="remat")
  with pytest.raises(ValueError, match=r"got 'remat'"):
    ExecPolicy(exec_overrides=((4, "remat"),))


def test_derived_structure_is_computed_once():
  spec = get_preset("tiny8", share=2)
  assert spec.enc_pairs is spec.enc_pairs and spec.dec_segments is spec.dec_segments
  assert spec.enc_segments == (
    (8, None, 0, 1),
    (8, 2, 1, 2),
    (4, None, 2, 3),
    (4, 4, 3, 4),
    (1, None, 4, 5),
  )
  assert spec.dec_segments == ((1, None, 0, 1), (4, 1, 1, 3), (8, 4, 3, 4))
  assert spec.dec_program == (0, 1, 1, 2) and spec.cell_resolutions == (1, 4, 8)
  assert spec.block_resolutions == (8, 4, 1) and spec.bias_resolutions == (1, 4, 8)
  assert (spec.num_applications, spec.num_cells) == (4, 3)
  assert spec == get_preset("tiny8", share=2) and hash(spec) == hash(get_preset("tiny8", share=2))
