"""mrflax: multi-resolution U-Nets, hierarchical VAEs and belief propagation in JAX."""

__version__ = "0.1.0"
