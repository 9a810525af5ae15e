"""Evaluation protocols: full ranking, rating errors, inductive slices, significance, reports."""
