"""Training utilities shared by the pipelines (early stopping, batching)."""
