"""Compression steps: each is ``fn(model, Config) -> new model``; TF-MOT is imported only in this package."""
