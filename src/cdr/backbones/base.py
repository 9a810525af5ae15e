"""``BackboneBase``: the neutral defaults of the GraphBackbone interface.

A backbone subclasses it and overrides only the hooks it uses: ``pair`` (the other domain's
backbone, once), ``prepare`` (the training graph, once), ``set_modalities`` (item features,
when ``traits`` names encoders), ``set_epoch`` (every training epoch) and
``regularization`` (its own extra loss on the training graph, added to BPR by the training
step).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cdr.interfaces import BackboneTraits, Graph, GraphBackbone, ModalityFeatures


class BackboneBase(nn.Module):
    """Base of the built-in graph backbones; see ``cdr.interfaces.GraphBackbone``."""

    traits: BackboneTraits = BackboneTraits()

    def pair(self, other: GraphBackbone) -> None:
        """Called once as ``target.pair(source)`` when both domains have a backbone: a
        cross-domain backbone ties its domain-shared parameters to ``other``'s; no-op here."""

    def prepare(self, graph: Graph) -> None:
        """Called once with the training graph before training."""

    def set_modalities(self, modalities: ModalityFeatures) -> None:
        """Item features of the modalities ``traits`` names (not called otherwise)."""

    def set_epoch(self, epoch: int) -> None:
        """Called at the start of every training epoch (0-based)."""

    def represent(self, graph: Graph) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def regularization(self, graph: Graph, users: Tensor, items: Tensor) -> Tensor:
        """No extra loss: a zero on the parameters' device."""
        parameter = next(self.parameters(), None)
        if parameter is None:
            return users.new_zeros((), dtype=torch.float32)
        return parameter.new_zeros(())
