"""The experiment config: one frozen attrs class per concern, nested.

Component sections (dataset, encoders, generator, backbone, aligner, scorer) are typed by
their group's base class; the concrete class is chosen by ``kind`` through the registry,
so plugin configs take part in loading and validation like built-ins.
"""

from __future__ import annotations

import attrs

from cdr.components import (
    AlignerConfig,
    BackboneConfig,
    DatasetConfig,
    EncoderConfig,
    GeneratorConfig,
    ScorerConfig,
)
from cdr.config.validators import (
    all_positive,
    fractions,
    in_range,
    non_negative,
    one_of,
    plain_name,
    positive,
)


@attrs.frozen
class SplitConfig:
    """How users/items are held out.

    cold-start (MuSiC/PTUPCDR): ``beta`` of the overlapping users become test cold-start
    users, ``val_fraction`` of the remaining overlapping users validate, side users train
    stage 1; ``unseen_item_fraction`` > 0 also holds out target items (dual cold-start).
    inductive (MICRec/INMO): ``unseen_user_fraction`` / ``unseen_item_fraction`` of users and
    items are unseen in training; the other users' interactions split by ``ratios``.
    ``kind`` names the split of a registered protocol (``cdr.protocols``); which kinds
    exist is checked against the registry when the run is planned.
    """

    kind: str = attrs.field(default="cold-start", validator=plain_name)
    beta: float = attrs.field(
        default=0.2, validator=in_range(0.0, 1.0, low_open=True, high_open=True)
    )
    val_fraction: float = attrs.field(default=0.1, validator=in_range(0.0, 1.0, high_open=True))
    unseen_user_fraction: float = attrs.field(
        default=0.2, validator=in_range(0.0, 1.0, high_open=True)
    )
    unseen_item_fraction: float = attrs.field(
        default=0.0, validator=in_range(0.0, 1.0, high_open=True)
    )
    ratios: tuple[float, float, float] = attrs.field(default=(0.8, 0.1, 0.1), validator=fractions)
    seed: int = attrs.field(default=0, validator=non_negative)


@attrs.frozen
class EncodersConfig:
    """Item-content and user-content encoders (MuSiC: MLLM items, LLM users)."""

    item: EncoderConfig
    user: EncoderConfig


@attrs.frozen
class TrainerConfig:
    """Optimisation shared by all pipelines; per-model knobs live in component configs.

    steps_per_epoch: optimiser steps of a graph-backbone epoch (0 = one pass over the larger
    domain's training edges; MICRec's paper uses 100 batches). stage0_epochs /
    stage1_epochs / stage2_epochs: the cold-start stages' own budgets (0 = ``epochs``): the
    projection heads (stage 0) see many ratings per epoch, the generator stages few users.
    stage0_lr: stage 0's own learning rate (0 = ``lr``): the heads fitted on ratings form the
    target space every generator is compared in, and at lr 1e-4 they are still improving
    after 400 epochs on ml-100k-genres, so a study tuning ``lr`` keeps stage 0 fixed.

    ``stage_epochs(n)`` is the budget of stage n, ``stage_lr(n)`` its learning rate."""

    epochs: int = attrs.field(default=50, validator=positive)
    batch_size: int = attrs.field(default=256, validator=positive)
    lr: float = attrs.field(default=1e-3, validator=positive)
    weight_decay: float = attrs.field(default=0.0, validator=non_negative)
    patience: int = attrs.field(default=5, validator=non_negative)
    eval_every: int = attrs.field(default=1, validator=positive)
    dim: int = attrs.field(default=32, validator=positive)
    steps_per_epoch: int = attrs.field(default=0, validator=non_negative)
    stage0_epochs: int = attrs.field(default=0, validator=non_negative)
    stage1_epochs: int = attrs.field(default=0, validator=non_negative)
    stage2_epochs: int = attrs.field(default=0, validator=non_negative)
    stage0_lr: float = attrs.field(default=0.0, validator=non_negative)

    def stage_epochs(self, stage: int) -> int:
        own = (self.stage0_epochs, self.stage1_epochs, self.stage2_epochs)[stage]
        return own or self.epochs

    def stage_lr(self, stage: int) -> float:
        return (self.stage0_lr if stage == 0 else 0.0) or self.lr


@attrs.frozen
class HeadsConfig:
    """The projection heads of the cold-start protocol's feature module (MuSiC 3.2):
    activation tanh (MuSiC), relu, softmax (its Fig. 4 study) or none; hidden width;
    dropout while fitting them (stage 0)."""

    activation: str = attrs.field(
        default="tanh", validator=one_of(("tanh", "relu", "softmax", "none"))
    )
    hidden: int = attrs.field(default=128, validator=positive)
    dropout: float = attrs.field(default=0.1, validator=in_range(0.0, 1.0, high_open=True))


@attrs.frozen
class EvaluationConfig:
    """Cut-offs for ranking metrics."""

    k: int = attrs.field(default=20, validator=positive)
    ks: tuple[int, ...] = attrs.field(default=(5, 10, 20, 50, 100), validator=all_positive)
    batch_size: int = attrs.field(default=1024, validator=positive)


@attrs.frozen
class ExperimentConfig:
    """Everything that defines one run; saved resolved as ``config.toml`` in the run dir."""

    dataset: DatasetConfig
    encoders: EncodersConfig
    generator: GeneratorConfig
    backbone: BackboneConfig
    aligner: AlignerConfig
    scorer: ScorerConfig
    split: SplitConfig = SplitConfig()
    trainer: TrainerConfig = TrainerConfig()
    heads: HeadsConfig = HeadsConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    name: str = attrs.field(default="experiment", validator=plain_name)
    seed: int = attrs.field(default=0, validator=non_negative)
    device: str = "auto"
    output_dir: str = "runs"
