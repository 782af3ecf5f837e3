"""Compression steps: each is fn(model, Config) -> new model."""
