"""Block-string grammar and spec validation (VDVAE_REFERENCE.md §1, §3)."""

import pytest

from mrflax.nn import ExecPolicy, HVAESpec, get_preset, parse_block_string, parse_width_string


def test_parse_examples():
  assert parse_block_string("1x1,4m1,4x2", kind="decoder") == (
    (1, None),
    (4, 1),
    (4, None),
    (4, None),
  )
  assert parse_block_string("32x2,32d2,16", kind="encoder") == (
    (32, None),
    (32, None),
    (32, 2),
    (16, None),
  )
  cifar = get_preset("cifar10")
  assert len(cifar.enc_pairs) == 33
  assert len(cifar.dec_pairs) == 43
  per_res = {}
  for r, _ in cifar.dec_pairs:
    per_res[r] = per_res.get(r, 0) + 1
  assert per_res == {1: 1, 4: 3, 8: 6, 16: 11, 32: 22}
  assert len(get_preset("imagenet32").dec_pairs) == 78
  assert len(get_preset("imagenet64").enc_pairs) == 65


@pytest.mark.parametrize(
  ("s", "kind", "token", "pos"),
  [
    ("32x2,3y2,16", "any", "3y2", 1),
    ("32x2,,16", "any", "", 1),
    ("32xa", "any", "32xa", 0),
    ("1x1,4m1,4d2", "decoder", "4d2", 2),
    ("8x1,8m4", "encoder", "8m4", 1),
    ("8x0", "any", "8x0", 0),
    ("8d3", "encoder", "8d3", 0),
    ("4m8", "decoder", "4m8", 0),
    ("-4", "any", "-4", 0),
  ],
)
def test_malformed_tokens_named_with_position(s, kind, token, pos):
  with pytest.raises(ValueError, match=rf"token '{token}' at position {pos}"):
    parse_block_string(s, kind=kind)


def test_resolution_must_fit_image():
  with pytest.raises(ValueError, match="dividing the image size 8"):
    parse_block_string("8x1,16", kind="encoder", image_size=8)
  with pytest.raises(ValueError, match="power of two"):
    parse_block_string("6x1", kind="encoder", image_size=12)
  base = get_preset("tiny8")
  with pytest.raises(ValueError, match="position 1"):
    base.replace(dec_blocks="1x1,16m1")
  with pytest.raises(ValueError, match="encoder block 1 is at resolution 8"):
    base.replace(enc_blocks="8d2,8x1")
  with pytest.raises(ValueError, match="no encoder activation"):
    base.replace(dec_blocks="1x1,2m1,8m2")
  with pytest.raises(ValueError, match="last decoder block"):
    base.replace(dec_blocks="1x1,4m1")
  with pytest.raises(ValueError, match="mixes in resolution 4"):
    base.replace(dec_blocks="1x1,8m4")
  with pytest.raises(ValueError, match="empty"):
    base.replace(dec_blocks="")


def test_widths_and_other_validation():
  assert parse_width_string("", width=8) == {}
  with pytest.raises(ValueError, match="position 1"):
    parse_width_string("4:8,4x8", width=8)
  base = get_preset("tiny8")
  s = base.replace(custom_width_str="4:24,1:32")
  assert (s.width_at(8), s.width_at(4), s.width_at(1)) == (16, 24, 32)
  with pytest.raises(ValueError, match="must not decrease"):
    base.replace(custom_width_str="4:8")
  with pytest.raises(ValueError, match="image resolution"):
    base.replace(custom_width_str="8:32")
  with pytest.raises(ValueError, match="3 image channels"):
    base.replace(likelihood="dmol")
  with pytest.raises(ValueError, match="likelihood"):
    base.replace(likelihood="gauss")
  with pytest.raises(ValueError, match="execution mode"):
    ExecPolicy(exec_mode="fast")
  with pytest.raises(ValueError, match="share"):
    base.replace(share=0)
  with pytest.raises(ValueError, match="contiguous"):
    base.replace(dec_blocks="1x1,4m1,8m4,4,8", share=2)
  with pytest.raises(ValueError, match="image_size"):
    HVAESpec(image_size=12, width=8, zdim=2, enc_blocks="12", dec_blocks="12")


def test_programs_and_segments():
  s = get_preset("cifar10", share=2)
  prog = s.dec_program
  assert len(prog) == 43
  assert s.num_cells == 1 + 2 + 3 + 6 + 11
  # the m block shares a cell with the next block at its resolution
  assert prog[:6] == (0, 1, 1, 2, 3, 3)
  assert get_preset("cifar10").dec_program == tuple(range(43))
  assert get_preset("cifar10", share="full").num_cells == 5
  assert [seg[:2] for seg in s.dec_segments] == [(1, None), (4, 1), (8, 4), (16, 8), (32, 16)]
