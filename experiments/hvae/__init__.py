"""Training, evaluating and sampling HVAEs from a config (the glue between configs and mrflax)."""
