"""A slow, independent per-user formulation of the ranking metrics (numpy, one user at a time).

Written separately from ``cdr.metrics.ranking``: a full lexicographic sort per user (score
descending, then item index ascending), explicit loops over ranks.
"""

from __future__ import annotations

import math

import numpy as np


def reference_metrics(scores: np.ndarray, relevance: np.ndarray, k: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"ndcg": [], "precision": [], "recall": [], "hit": []}
    num_items = scores.shape[1]
    for s, r in zip(scores, relevance, strict=True):
        relevant = [i for i in range(num_items) if r[i] > 0]
        if not relevant:
            for values in out.values():
                values.append(math.nan)
            continue
        # np.lexsort sorts by the last key first: -score, then item index.
        order = np.lexsort((np.arange(num_items), -s.astype(np.float64)))
        dcg = 0.0
        hits = 0
        for rank, item in enumerate(order[:k], start=1):
            if s[item] == -math.inf:
                continue
            dcg += float(r[item]) / math.log2(rank + 1)
            hits += int(r[item] > 0)
        ideal = sorted((float(x) for x in r), reverse=True)[:k]
        idcg = sum(g / math.log2(rank + 1) for rank, g in enumerate(ideal, start=1))
        out["ndcg"].append(dcg / idcg)
        out["precision"].append(hits / k)
        out["recall"].append(hits / len(relevant))
        out["hit"].append(float(hits > 0))
    return out
