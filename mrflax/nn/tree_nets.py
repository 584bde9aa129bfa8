r"""Networks aligned with belief propagation on a GHM (THEORY §7.4), as Flax NNX modules.

* :class:`BPUNet`: the BP-aligned U-Net denoiser. Its encoder mirrors the upward pass (one
  kernel = stride = s convolution per level, so every window is exactly one family), its decoder
  the downward pass (transposed kernel = stride = s convolutions whose s output slots are the child
  index), the long skips carry the siblings' upward messages, and the output adds the input
  log-evidence :math:`u = \lambda Z` to the logits, like :math:`D^*_j = \mathrm{softmax}(\log
  \gamma^{(L)}_j + \lambda Z_j)`.
* :class:`ConvNetClassifier`: the encoder alone with a linear read-out at the root, the
  counterpart of the Bayes classifier :math:`\log\pi + \log\beta^{(0)}`.
* :class:`ExactBPDenoiser`: the exact-BP layer variant (upper-bound ablation): layers that run the
  log-domain BP updates literally with learnable level tables, so the model class contains
  :math:`D^*`.

A convolution with kernel = stride = s and no padding is written as "group each family's ``s``
children into the channel axis, then a dense layer" (:func:`group_families`), and the transposed
one as "dense layer to ``s`` times the channels, then scatter them to the children"
(:func:`ungroup_families`). These are the same linear maps as ``nnx.Conv`` / ``nnx.ConvTranspose``
with ``kernel_size = strides = s`` (checked in the tests) and run as plain matmuls. On grids the
family order is the Haar band order: child index :math:`k = \sum_a o_a 2^{d-1-a}`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from mrflax import ghm as G


def group_families(h: Float[Array, "b *n c"], *, ndim: int) -> Float[Array, "b *m sc"]:
  r"""Moves every family of :math:`2^d` children (grids; ``s = 2`` in 1-D) into the channels.

  1-D: ``[b, n, c] -> [b, n/2, 2c]`` for ``s = 2``; use :func:`group_families_1d` for other
  ``s``. Grids: ``[b, H, W, c] -> [b, H/2, W/2, 4c]`` with the child ``(o_0, o_1)`` in channel
  block :math:`2 o_0 + o_1`.

  Examples:
    >>> h = jnp.arange(16.0).reshape(1, 4, 4, 1)
    >>> group_families(h, ndim=2)[0, 0, 0].tolist()
    [0.0, 1.0, 4.0, 5.0]
  """
  if ndim == 1:
    return group_families_1d(h, s=2)
  b, c = h.shape[0], h.shape[-1]
  sizes = h.shape[1:-1]
  split = [b]
  for n in sizes:
    split += [n // 2, 2]
  x = h.reshape((*split, c))
  perm = [0] + [1 + 2 * a for a in range(ndim)] + [2 + 2 * a for a in range(ndim)] + [2 * ndim + 1]
  x = x.transpose(perm)
  return x.reshape((b, *(n // 2 for n in sizes), (2**ndim) * c))


def ungroup_families(h: Float[Array, "b *m sc"], *, ndim: int) -> Float[Array, "b *n c"]:
  """Inverse of :func:`group_families` (channel block ``k`` becomes child ``k``).

  Examples:
    >>> h = jnp.arange(32.0).reshape(2, 4, 4, 1)
    >>> bool((ungroup_families(group_families(h, ndim=2), ndim=2) == h).all())
    True
  """
  if ndim == 1:
    return ungroup_families_1d(h, s=2)
  b = h.shape[0]
  sizes = h.shape[1:-1]
  c = h.shape[-1] // 2**ndim
  x = h.reshape((b, *sizes, *([2] * ndim), c))
  perm = [0]
  for a in range(ndim):
    perm += [1 + a, 1 + ndim + a]
  x = x.transpose([*perm, 2 * ndim + 1])
  return x.reshape((b, *(2 * n for n in sizes), c))


def group_families_1d(h: Float[Array, "b n c"], *, s: int) -> Float[Array, "b m sc"]:
  """``[b, n, c] -> [b, n/s, s*c]``: the ``s`` children of a node side by side in channels.

  Examples:
    >>> group_families_1d(jnp.arange(6.0).reshape(1, 6, 1), s=3)[0].tolist()
    [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
  """
  return h.reshape((h.shape[0], h.shape[1] // s, s * h.shape[2]))


def ungroup_families_1d(h: Float[Array, "b m sc"], *, s: int) -> Float[Array, "b n c"]:
  """``[b, n, s*c] -> [b, n*s, c]``, the inverse of :func:`group_families_1d`.

  Examples:
    >>> ungroup_families_1d(jnp.arange(6.0).reshape(1, 2, 3), s=3)[0, :, 0].tolist()
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
  """
  return h.reshape((h.shape[0], h.shape[1] * s, h.shape[2] // s))


def sigma_features(sigma: Float[Array, " b"], *, dim: int) -> Float[Array, "b dim"]:
  r"""Fourier features of :math:`\log\sigma`: :math:`[\sin(\omega_k\log\sigma),
  \cos(\omega_k\log\sigma)]`, :math:`\omega_k = 2^{k/2}/4`, :math:`k < \mathrm{dim}/2`.

  Examples:
    >>> sigma_features(jnp.ones(3), dim=4)[0].tolist()
    [0.0, 0.0, 1.0, 1.0]
  """
  freqs = 0.25 * 2.0 ** (jnp.arange(dim // 2) / 2)
  arg = jnp.log(sigma)[:, None] * freqs[None, :]
  return jnp.concatenate([jnp.sin(arg), jnp.cos(arg)], axis=-1)


class PatchMLP(nnx.Module):
  r"""Per-position residual MLP (1x1 convolutions): :math:`h + W_2\,\mathrm{GELU}(W_1
  \mathrm{LN}(h))`.

  Examples:
    >>> m = PatchMLP(8, rngs=nnx.Rngs(0))
    >>> m(jnp.ones((2, 4, 8))).shape
    (2, 4, 8)
  """

  def __init__(self, width: int, *, hidden: int | None = None, rngs: nnx.Rngs):
    hidden = width if hidden is None else hidden
    self.norm = nnx.LayerNorm(width, rngs=rngs)
    self.fc1 = nnx.Linear(width, hidden, rngs=rngs)
    self.fc2 = nnx.Linear(hidden, width, rngs=rngs)

  def __call__(self, h: Array) -> Array:
    return h + self.fc2(nnx.gelu(self.fc1(self.norm(h))))


def _input_features(z: Array, lam: Array, sigma: Array) -> tuple[Array, Array]:
  """``u = lambda Z`` and the bounded input features ``[softmax(u), Z / sqrt(1 + sigma^2)]``."""
  u = lam * z
  c_in = 1.0 / jnp.sqrt(1.0 + sigma * sigma)
  return u, jnp.concatenate([jax.nn.softmax(u, axis=-1), c_in * z], axis=-1)


def _per_example(x, like: Array) -> Array:
  x = jnp.broadcast_to(jnp.asarray(x, like.dtype), like.shape[:1])
  return x.reshape(x.shape + (1,) * (like.ndim - 1))


class BPUNet(nnx.Module):
  r"""The BP-aligned U-Net denoiser of THEORY §7.4 (1-D trees and grids).

  .. math::
    h^{(L)} &= \mathrm{MLP}(u) + e(\sigma), \qquad u = \lambda Z,\ \lambda = \alpha/\sigma^2 \\
    h^{(\ell)} &= \mathrm{PatchMLP}_\ell\big(\mathrm{Conv}_{k=s,\,\mathrm{stride}=s}(h^{(\ell+1)})
      \big), \quad \ell = L-1, \dots, 0 \\
    g^{(0)} &= \mathrm{MLP}(h^{(0)} + e(\sigma)) \\
    g^{(\ell+1)} &= \mathrm{ConvT}_{k=s,\,\mathrm{stride}=s}\big(
      \mathrm{PatchMLP}'_\ell([g^{(\ell)}, h^{(\ell)}])\big) \\
    \mathrm{logits} &= \mathrm{Dense}([g^{(L)}, h^{(L)}]) + u, \qquad f(Z) = \mathrm{softmax}(
      \mathrm{logits}).

  The leaf input features are :math:`\mathrm{softmax}(u)` and :math:`Z/\sqrt{1 + \sigma^2}`
  (bounded at every noise level); the exact log-evidence :math:`u` enters only through the output
  residual. :math:`e(\sigma)` embeds :math:`\log\sigma` and is added at the leaves, the bottleneck
  and every decoder level. Ablation switches (THEORY §7.4): ``skips=False`` drops the long skips,
  ``input_residual=False`` drops :math:`+u`, ``downsample="avg"`` replaces the kernel = stride
  convolution by an average over the family followed by a dense layer.

  Args:
    v: vocabulary (input and output channels).
    s: branching factor (``2**ndim`` on grids).
    num_levels: depth :math:`L` (number of down-samplings; the leaves must number ``s**L``).
    ndim: leaf layout (1: sequences ``[b, n, v]``; 2: images ``[b, H, W, v]``).
    width: channels of every hidden layer.
    hidden: hidden width of the PatchMLPs (default ``width``).
    skips: use the long skips.
    input_residual: add :math:`u` to the output logits.
    downsample: ``"conv"`` (kernel = stride = s) or ``"avg"`` (ablation).
    rngs: parameter RNGs.

  Examples:
    >>> net = BPUNet(v=4, s=2, num_levels=2, width=8, rngs=nnx.Rngs(0))
    >>> jax.jit(net.denoise)(jnp.zeros((2, 4, 4)), jnp.array([0.5, 1.0])).shape
    (2, 4, 4)
  """

  def __init__(
    self,
    *,
    v: int,
    s: int,
    num_levels: int,
    ndim: int = 1,
    width: int = 64,
    hidden: int | None = None,
    skips: bool = True,
    input_residual: bool = True,
    downsample: str = "conv",
    n_features: int = 16,
    rngs: nnx.Rngs,
  ):
    if ndim > 1 and s != 2**ndim:
      raise ValueError(f"on a {ndim}-D grid the branching factor must be s = 2**ndim; got s={s}")
    if downsample not in ("conv", "avg"):
      raise ValueError(f"downsample must be 'conv' or 'avg', got {downsample!r}")
    if num_levels < 1 or s < 2:
      raise ValueError(f"need num_levels >= 1 and s >= 2, got num_levels={num_levels}, s={s}")
    self.v, self.s, self.num_levels, self.ndim = v, s, num_levels, ndim
    self.skips, self.input_residual, self.downsample = skips, input_residual, downsample
    self.n_features = n_features
    self.embed = nnx.Sequential(
      nnx.Linear(n_features, width, rngs=rngs), nnx.gelu, nnx.Linear(width, width, rngs=rngs)
    )
    self.leaf_in = nnx.Linear(2 * v, width, rngs=rngs)
    self.leaf_mlp = PatchMLP(width, hidden=hidden, rngs=rngs)
    down_in = width if downsample == "avg" else s * width
    self.down = nnx.List([nnx.Linear(down_in, width, rngs=rngs) for _ in range(num_levels)])
    self.enc = nnx.List([PatchMLP(width, hidden=hidden, rngs=rngs) for _ in range(num_levels)])
    self.bottleneck = PatchMLP(width, hidden=hidden, rngs=rngs)
    self.cond = nnx.List([nnx.Linear(width, width, rngs=rngs) for _ in range(num_levels + 1)])
    merge_in = 2 * width if skips else width
    self.merge = nnx.List([nnx.Linear(merge_in, width, rngs=rngs) for _ in range(num_levels)])
    self.dec = nnx.List([PatchMLP(width, hidden=hidden, rngs=rngs) for _ in range(num_levels)])
    self.up = nnx.List([nnx.Linear(width, s * width, rngs=rngs) for _ in range(num_levels)])
    self.out = nnx.Linear(2 * width if skips else width, v, rngs=rngs)

  def _group(self, h: Array) -> Array:
    return group_families(h, ndim=self.ndim) if self.ndim > 1 else group_families_1d(h, s=self.s)

  def _ungroup(self, h: Array) -> Array:
    if self.ndim > 1:
      return ungroup_families(h, ndim=self.ndim)
    return ungroup_families_1d(h, s=self.s)

  def _bias(self, e: Array, h: Array) -> Array:
    return e.reshape((e.shape[0],) + (1,) * (h.ndim - 2) + (e.shape[-1],))

  def __call__(
    self, z: Float[Array, "b *leaves v"], sigma: Float[Array, " b"], alpha=1.0
  ) -> Float[Array, "b *leaves v"]:
    """Returns the logits of :math:`P(x_j = \\cdot \\mid Z)`; ``sigma`` is per example."""
    if z.ndim != self.ndim + 2 or z.shape[-1] != self.v:
      raise ValueError(f"z must be [b, *leaves, v={self.v}] with {self.ndim} leaf axes: {z.shape}")
    want = self.s**self.num_levels if self.ndim == 1 else 2**self.num_levels
    if any(n != want for n in z.shape[1:-1]):
      raise ValueError(f"z has leaf shape {z.shape[1:-1]}; this net expects {want} per axis")
    sig = _per_example(sigma, z)
    lam = _per_example(alpha, z) / (sig * sig)
    u, feats = _input_features(z, lam, sig)
    e = self.embed(sigma_features(jnp.broadcast_to(sigma, z.shape[:1]), dim=self.n_features))
    h = self.leaf_mlp(self.leaf_in(feats) + self._bias(self.cond[0](e), z))
    hs = [h]
    for lv in range(self.num_levels):
      if self.downsample == "avg":
        g = self._group(h)
        g = g.reshape((*g.shape[:-1], self.s, -1)).mean(axis=-2)
      else:
        g = self._group(h)
      h = self.enc[lv](self.down[lv](g))
      hs.append(h)
    g = self.bottleneck(h + self._bias(e, h))
    for lv in range(self.num_levels):
      skip = hs[self.num_levels - lv]
      x = jnp.concatenate([g, skip], axis=-1) if self.skips else g
      x = self.merge[lv](x)
      x = self.dec[lv](x + self._bias(self.cond[lv + 1](e), x))
      g = self._ungroup(self.up[lv](x))
    x = jnp.concatenate([g, hs[0]], axis=-1) if self.skips else g
    logits = self.out(x)
    return logits + u if self.input_residual else logits

  def denoise(
    self, z: Float[Array, "b *leaves v"], sigma: Float[Array, " b"], alpha=1.0
  ) -> Float[Array, "b *leaves v"]:
    """:math:`f(Z) = \\mathrm{softmax}(\\mathrm{logits})`, the estimate of :math:`E[X \\mid Z]`."""
    return jax.nn.softmax(self(z, sigma, alpha), axis=-1)


class ConvNetClassifier(nnx.Module):
  r"""Encoder-only classifier: ``L`` blocks of Conv(kernel = stride = s) + PatchMLP, then a
  dense read-out at the root (THEORY §7.4).

  .. math::
    h^{(L)} = \mathrm{PatchMLP}(\mathrm{Dense}(\lambda Z)), \quad h^{(\ell)} =
    \mathrm{PatchMLP}_\ell(\mathrm{Conv}_{k=s,\,\mathrm{stride}=s}(h^{(\ell+1)})), \quad
    \mathrm{logits} = \mathrm{Dense}(\mathrm{LN}(h^{(0)})) \approx \log\pi + \log\beta^{(0)}.

  Args:
    v: vocabulary.
    num_classes: number of classes :math:`n_c`.
    s: branching factor.
    num_levels: depth :math:`L`.
    ndim: leaf layout.
    width: channels.
    hidden: PatchMLP hidden width (default ``width``).
    rngs: parameter RNGs.

  Examples:
    >>> net = ConvNetClassifier(v=4, num_classes=3, s=2, num_levels=2, width=8, rngs=nnx.Rngs(0))
    >>> jax.jit(lambda z, s: net(z, s))(jnp.zeros((5, 4, 4)), jnp.ones(5)).shape
    (5, 3)
  """

  def __init__(
    self,
    *,
    v: int,
    num_classes: int,
    s: int,
    num_levels: int,
    ndim: int = 1,
    width: int = 64,
    hidden: int | None = None,
    rngs: nnx.Rngs,
  ):
    if ndim > 1 and s != 2**ndim:
      raise ValueError(f"on a {ndim}-D grid the branching factor must be s = 2**ndim; got s={s}")
    self.v, self.s, self.num_levels, self.ndim = v, s, num_levels, ndim
    self.leaf_in = nnx.Linear(v, width, rngs=rngs)
    self.leaf_mlp = PatchMLP(width, hidden=hidden, rngs=rngs)
    self.down = nnx.List([nnx.Linear(s * width, width, rngs=rngs) for _ in range(num_levels)])
    self.enc = nnx.List([PatchMLP(width, hidden=hidden, rngs=rngs) for _ in range(num_levels)])
    self.norm = nnx.LayerNorm(width, rngs=rngs)
    self.readout = nnx.Linear(width, num_classes, rngs=rngs)

  def __call__(
    self, z: Float[Array, "b *leaves v"], sigma: Float[Array, " b"], alpha=1.0
  ) -> Float[Array, "b n_c"]:
    """Class logits."""
    if z.ndim != self.ndim + 2 or z.shape[-1] != self.v:
      raise ValueError(f"z must be [b, *leaves, v={self.v}] with {self.ndim} leaf axes: {z.shape}")
    sig = _per_example(sigma, z)
    u = _per_example(alpha, z) / (sig * sig) * z
    h = self.leaf_mlp(self.leaf_in(u))
    for lv in range(self.num_levels):
      g = group_families(h, ndim=self.ndim) if self.ndim > 1 else group_families_1d(h, s=self.s)
      h = self.enc[lv](self.down[lv](g))
    h = h.reshape((h.shape[0], -1, h.shape[-1])).mean(axis=1)  # one position at the root
    return self.readout(self.norm(h))


class ExactBPDenoiser(nnx.Module):
  r"""The exact-BP layer variant of THEORY §7.4 (upper-bound ablation for E1).

  Learnable logits :math:`\theta` for the root prior and for every level table; the forward pass
  normalises them over the root symbols and over the ordered child tuples,

  .. math::
    \log\pi = \mathrm{log\,softmax}(\theta_\pi), \qquad \log T_\ell(b \mid a) =
    \mathrm{log\,softmax}_{b \in [v]^s}(\theta_\ell)_{a, b},

  and runs exact log-domain belief propagation (:func:`mrflax.ghm.belief_propagation`, THEORY
  §7.3) on the GHM :math:`(\pi, T_{0..L-1})` with the Gaussian leaf messages
  :math:`\lambda Z_j`, :math:`\lambda = \alpha/\sigma^2`. Every layer is one upward or downward
  LSE update, so with the true tables the output is exactly the Bayes denoiser
  :math:`D^*_j(Z) = \mathrm{softmax}(\log\gamma^{(L)}_j + \lambda Z_j)`. Parameters:
  :math:`n_c + n_c v^s + (L - 1) v^{s+1}`, independent of the number of leaves. Same contract as
  :class:`BPUNet`: ``net(z, sigma)`` returns logits (here the log posteriors), ``net.denoise``
  their softmax, so it trains with :func:`mrflax.training.ghm.train_denoiser`.

  The logits are initialised i.i.d. :math:`\mathcal N(0, \mathrm{init\_scale}^2)` (a random
  dense GHM), not from any true model; :meth:`set_tables` loads a given :class:`~mrflax.ghm.GHM`
  (zeros become :math:`-\infty` logits: exact for evaluation, not for further training).

  Args:
    v: vocabulary of levels 1..L (input and output channels).
    num_classes: root vocabulary :math:`n_c`.
    s: branching factor (``2**ndim`` on grids).
    num_levels: depth :math:`L`.
    ndim: leaf layout (1: sequences ``[b, n, v]``; 2: images ``[b, H, W, v]``).
    init_scale: standard deviation of the initial logits.
    rngs: parameter RNGs.

  Examples:
    >>> from mrflax import ghm as G
    >>> rhm = G.random_hierarchy_model(jax.random.key(0), v=4, num_classes=2, m=2, s=2,
    ...                                num_levels=2)
    >>> net = ExactBPDenoiser(v=4, num_classes=2, s=2, num_levels=2, rngs=nnx.Rngs(0))
    >>> net.set_tables(rhm)
    >>> z = G.add_noise(jax.random.key(1), G.one_hot(G.sample(jax.random.key(2), rhm, 3), 4),
    ...                 sigma=0.7)
    >>> d = net.denoise(z, jnp.full((3,), 0.7))
    >>> float(jnp.abs(d - G.leaf_posteriors(rhm, z, sigma=0.7)).max()) < 1e-5
    True
  """

  def __init__(
    self,
    *,
    v: int,
    num_classes: int,
    s: int,
    num_levels: int,
    ndim: int = 1,
    init_scale: float = 1.0,
    rngs: nnx.Rngs,
  ):
    if ndim > 1 and s != 2**ndim:
      raise ValueError(f"on a {ndim}-D grid the branching factor must be s = 2**ndim; got s={s}")
    if num_levels < 1 or s < 2 or v < 1 or num_classes < 1:
      raise ValueError(
        f"need num_levels >= 1, s >= 2, v >= 1, num_classes >= 1; got {num_levels=}, {s=}, {v=}"
      )
    self.v, self.num_classes, self.s, self.num_levels, self.ndim = (
      v,
      num_classes,
      s,
      num_levels,
      ndim,
    )
    self.root_logits = nnx.Param(init_scale * jax.random.normal(rngs.params(), (num_classes,)))
    self.kernel_logits = nnx.List(
      [
        nnx.Param(
          init_scale * jax.random.normal(rngs.params(), (num_classes if lv == 0 else v, v**s))
        )
        for lv in range(num_levels)
      ]
    )

  def ghm(self) -> G.GHM:
    r"""The current model :math:`(\mathrm{softmax}(\theta_\pi), \mathrm{softmax}(\theta_\ell))`
    as a :class:`~mrflax.ghm.GHM` (validated only when the parameters are concrete)."""
    root = jax.nn.softmax(self.root_logits[...])
    tables = [jax.nn.softmax(t[...], axis=-1) for t in self.kernel_logits]
    return G.GHM(root, tables, self.s, ndim=self.ndim)

  def set_tables(self, ghm: G.GHM) -> None:
    r"""Sets the logits to :math:`\log\pi` and :math:`\log T_\ell` of ``ghm`` (same sizes)."""
    if (ghm.v, ghm.num_classes, ghm.s, ghm.num_levels, ghm.ndim) != (
      self.v,
      self.num_classes,
      self.s,
      self.num_levels,
      self.ndim,
    ):
      raise ValueError(
        f"{ghm} does not match this net (v={self.v}, num_levels={self.num_levels}, s={self.s})"
      )
    self.root_logits[...] = ghm.log_root.astype(self.root_logits[...].dtype)
    for p, log_t in zip(self.kernel_logits, ghm.log_kernels, strict=True):
      p[...] = log_t.astype(p[...].dtype)

  def __call__(
    self, z: Float[Array, "b *leaves v"], sigma: Float[Array, " b"], alpha=1.0
  ) -> Float[Array, "b *leaves v"]:
    r"""Log posteriors :math:`\log P_\theta(x_j = \cdot \mid Z)` (logits); ``sigma`` per example."""
    if z.ndim != self.ndim + 2 or z.shape[-1] != self.v:
      raise ValueError(f"z must be [b, *leaves, v={self.v}] with {self.ndim} leaf axes: {z.shape}")
    msgs = G.gaussian_leaf_log_messages(
      z, sigma=_per_example(sigma, z), alpha=_per_example(alpha, z)
    )
    return G.belief_propagation(self.ghm(), msgs).log_marginals[-1]

  def denoise(
    self, z: Float[Array, "b *leaves v"], sigma: Float[Array, " b"], alpha=1.0
  ) -> Float[Array, "b *leaves v"]:
    r""":math:`f(Z) = P_\theta(x_j = \cdot \mid Z)`, exact BP under the learned tables."""
    return jax.nn.softmax(self(z, sigma, alpha), axis=-1)
