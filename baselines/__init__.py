"""Classical segmentation methods; each is registered by an entry point in pyproject.toml."""
