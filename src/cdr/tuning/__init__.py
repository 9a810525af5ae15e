"""Hyper-parameter studies (``cdr tune``): search spaces in TOML (``cdr.tuning.space``) and
Optuna studies whose trials are ordinary cdr runs (``cdr.tuning.study``, which imports
Optuna: import it only when tuning)."""
