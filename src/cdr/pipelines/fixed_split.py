"""The fixed-split single-domain protocol: the split is given as files, never redrawn.

``split.kind = "fixed"`` with a graph backbone and no generator runs the stages of the
``single-domain`` protocol (the backbone trains on the train file's edges, early-stops on
validation NDCG@k with the training edges masked, and is tested once by full ranking with
the training and validation edges masked) on the split that RecBole benchmark files give
(``dataset.kind = "recbole-benchmark"``; see ``cdr.data.recbole_split``).
"""

from __future__ import annotations

from cdr.data.recbole_split import fixed_split
from cdr.pipelines import single_domain
from cdr.protocols import ProtocolSpec

protocol = ProtocolSpec(
    name="fixed-single-domain",
    split_kind="fixed",
    split=fixed_split,
    generator="no",
    backbone="yes",
    stages=single_domain.protocol.stages,
    summary="the single-domain stages on a split given as RecBole benchmark files",
    masked_at_validation=single_domain.protocol.masked_at_validation,
    masked_at_test=single_domain.protocol.masked_at_test,
)
