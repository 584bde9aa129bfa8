r"""How an HVAE is executed: :class:`ExecPolicy` (nothing here changes the parameter tree).

A policy chooses, per resolution, whether the repeated blocks run unrolled or as a
``lax.scan`` and how they are rematerialised, plus the convolutions' VJP, precision and compute
dtype. Two models of one :class:`~mrflax.nn.hvae.spec.HVAESpec` under different policies have
the same parameters (a checkpoint of one restores into the other) and compute the same function
up to float round-off (and bf16 rounding under ``compute_dtype="bfloat16"``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from mrflax.nn.layers import CONV_BACKWARDS, check_conv_options
from mrflax.nn.scan import REMAT_POLICIES, check_mode

CONV_BACKWARD_CHOICES = (*CONV_BACKWARDS, "auto")


def _pairs(value: Any) -> tuple[tuple[int, str], ...]:
  return tuple((int(r), str(m)) for r, m in value)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExecPolicy:
  """Execution knobs of an HVAE (encoder and decoder stacks, stem and head).

  Attributes:
    exec_mode: default execution mode of a resolution's repeated blocks: ``"unroll"`` (a Python
      loop) or ``"scan"`` (``lax.scan`` over the applications).
    exec_overrides: per-resolution modes, ``((res, mode), ...)`` (resolutions with blocks, once
      each).
    remat: rematerialisation policy of every resolution's stack: ``"none"``, ``"block"`` (each
      application under ``jax.checkpoint``) or ``"resolution"`` (the whole stack of a resolution
      under one ``jax.checkpoint``).
    remat_overrides: per-resolution policies, ``((res, policy), ...)``.
    scan_unroll: ``lax.scan``'s ``unroll`` where a stack runs as a scan (some resolution must).
    conv_backward: the convolutions' VJP: ``"xla"`` (JAX's automatic transpose: cuDNN on GPU,
      the TPU compiler's own), ``"custom"`` (:mod:`mrflax.nn.conv_ops`: same numbers, a backward
      pass that XLA:CPU runs fast inside any loop: 7-8x faster backward in a scanned stack, 5.4x
      faster train steps of the digits model inside ``fit``'s ``steps_per_call`` scan; measured
      faster only on XLA:CPU) or ``"auto"`` (the default): resolved by ``jax.default_backend()``
      when the model is built, ``"custom"`` on ``"cpu"`` and ``"xla"`` on every other backend
      (GPU, TPU). See :meth:`resolved`.
    conv_precision: ``lax`` precision of every convolution (``None``, ``"default"``, ``"high"``,
      ``"highest"``).
    compute_dtype: precision policy. ``None``: compute in the parameter dtype (float32).
      ``"bfloat16"``: convolutions and the nonlinearities between them run in bf16, while the
      parameters, the residual state, the KL, the likelihood and every ``exp``/softplus stay in
      float32 (sub-network outputs are cast back before use).

  Examples:
    >>> ExecPolicy(exec_mode="scan", remat="block").mode_at(4)
    'scan'
    >>> ExecPolicy(conv_backward="xla").resolved().conv_backward
    'xla'
  """

  exec_mode: str = "unroll"
  exec_overrides: tuple[tuple[int, str], ...] = ()
  remat: str = "none"
  remat_overrides: tuple[tuple[int, str], ...] = ()
  scan_unroll: int = 1
  conv_backward: str = "auto"
  conv_precision: str | None = None
  compute_dtype: str | None = None

  def __post_init__(self):
    object.__setattr__(self, "exec_overrides", _pairs(self.exec_overrides))
    object.__setattr__(self, "remat_overrides", _pairs(self.remat_overrides))
    for m in (self.exec_mode, *(m for _, m in self.exec_overrides)):
      check_mode(m)
    for r in (self.remat, *(r for _, r in self.remat_overrides)):
      if r not in REMAT_POLICIES:
        raise ValueError(f"remat must be one of {REMAT_POLICIES}, got {r!r}")
    if not isinstance(self.scan_unroll, int) or self.scan_unroll < 1:
      raise ValueError(f"scan_unroll must be >= 1, got {self.scan_unroll}")
    if self.conv_backward not in CONV_BACKWARD_CHOICES:
      raise ValueError(
        f"conv_backward must be one of {CONV_BACKWARD_CHOICES}, got {self.conv_backward!r}"
      )
    check_conv_options(
      conv_backward="xla" if self.conv_backward == "auto" else self.conv_backward,
      precision=self.conv_precision,
      dtype=self.compute_dtype,
    )
    for name in ("exec_overrides", "remat_overrides"):
      seen: set[int] = set()
      for res, _ in getattr(self, name):
        if res in seen:
          raise ValueError(f"{name} names resolution {res} twice; keep one entry")
        seen.add(res)

  def mode_at(self, res: int) -> str:
    """Execution mode at a resolution."""
    return dict(self.exec_overrides).get(res, self.exec_mode)

  def remat_at(self, res: int) -> str:
    """Rematerialisation policy at a resolution."""
    return dict(self.remat_overrides).get(res, self.remat)

  def resolved(self) -> ExecPolicy:
    """This policy with ``conv_backward="auto"`` replaced by the backend's choice.

    ``jax.default_backend() == "cpu"``: ``"custom"`` (the loop-friendly VJP); any other backend:
    ``"xla"``. Explicit ``"custom"`` / ``"xla"`` are kept as given. The models call this once,
    at construction.
    """
    if self.conv_backward != "auto":
      return self
    backend = "custom" if jax.default_backend() == "cpu" else "xla"
    return dataclasses.replace(self, conv_backward=backend)

  def conv_kw(self) -> dict[str, Any]:
    """Keyword arguments of every convolution (:func:`mrflax.nn.conv`, resolved backward)."""
    return dict(
      conv_backward=self.resolved().conv_backward,
      precision=self.conv_precision,
      dtype=self.compute_dtype,
    )

  def check(self, spec) -> None:
    """Raises a ValueError unless the policy fits ``spec`` (an :class:`HVAESpec`).

    The overrides must name resolutions where blocks run, and ``scan_unroll != 1`` needs a
    resolution that runs as a scan (settings that would be ignored are errors).
    """
    block_res = list(spec.block_resolutions)
    for name in ("exec_overrides", "remat_overrides"):
      for res, _ in getattr(self, name):
        if res not in block_res:
          raise ValueError(
            f"{name} names resolution {res}, where no encoder or decoder block runs "
            f"(resolutions with blocks: {block_res}); remove it"
          )
    if self.scan_unroll != 1 and all(self.mode_at(r) == "unroll" for r in block_res):
      raise ValueError(
        f"scan_unroll={self.scan_unroll} has no effect: every resolution runs unrolled "
        f"(exec_mode={self.exec_mode!r}, exec_overrides={self.exec_overrides!r}); set "
        f"exec_mode='scan' (or a scan override) or leave scan_unroll=1"
      )

  def replace(self, **kw) -> ExecPolicy:
    """A copy with some fields replaced (validated again)."""
    return dataclasses.replace(self, **kw)


POLICY_FIELDS = tuple(f.name for f in dataclasses.fields(ExecPolicy))
"""The names of :class:`ExecPolicy`'s fields (what an experiment routes away from the spec)."""
