"""Flax NNX modules: the VDVAE-exact HVAE, weight-shared HVAEs, U-Nets and BP-aligned networks."""
