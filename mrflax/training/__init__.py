"""Training loops (the only impure code besides experiments): optax + Flax NNX drivers."""
