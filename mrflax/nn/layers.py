"""Layers with PyTorch-matching initialisation, the VDVAE bottleneck Block, time embeddings.

PyTorch's default convolution init is uniform on :math:`\\pm 1/\\sqrt{\\text{fan\\_in}}`, which is
``variance_scaling(1/3, "fan_in", "uniform")``; VDVAE zeroes every bias.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax
from jaxtyping import Array, Float

from mrflax.nn import conv_ops
from mrflax.wavelets import project

CONV_BACKWARDS = ("xla", "custom")
PRECISIONS = (None, "default", "high", "highest")
COMPUTE_DTYPES = (None, "float32", "bfloat16", "float16")

torch_conv_init = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def gelu(x: Float[Array, "..."]) -> Float[Array, "..."]:
  r"""Exact (erf) GELU, PyTorch's ``F.gelu``:
  :math:`x\,\Phi(x) = \tfrac{x}{2}\big(1 + \operatorname{erf}(x/\sqrt{2})\big)`.

  Written with ``lax.erf`` rather than ``jax.nn.gelu(approximate=False)``, which evaluates
  :math:`\tfrac{x}{2}\operatorname{erfc}(-x/\sqrt{2})`: on XLA:CPU that ``erfc`` is a
  branchy exp-based kernel that took 18% of the CIFAR-10 VDVAE train step (3.2 + 2.3 s of
  30.4 s on one thread, ``benchmarks/profile_step.py``); the ``erf`` form takes 2.5 s there.
  The two agree to float32 round-off (within 1e-6 absolute for values and gradients, tested);
  for :math:`x \lesssim -6` the ``erf`` form rounds :math:`x\,\Phi(x)` (below 1e-8 in size)
  to zero, as PyTorch does.

  Args:
    x: input.

  Returns:
    ``gelu(x)``.

  Examples:
    >>> import jax.numpy as jnp
    >>> round(float(gelu(jnp.array(1.0))), 6)
    0.841345
  """
  return 0.5 * x * (1.0 + lax.erf(x * 0.7071067811865476))


def conv(
  in_features: int,
  out_features: int,
  *,
  kernel_size: int,
  rngs: nnx.Rngs,
  scale: float = 1.0,
  zero: bool = False,
  param_dtype=jnp.float32,
  conv_backward: str = "xla",
  precision: str | None = None,
  dtype: str | None = None,
) -> nnx.Conv:
  """A 'SAME'-padded stride-1 conv with PyTorch's init, zero bias, weights times ``scale``.

  Args:
    in_features: input channels.
    out_features: output channels.
    kernel_size: 1 or 3.
    rngs: parameter RNG.
    scale: factor applied to the initial kernel (VDVAE's :math:`\\sqrt{1/N}` scalings).
    zero: zero-initialise the kernel (VDVAE's ``zero_weights``).
    param_dtype: parameter dtype.
    conv_backward: ``"xla"`` (JAX's automatic VJP) or ``"custom"``
      (:func:`mrflax.nn.conv_ops.conv2d_same`: same forward and gradients, a backward pass that
      XLA:CPU runs fast inside ``lax.scan``).
    precision: ``lax`` precision of the convolution (``None``/``"default"``, ``"high"``,
      ``"highest"``); matters on TPU and for bf16/tf32 paths on GPU.
    dtype: computation dtype (``None``: that of the inputs and parameters; ``"bfloat16"``:
      inputs and kernel are cast to bf16 and the output is bf16, parameters stay
      ``param_dtype``).

  Returns:
    An ``nnx.Conv`` (kernel HWIO).

  Examples:
    >>> from flax import nnx
    >>> c = conv(4, 8, kernel_size=3, rngs=nnx.Rngs(0))
    >>> c.kernel.shape, float(abs(c.kernel[...]).max()) <= 1 / 6
    ((3, 3, 4, 8), True)
  """
  check_conv_options(conv_backward=conv_backward, precision=precision, dtype=dtype)
  if zero:
    kernel_init = nnx.initializers.zeros_init()
  elif scale != 1.0:

    def kernel_init(key, shape, dtype=param_dtype):
      return torch_conv_init(key, shape, dtype) * jnp.asarray(scale, dtype)

  else:
    kernel_init = torch_conv_init
  c = nnx.Conv(
    in_features,
    out_features,
    kernel_size=(kernel_size, kernel_size),
    padding="SAME",
    kernel_init=kernel_init,
    bias_init=nnx.initializers.zeros_init(),
    param_dtype=param_dtype,
    dtype=None if dtype is None else jnp.dtype(dtype),
    precision=None if precision is None else jax.lax.Precision(precision.upper()),
    conv_general_dilated=(
      conv_ops.conv_general_dilated if conv_backward == "custom" else jax.lax.conv_general_dilated
    ),
    rngs=rngs,
  )
  return c


def check_conv_options(
  *, conv_backward: str, precision: str | None, dtype: str | None = None
) -> None:
  """Validates the convolution knobs (:data:`CONV_BACKWARDS`, :data:`PRECISIONS`,
  :data:`COMPUTE_DTYPES`).

  Examples:
    >>> check_conv_options(conv_backward="custom", precision="highest", dtype="bfloat16")
  """
  if conv_backward not in CONV_BACKWARDS:
    raise ValueError(f"conv_backward must be one of {CONV_BACKWARDS}, got {conv_backward!r}")
  if precision not in PRECISIONS:
    raise ValueError(f"conv precision must be one of {PRECISIONS}, got {precision!r}")
  if dtype not in COMPUTE_DTYPES:
    raise ValueError(f"compute dtype must be one of {COMPUTE_DTYPES}, got {dtype!r}")


def sinusoidal_embedding(
  t: Float[Array, "*b"], *, num_frequencies: int = 16, max_frequency: float = 8.0
) -> Float[Array, "*b f"]:
  r"""Sinusoidal time features :math:`[\sin(2\pi\omega_k t), \cos(2\pi\omega_k t)]_{k<K}`.

  :math:`\omega_k` is geometric between 1 and :math:`\omega_{max}` (THEORY.md §5.3).

  Args:
    t: times (any shape).
    num_frequencies: ``K``.
    max_frequency: :math:`\omega_{max}` (default in the HVAE: ``N/2``).

  Returns:
    Features with a trailing axis of size ``2K``.

  Examples:
    >>> import jax.numpy as jnp
    >>> sinusoidal_embedding(jnp.array(0.0), num_frequencies=2).tolist()
    [0.0, 0.0, 1.0, 1.0]
  """
  if num_frequencies < 1:
    raise ValueError(f"num_frequencies must be >= 1, got {num_frequencies}")
  omega = jnp.geomspace(1.0, max(max_frequency, 1.0), num_frequencies)
  t = jnp.asarray(t)
  omega = omega.astype(jnp.result_type(t, jnp.float32)).reshape((1,) * t.ndim + (-1,))
  ang = 2 * math.pi * t[..., None] * omega
  return jnp.concatenate([jnp.sin(ang), jnp.cos(ang)], axis=-1)


class FiLM(nnx.Module):
  r"""Zero-initialised FiLM: :math:`h \leftarrow h \odot (1 + W_s e) + W_b e`.

  Both maps are linear with zero init, so at init FiLM is the identity.

  Examples:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> f = FiLM(in_features=4, features=3, rngs=nnx.Rngs(0))
    >>> h = jnp.ones((1, 2, 2, 3))
    >>> bool(jnp.all(f(h, jnp.ones((4,))) == h))
    True
  """

  def __init__(
    self,
    *,
    in_features: int,
    features: int,
    rngs: nnx.Rngs,
    param_dtype=jnp.float32,
    dtype: str | None = None,
  ):
    zeros = nnx.initializers.zeros_init()
    kw = dict(kernel_init=zeros, param_dtype=param_dtype, rngs=rngs)
    kw["dtype"] = None if dtype is None else jnp.dtype(dtype)
    self.scale = nnx.Linear(in_features, features, **kw)
    self.shift = nnx.Linear(in_features, features, **kw)

  def __call__(
    self, h: Float[Array, "b h w c"], emb: Float[Array, " e"] | Float[Array, "b e"]
  ) -> Float[Array, "b h w c"]:
    """Modulates ``h`` by ``emb``: one embedding for the batch ``[e]``, or one per image."""
    lead = (1,) if emb.ndim == 1 else emb.shape[:1]
    scale = self.scale(emb).reshape(*lead, 1, 1, -1)
    return h * (1.0 + scale) + self.shift(emb).reshape(*lead, 1, 1, -1)


class Block(nnx.Module):
  """VDVAE's bottleneck block (VDVAE_REFERENCE.md §2).

  ``h = c4(gelu(c3(gelu(c2(gelu(c1(gelu(x))))))))``, ``y = x + h`` if residual, then average
  pooling by ``down_rate``. ``c2``/``c3`` are 3x3 if ``use_3x3`` else 1x1. With
  ``film_features > 0`` a zero-initialised FiLM of the time embedding modulates the output of
  ``c1`` (identity at init).

  Examples:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> b = Block(in_features=8, mid_features=2, out_features=8, residual=True, use_3x3=True,
    ...           down_rate=2, rngs=nnx.Rngs(0))
    >>> b(jnp.ones((1, 4, 4, 8))).shape
    (1, 2, 2, 8)
  """

  def __init__(
    self,
    *,
    in_features: int,
    mid_features: int,
    out_features: int,
    residual: bool,
    use_3x3: bool,
    down_rate: int | None = None,
    zero_last: bool = False,
    last_scale: float = 1.0,
    film_features: int = 0,
    rngs: nnx.Rngs,
    param_dtype=jnp.float32,
    conv_backward: str = "xla",
    precision: str | None = None,
    dtype: str | None = None,
  ):
    if residual and in_features != out_features:
      raise ValueError(f"residual block needs in == out, got {in_features} != {out_features}")
    k = 3 if use_3x3 else 1
    ckw = dict(
      rngs=rngs,
      param_dtype=param_dtype,
      conv_backward=conv_backward,
      precision=precision,
      dtype=dtype,
    )
    self.c1 = conv(in_features, mid_features, kernel_size=1, **ckw)
    self.c2 = conv(mid_features, mid_features, kernel_size=k, **ckw)
    self.c3 = conv(mid_features, mid_features, kernel_size=k, **ckw)
    self.c4 = conv(
      mid_features, out_features, kernel_size=1, zero=zero_last, scale=last_scale, **ckw
    )
    self.film = (
      FiLM(
        in_features=film_features,
        features=mid_features,
        rngs=rngs,
        param_dtype=param_dtype,
        dtype=dtype,
      )
      if film_features
      else None
    )
    self.residual = residual
    self.down_rate = down_rate

  def __call__(
    self,
    x: Float[Array, "b h w ci"],
    emb: Float[Array, " e"] | None = None,
    *,
    residual_scale: float | Float[Array, ""] | None = None,
  ) -> Float[Array, "b ho wo co"]:
    """``x + s * h`` (residual; ``s = residual_scale``, default 1) or ``h``, then pooling."""
    h = self.c1(gelu(x))
    if self.film is not None:
      if emb is None:
        raise ValueError("this block has a time embedding (FiLM); pass emb")
      h = self.film(h, emb)
    h = self.c2(gelu(h))
    h = self.c3(gelu(h))
    h = self.c4(gelu(h))
    if residual_scale is not None:
      if not self.residual:
        raise ValueError("residual_scale needs a residual block")
      h = h * residual_scale
    y = x + h if self.residual else h
    if self.down_rate is not None:
      y = project(y, levels=int(math.log2(self.down_rate)), ndim=2)
    return y


def count_params(module_or_tree) -> int:
  """Number of scalars in the ``nnx.Param`` leaves of a module (or of a state / pytree).

  A module counts its ``nnx.Param`` variables only (not batch statistics or RNG state); any
  other pytree (an ``nnx.State`` of parameters, a dict of arrays) counts all its array leaves.
  Works on abstract modules from ``nnx.eval_shape`` too (shapes only).

  Examples:
    >>> from flax import nnx
    >>> count_params(nnx.Linear(3, 2, rngs=nnx.Rngs(0)))
    8
    >>> import jax.numpy as jnp
    >>> count_params({"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)})
    9
  """
  tree = (
    nnx.state(module_or_tree, nnx.Param)
    if isinstance(module_or_tree, nnx.Module)
    else (module_or_tree)
  )
  return int(sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))
