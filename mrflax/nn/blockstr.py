"""VDVAE block strings and per-resolution width strings (VDVAE_REFERENCE.md §1, §3).

A block string is a comma-separated list of tokens, parsed left to right into ``(res, extra)``
pairs: ``RxN`` gives N pairs ``(R, None)``; ``RmS`` gives ``(R, S)`` (decoder: mix in the state of
resolution S); ``RdK`` gives ``(R, K)`` (encoder: pool by K after the block); ``R`` gives
``(R, None)``. A token is classified by the first matching letter in the order ``x``, ``m``,
``d``.
"""

from __future__ import annotations

import re

_INT = re.compile(r"[0-9]+")
_FORMS = {
  "encoder": "R, RxN or RdK (R a resolution, N a repeat count, K a pooling factor: integers)",
  "decoder": "R, RxN or RmS (R a resolution, N a repeat count, S a mixin resolution: integers)",
  "any": "R, RxN, RmS or RdK (positive integers)",
}
_WHAT = {
  "encoder": "encoder block string",
  "decoder": "decoder block string",
  "any": "block string",
}


def _is_pow2(n: int) -> bool:
  return n >= 1 and (n & (n - 1)) == 0


def parse_block_string(
  s: str, *, kind: str = "any", image_size: int | None = None
) -> tuple[tuple[int, int | None], ...]:
  """Parses a VDVAE block string into ``(res, extra)`` pairs, with clear errors.

  Args:
    s: the block string, e.g. ``"32x11,32d2,16x6"``.
    kind: ``"encoder"`` (allows ``x`` and ``d`` tokens), ``"decoder"`` (``x`` and ``m``) or
      ``"any"``.
    image_size: if given, every resolution must be a power of two dividing it, and every
      pooling factor / mixing ratio a power of two.

  Returns:
    A tuple of ``(res, extra)`` pairs in string order.

  Raises:
    ValueError: naming the malformed token and its (0-based) position.

  Examples:
    >>> parse_block_string("1x2,4m1,4", kind="decoder")
    ((1, None), (1, None), (4, 1), (4, None))
    >>> parse_block_string("8x1,8d2", kind="encoder", image_size=8)
    ((8, None), (8, 2))
  """
  if kind not in _FORMS:
    raise ValueError(f"kind must be 'encoder', 'decoder' or 'any', got {kind!r}")
  what = _WHAT[kind]
  if not isinstance(s, str) or not s.strip():
    raise ValueError(f"empty {what} {s!r}: expected comma-separated tokens {_FORMS[kind]}")
  out: list[tuple[int, int | None]] = []
  for pos, raw in enumerate(s.split(",")):
    tok = raw.strip()

    def bad(why: str, tok=tok, pos=pos) -> ValueError:
      return ValueError(f"malformed token {tok!r} at position {pos} of the {what} {s!r}: {why}")

    letter = next((c for c in "xmd" if c in tok), None)
    if letter is None:
      if not _INT.fullmatch(tok):
        raise bad(f"expected {_FORMS[kind]}")
      parts = [tok]
    else:
      parts = tok.split(letter, 1)
      if len(parts) != 2 or not all(_INT.fullmatch(p) for p in parts):
        raise bad(f"expected {_FORMS[kind]}")
    res = int(parts[0])
    if res < 1:
      raise bad("resolution must be >= 1")
    if letter == "d" and kind == "decoder":
      raise bad("'d' (pooling) tokens are only valid in encoder block strings")
    if letter == "m" and kind == "encoder":
      raise bad("'m' (mixing) tokens are only valid in decoder block strings")
    if image_size is not None:
      if not _is_pow2(res) or image_size % res:
        raise bad(f"resolution {res} is not a power of two dividing the image size {image_size}")
    if letter is None:
      out.append((res, None))
      continue
    arg = int(parts[1])
    if letter == "x":
      if arg < 1:
        raise bad("repeat count must be >= 1")
      out.extend([(res, None)] * arg)
    elif letter == "m":
      if arg < 1 or res % arg or not _is_pow2(res // arg) or arg >= res:
        raise bad(f"mixin resolution {arg} must be a coarser power-of-two fraction of {res}")
      out.append((res, arg))
    else:
      if arg < 2 or res % arg or not _is_pow2(arg):
        raise bad(f"pooling factor {arg} must be a power of two >= 2 dividing {res}")
      out.append((res, arg))
  return tuple(out)


def parse_width_string(s: str, *, width: int) -> dict[int, int]:
  """Parses ``custom_width_str`` ``"r1:w1,r2:w2"`` into ``{res: width}`` (unlisted: ``width``).

  The returned dict only lists the given resolutions; use :func:`width_at` to look up.

  Args:
    s: the width string (``""`` for none).
    width: the default width (only validated here).

  Returns:
    ``{res: width}`` for the listed resolutions.

  Examples:
    >>> parse_width_string("32:64,16:128", width=64)
    {32: 64, 16: 128}
  """
  if width < 1:
    raise ValueError(f"width must be >= 1, got {width}")
  out: dict[int, int] = {}
  if not s:
    return out
  for pos, raw in enumerate(s.split(",")):
    tok = raw.strip()
    parts = tok.split(":")
    if len(parts) != 2 or not all(_INT.fullmatch(p) for p in parts) or min(map(int, parts)) < 1:
      raise ValueError(
        f"malformed token {tok!r} at position {pos} of width string {s!r}: expected R:W with "
        f"positive integers (a resolution R and its width W)"
      )
    res = int(parts[0])
    if res in out:
      raise ValueError(
        f"resolution {res} appears twice in width string {s!r} (again at position {pos}); "
        f"give each resolution once"
      )
    out[res] = int(parts[1])
  return out


def width_at(widths: dict[int, int] | tuple[tuple[int, int], ...], res: int, *, width: int) -> int:
  """Width at a resolution: the custom width if listed, else the default ``width``.

  Args:
    widths: parsed custom widths (dict or tuple of pairs).
    res: resolution.
    width: default width.

  Returns:
    The width at ``res``.

  Examples:
    >>> width_at({32: 64}, 16, width=48)
    48
  """
  return dict(widths).get(res, width)
