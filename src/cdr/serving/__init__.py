"""Serving a trained model: self-contained bundles and batched top-K recommendation."""
