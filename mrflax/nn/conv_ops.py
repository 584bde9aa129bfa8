r"""A stride-1 'SAME' convolution whose backward pass XLA:CPU runs fast inside ``lax.scan``.

On XLA:CPU, the two convolutions that JAX's automatic transpose emits for the backward pass of a
convolution run 5-11x slower when they sit inside a ``while`` loop body (``lax.scan``) than when
the same program is unrolled (jax-ml/jax#12868, ENGINEERING.md §5). The optimised HLO shows why
(``XLA_FLAGS=--xla_dump_to=...``, a 4-step scan of a 3x3 conv, see benchmarks/README.md): the input
gradient is a convolution with ``dim_labels=b01f_01oi->b01f`` (the kernel read in transposed
order) and the weight gradient one with ``f01b_i01o->01bf`` (batch and features swapped). In the
unrolled program XLA rewrites both into the canonical ``b01f_01io->b01f`` form that its fast
convolution kernels take; inside the loop body they stay non-canonical and run on a slow generic
path. :func:`conv2d_same` computes the same forward convolution but defines its VJP by hand, so
that the loop body only holds canonical convolutions and matrix products:

.. math::
  \frac{\partial L}{\partial x} = \mathrm{conv}_{\text{SAME}}\big(\bar y,\;
    \mathrm{flip}_{hw}(W)^{\top_{io}}\big), \qquad
  \frac{\partial L}{\partial W_{ab}} = \sum_{n,h,w} \tilde x_{n,h+a,w+b}\,
    \bar y_{n,h,w}^{\top},

where :math:`\tilde x` is ``x`` zero-padded by :math:`(k-1)/2` on each side: the input gradient
is an ordinary stride-1 convolution with the spatially flipped, in/out-swapped kernel, and the
weight gradient is one matrix product (contraction over batch and pixels) per kernel offset
:math:`(a, b)`. For 1x1 kernels the forward pass and both gradients are plain 2-D matrix
products over pixels (2-4x faster than a 1x1 convolution on XLA:CPU). Gradients equal the automatic
ones up to float round-off (tested).

:func:`conv_general_dilated` is a drop-in for ``jax.lax.conv_general_dilated`` (it can be passed to
``nnx.Conv(conv_general_dilated=...)``): it takes the custom path for NHWC/HWIO, stride 1, no
dilation, one feature group and 'SAME' (or the equivalent symmetric explicit) padding with an odd
kernel, and calls ``lax.conv_general_dilated`` unchanged for anything else.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float

_DN = ("NHWC", "HWIO", "NHWC")
#: The custom VJP's 3x3 weight-gradient product per kernel offset (``dy^T x_shifted``); also
#: how ``benchmarks/profile_step.py`` recognises it in the HLO's op names.
DW_EINSUM = "bhwo,bhwi->oi"


def _conv(x, w, precision):
  if w.shape[0] == w.shape[1] == 1:  # a 1x1 convolution is a matmul over pixels
    return _pixels_matmul(x, w[0, 0], precision)
  return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=_DN, precision=precision)


def _pixels_matmul(x, w2, precision):
  """``[b, h, w, i] @ [i, o]`` as one 2-D matmul: on XLA:CPU 2-4x faster than the equivalent 1x1
  ``conv_general_dilated`` or 4-D ``einsum``, forward and backward (benchmarks/README.md)."""
  y = jnp.matmul(x.reshape(-1, x.shape[-1]), w2, precision=precision)
  return y.reshape(*x.shape[:-1], w2.shape[-1])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv2d_same(x, w, precision):
  return _conv(x, w, precision)


def _fwd(x, w, precision):
  return _conv(x, w, precision), (x, w)


def _bwd(precision, res, dy):
  x, w = res
  kh, kw = w.shape[:2]
  if kh == kw == 1:
    dx = _pixels_matmul(dy, w[0, 0].T, precision)
    x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])
    dw = jnp.matmul(x2.T, dy2, precision=precision)[None, None]
    return dx.astype(x.dtype), dw.astype(w.dtype)
  w_t = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)
  dx = _conv(dy, w_t, precision)
  ph, pw = (kh - 1) // 2, (kw - 1) // 2
  h, wd = x.shape[1:3]
  xp = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
  # dy^T [o, bhw] on the left, the shifted inputs [bhw, i] on the right: XLA:CPU lays out the
  # transpose of dy once and shares it between the kh * kw products, and each slice of x is a
  # plain strided copy. The other order (x^T dy) transposes every slice of x into [i, bhw]:
  # the whole fashion32_rgb train step 7.4% slower (benchmarks/README.md).
  dw_t = jnp.stack(
    [
      jnp.einsum(DW_EINSUM, dy, xp[:, a : a + h, b : b + wd], precision=precision)
      for a in range(kh)
      for b in range(kw)
    ]
  )
  dw = dw_t.reshape(kh, kw, *dw_t.shape[1:]).transpose(0, 1, 3, 2)
  return dx.astype(x.dtype), dw.astype(w.dtype)


_conv2d_same.defvjp(_fwd, _bwd)


def conv2d_same(
  x: Float[Array, "b h w i"], kernel: Float[Array, "kh kw i o"], *, precision: Any = None
) -> Float[Array, "b h w o"]:
  r"""Stride-1 'SAME' 2-D convolution (NHWC, HWIO, odd kernel) with a loop-friendly VJP.

  Forward: ``lax.conv_general_dilated(x, kernel, (1, 1), "SAME")``. Backward: the input gradient
  as a convolution with the flipped, transposed kernel; the weight gradient as one contraction
  over batch and pixels per kernel offset (module docstring).

  Args:
    x: inputs ``[b, h, w, i]``.
    kernel: weights ``[kh, kw, i, o]``, ``kh`` and ``kw`` odd.
    precision: ``lax`` precision for the forward and backward contractions.

  Returns:
    ``[b, h, w, o]``.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> x = jax.random.normal(jax.random.key(0), (2, 5, 5, 3))
    >>> w = jax.random.normal(jax.random.key(1), (3, 3, 3, 4))
    >>> f = lambda x, w: jnp.sum(conv2d_same(x, w) ** 2)
    >>> g = lambda x, w: jnp.sum(jax.lax.conv_general_dilated(
    ...     x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) ** 2)
    >>> ga, gb = jax.grad(f, (0, 1))(x, w), jax.grad(g, (0, 1))(x, w)
    >>> all(bool(jnp.allclose(a, b, rtol=1e-4, atol=1e-3)) for a, b in zip(ga, gb))
    True
  """
  if x.ndim != 4 or kernel.ndim != 4 or kernel.shape[2] != x.shape[-1]:
    raise ValueError(
      f"conv2d_same needs x [b, h, w, i] and kernel [kh, kw, i, o]; got {x.shape}, {kernel.shape}"
    )
  if kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
    raise ValueError(f"conv2d_same needs an odd kernel size, got {kernel.shape[:2]}")
  return _conv2d_same(x, kernel, precision)


def _is_same_padding(padding: Any, kernel_hw: Sequence[int]) -> bool:
  if isinstance(padding, str):
    return padding.upper() == "SAME"
  try:
    pads = [tuple(int(v) for v in p) for p in padding]
  except TypeError:
    return False
  return pads == [((k - 1) // 2, (k - 1) // 2) for k in kernel_hw]


def conv_general_dilated(
  lhs: Array,
  rhs: Array,
  window_strides: Sequence[int],
  padding: Any,
  lhs_dilation: Sequence[int] | None = None,
  rhs_dilation: Sequence[int] | None = None,
  dimension_numbers: Any = None,
  feature_group_count: int = 1,
  batch_group_count: int = 1,
  precision: Any = None,
  preferred_element_type: Any = None,
  out_sharding: Any = None,
) -> Array:
  """Drop-in for ``jax.lax.conv_general_dilated`` that routes plain convs to :func:`conv2d_same`.

  The custom-VJP path is taken for 2-D NHWC/HWIO convolutions with stride 1, no dilation, one
  feature and batch group, an odd kernel and 'SAME' padding (or its explicit symmetric form),
  without ``preferred_element_type`` or ``out_sharding``; every other call goes to ``lax``
  unchanged. Pass it as ``nnx.Conv(..., conv_general_dilated=conv_general_dilated)``.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> x, w = jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 1))
    >>> dn = jax.lax.conv_dimension_numbers(x.shape, w.shape, ("NHWC", "HWIO", "NHWC"))
    >>> y = conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn)
    >>> y[0, :, :, 0].tolist()[0]
    [8.0, 12.0, 12.0, 8.0]
  """
  kw = dict(
    lhs_dilation=lhs_dilation,
    rhs_dilation=rhs_dilation,
    dimension_numbers=dimension_numbers,
    feature_group_count=feature_group_count,
    batch_group_count=batch_group_count,
    precision=precision,
    preferred_element_type=preferred_element_type,
  )
  plain = (
    lhs.ndim == 4
    and rhs.ndim == 4
    and tuple(window_strides) == (1, 1)
    and all(d == 1 for d in (lhs_dilation or (1, 1)))
    and all(d == 1 for d in (rhs_dilation or (1, 1)))
    and feature_group_count == 1
    and batch_group_count == 1
    and preferred_element_type is None
    and out_sharding is None
    and rhs.shape[0] % 2 == 1
    and rhs.shape[1] % 2 == 1
    and _is_same_padding(padding, rhs.shape[:2])
    and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    == lax.conv_dimension_numbers(lhs.shape, rhs.shape, _DN)
  )
  if not plain:
    if out_sharding is not None:
      kw["out_sharding"] = out_sharding
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, **kw)
  return _conv2d_same(lhs, rhs, precision)


__all__ = ["conv2d_same", "conv_general_dilated"]
