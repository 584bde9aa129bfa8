"""Issue 6, item 1: average pooling is the Haar projection, in a trained U-Net (THEORY §3.3)."""
