"""Typed experiment configs (attrs), TOML <-> config conversion (cattrs), CLI overrides."""

from cdr.config.experiment import (
    EncodersConfig,
    EvaluationConfig,
    ExperimentConfig,
    SplitConfig,
    TrainerConfig,
)
from cdr.config.loading import (
    apply_overrides,
    config_to_dict,
    config_to_toml,
    load_experiment,
    make_converter,
    structure_experiment,
)

__all__ = [
    "EncodersConfig",
    "EvaluationConfig",
    "ExperimentConfig",
    "SplitConfig",
    "TrainerConfig",
    "apply_overrides",
    "config_to_dict",
    "config_to_toml",
    "load_experiment",
    "make_converter",
    "structure_experiment",
]
