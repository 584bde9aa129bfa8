"""mrflax experiments: configs (ml_collections) and entry points; the only code that reads them."""
