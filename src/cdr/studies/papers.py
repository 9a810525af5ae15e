"""The papers' tables as ``TableSpec``s, on ml-100k-genres by default.

``music``: MuSiC Table 2 (methods x beta), Table 3 (ablations), Table 4 (dual cold-start),
Fig. 3 (T) and Fig. 4 (activation) as tables with a figure each.
``micrec``: MICRec Table 2 (methods, per domain), Table 3 (ablations), Table 4 (low-degree
items) and the NDCG@N figure. ``compose``: models neither paper has (a generator on a graph
backbone) next to MuSiC and a MICRec-style backbone, on the cold-start protocol.

Budgets are long enough that no stage's best epoch falls in the last 10% of its budget
(the tables check it and say so under each table); a MuSiC cell takes 3-5 minutes on one
CPU thread, a MICRec cell 10 s to 15 minutes (UniCDR and PPA are the slow ones).
"""

from __future__ import annotations

import attrs

from cdr.errors import ConfigError
from cdr.evaluation.inductive import NDCG_CURVE_KS
from cdr.studies.tables import TableSpec

BETAS = (
    ("beta=0.2", ("split.beta=0.2",)),
    ("beta=0.5", ("split.beta=0.5",)),
    ("beta=0.8", ("split.beta=0.8",)),
)

MUSIC_BASE = (
    "dataset.kind=ml-100k-genres",
    "split.kind=cold-start",
    "encoders.user.kind=id",
    "backbone.kind=none",
    "aligner.kind=none",
    # each stage its own budget, early-stopped on validation users with patience 20: on
    # ml-100k-genres (beta 0.2, seeds 0-1) stage 0's best epochs were 190 and 269, stage 2's
    # 94 and 65 (with 15 epochs each, the old budget, both stopped at their last epoch and
    # MuSiC's MAE stayed above the item mean's). Stage 0 (the heads fitted on ratings: the
    # space every method is compared in) learns at its own fixed rate: tuning trials at
    # lr 1e-4 / 1e-5 still improved it at epoch 397-400 of 400, and at lr 1e-3 a seed took
    # 389, so its budget is 600. Stage 2 at lr 1e-4 ran EMCDR, SSCDR, LACDR and CATN to 600
    # of 600; given 5000, EMCDR's best epoch was 1174 (seed 0, beta 0.2), hence 2000.
    "trainer.stage0_epochs=600",
    "trainer.stage0_lr=0.001",
    "trainer.stage1_epochs=100",
    "trainer.stage2_epochs=2000",
    "trainer.patience=20",
)
MUSIC = "generator.kind=ddpm", "encoders.item.kind=plm"
MUSIC_METHODS = (
    ("MuSiC", MUSIC),
    ("TGT", ("generator.kind=tgt", "encoders.item.kind=id")),
    ("CMF", ("generator.kind=cmf", "encoders.item.kind=id")),
    ("EMCDR", ("generator.kind=mapping", "encoders.item.kind=id")),
    ("PTUPCDR", ("generator.kind=ptupcdr", "encoders.item.kind=id")),
    ("DiffCDR", ("generator.kind=diffcdr", "encoders.item.kind=id")),
    ("SSCDR", ("generator.kind=sscdr", "encoders.item.kind=id")),
    ("LACDR", ("generator.kind=lacdr", "encoders.item.kind=id")),
    ("CATN", ("generator.kind=catn", "encoders.item.kind=id")),
    ("OmniMatch", ("generator.kind=omnimatch", "encoders.item.kind=id")),
)
#: the review-based baselines read the users' review text where a dataset has reviews
REVIEW_METHODS = ("CATN", "OmniMatch")
LLM_USERS = (
    "encoders.user.kind=llm",
    "encoders.user.max_length=128",
    "encoders.user.max_reviews=4",
)
#: the paper's sensitivity studies: T (Fig. 3) and the heads' activation (Fig. 4)
DIFFUSION_STEPS = (2, 5, 10, 20, 50)
ACTIVATIONS = ("tanh", "relu", "softmax")
#: MuSiC's NDCG column ranks each test user's own rated items (``rated_ndcg@20``, ~0.85 in
#: the paper); full-catalogue NDCG@20 is shown as an extra column
RATING = ("mae", "rmse", "rated_ndcg@20", "ndcg@20")

MICREC_BASE = (
    "dataset.kind=ml-100k-genres",
    "split.kind=inductive",
    "split.unseen_item_fraction=0.2",
    "generator.kind=none",
    # LightGCN and NGCF still improve at epoch 30 of 30 at lr 0.005: a budget none of them
    # reaches the last 10% of (the tables check it)
    "trainer.epochs=200",
    "trainer.patience=10",
    "trainer.batch_size=2048",
    "trainer.lr=0.005",
    "trainer.dim=64",
    f"evaluation.ks=[{', '.join(map(str, NDCG_CURVE_KS))}]",
)
MICREC = ("backbone.kind=inmo", "aligner.kind=infonce")
#: MICRec Table 2's rows in the paper's order (its 12 baselines, then MICRec), plus MF-BPR
MICREC_BASELINES = (
    ("NeuMF", "neumf"),
    ("Mult-VAE", "multvae"),
    ("NGCF", "ngcf"),
    ("IMC-GAE", "imcgae"),
    ("IDCF", "idcf"),
    ("LightGCN", "lightgcn"),
    ("UniCDR", "unicdr"),
    ("PPA", "ppa"),
    ("SGL", "sgl"),
    ("XSimGCL", "xsimgcl"),
    ("AlphaRec", "alpharec"),
)
MICREC_METHODS = (
    *((label, (f"backbone.kind={kind}", "aligner.kind=none")) for label, kind in MICREC_BASELINES),
    ("INMO", ("backbone.kind=inmo", "aligner.kind=none", "backbone.multimodal=false")),
    ("MF-BPR", ("backbone.kind=mf", "aligner.kind=none")),
    ("MICRec", MICREC),
)
#: MICRec Table 3's ablations (its first row is MICRec itself)
MICREC_ABLATIONS = (
    ("w/o MM", (*MICREC, "backbone.multimodal=false")),
    ("w/o CD", ("backbone.kind=inmo", "aligner.kind=none")),
    ("w/o VIS", (*MICREC, "backbone.image=false")),
    ("w/o TXT", (*MICREC, "backbone.text=false")),
)
INDUCTIVE = (("inductive", ()),)


def _domains(metrics: tuple[str, ...], slice_: str = "") -> tuple[str, ...]:
    middle = f"{slice_}/" if slice_ else ""
    return tuple(f"{d}/{middle}{m}" for d in ("source", "target") for m in metrics)


TABLES: dict[str, tuple[TableSpec, ...]] = {
    "music": (
        TableSpec(
            "table2",
            "MuSiC Table 2: cold-start users, by share beta of test users",
            MUSIC_METHODS,
            BETAS,
            RATING,
            MUSIC_BASE,
        ),
        TableSpec(
            "table3",
            "MuSiC Table 3: ablations (beta = 0.2)",
            (
                ("MuSiC", MUSIC),
                ("w/o side", (*MUSIC, "generator.side_users=false")),
                ("w/o diffusion", ("generator.kind=identity", "encoders.item.kind=plm")),
                ("w/o MLLM", ("generator.kind=ddpm", "encoders.item.kind=id")),
            ),
            BETAS[:1],
            RATING,
            MUSIC_BASE,
        ),
        # the paper's Table 4: beta = 50%, every baseline but TGT; each method keeps the
        # settings its Table 2 study chose (tuned once, as for beta = 0.5 / 0.8 there)
        TableSpec(
            "table4",
            "MuSiC Table 4: dual cold-start (cold users x 20% unseen items, beta = 0.5)",
            tuple((label, row) for label, row in MUSIC_METHODS if label != "TGT"),
            (("dual", ("split.beta=0.5", "split.unseen_item_fraction=0.2")),),
            ("dual_mae", "dual_rmse", "dual_rated_ndcg@20", "dual_ndcg@20"),
            MUSIC_BASE,
            tuned_from="table2",
        ),
        TableSpec(
            "fig3",
            "MuSiC Fig. 3: diffusion steps T",
            tuple((f"T={t}", (*MUSIC, f"generator.steps={t}")) for t in DIFFUSION_STEPS),
            BETAS,
            ("rmse", "rated_ndcg@20"),
            MUSIC_BASE,
            tuned_from="table2:MuSiC",
        ),
        TableSpec(
            "fig4",
            "MuSiC Fig. 4: activation of the feature heads",
            tuple((name, (*MUSIC, f"heads.activation={name}")) for name in ACTIVATIONS),
            BETAS,
            ("rmse",),
            MUSIC_BASE,
            tuned_from="table2:MuSiC",
        ),
    ),
    "micrec": (
        TableSpec(
            "table2",
            "MICRec Table 2: inductive recommendation, per domain",
            MICREC_METHODS,
            INDUCTIVE,
            _domains(("precision@20", "recall@20", "ndcg@20")),
            MICREC_BASE,
        ),
        TableSpec(
            "table3",
            "MICRec Table 3: ablations",
            (
                ("MICRec", MICREC),
                *MICREC_ABLATIONS,
            ),
            INDUCTIVE,
            _domains(("ndcg@20",)),
            MICREC_BASE,
        ),
        TableSpec(
            "table4",
            "MICRec Table 4: low-degree (bottom-25%) items",
            MICREC_METHODS,
            INDUCTIVE,
            _domains(("recall@20", "ndcg@20"), "tail_items"),
            MICREC_BASE,
        ),
        *(
            TableSpec(
                f"slices_{domain}",
                f"Inductive slices, {domain} domain: NDCG@20 of seen / unseen users on all / "
                "seen / unseen items",
                (*MICREC_METHODS, *MICREC_ABLATIONS),
                INDUCTIVE,
                tuple(
                    f"{domain}/{users}-users/{items}-items/ndcg@20"
                    for users in ("seen", "unseen")
                    for items in ("all", "seen", "unseen")
                ),
                MICREC_BASE,
            )
            for domain in ("source", "target")
        ),
    ),
    "compose": (
        TableSpec(
            "compose",
            "Compositions on the cold-start protocol (beta = 0.2)",
            (
                ("MuSiC (ddpm, no graph)", MUSIC),
                (
                    "ddpm + inmo + infonce",
                    (
                        "generator.kind=ddpm",
                        "backbone.kind=inmo",
                        "aligner.kind=infonce",
                        "encoders.item.kind=id",
                    ),
                ),
                (
                    "identity + inmo + infonce",
                    (
                        "generator.kind=identity",
                        "backbone.kind=inmo",
                        "aligner.kind=infonce",
                        "encoders.item.kind=id",
                    ),
                ),
                (
                    "mapping + inmo + infonce",
                    (
                        "generator.kind=mapping",
                        "backbone.kind=inmo",
                        "aligner.kind=infonce",
                        "encoders.item.kind=id",
                    ),
                ),
            ),
            BETAS[:1],
            RATING,
            (
                "dataset.kind=ml-100k-genres",
                "split.kind=cold-start",
                "encoders.user.kind=id",
                "trainer.epochs=15",
                "trainer.dim=64",
            ),
        ),
        TableSpec(
            "compose-inductive",
            "Compositions on the inductive protocol (target domain; 20% unseen users/items)",
            (
                ("MICRec (no generator)", MICREC),
                ("ddpm + inmo + infonce", ("generator.kind=ddpm", *MICREC)),
                ("mapping + inmo + infonce", ("generator.kind=mapping", *MICREC)),
            ),
            INDUCTIVE,
            (
                "target/all-users/all-items/ndcg@20",
                "target/unseen-users/all-items/ndcg@20",
                "generated/target/all-users/all-items/ndcg@20",
                "generated/target/unseen-users/all-items/ndcg@20",
            ),
            MICREC_BASE,
        ),
    ),
}


@attrs.frozen
class DatasetVariant:
    """A paper's tables on another dataset: ``base`` replaces the tables' ``dataset.*``
    overrides; ``substitutions`` replace an override (in bases and rows) by others."""

    name: str
    base: tuple[str, ...]
    substitutions: tuple[tuple[str, tuple[str, ...]], ...] = ()
    row_extra: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def apply(self, spec: TableSpec) -> TableSpec:
        subs, extra = dict(self.substitutions), dict(self.row_extra)

        def swap(overrides: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(new for o in overrides for new in subs.get(o, (o,)))

        base = (*self.base, *(o for o in swap(spec.base) if not o.startswith("dataset.")))
        rows = tuple((label, (*swap(row), *extra.get(label, ()))) for label, row in spec.rows)
        return attrs.evolve(spec, base=base, rows=rows)


#: the datasets ``cdr reproduce PAPER --dataset NAME`` runs on (the first is the default).
#: ``synthetic`` for MuSiC: the embedded planted dataset with Task 1's proportions (many
#: side users; items with text and drawn images; users with reviews), MuSiC's features from
#: the real encoders (``llm`` over users' reviews, ``fusion`` = image + LLM text for items);
#: for MICRec: the default synthetic set in the inductive split, items with text and
#: images, so that w/o VIS and w/o TXT differ from MICRec.
DATASETS: dict[str, tuple[DatasetVariant, ...]] = {
    "music": (
        DatasetVariant("ml-100k-genres", ("dataset.kind=ml-100k-genres",)),
        DatasetVariant(
            "synthetic",
            ("dataset.kind=synthetic", "dataset.size=task1-small"),
            (
                (
                    "encoders.item.kind=plm",
                    # SmolLM2 takes ~1.7 CPU s per user at 512 tokens x 10 reviews
                    ("encoders.item.kind=fusion", *LLM_USERS),
                ),
            ),
            tuple((label, LLM_USERS) for label in REVIEW_METHODS),
        ),
    ),
    "micrec": (
        DatasetVariant("ml-100k-genres", ("dataset.kind=ml-100k-genres",)),
        DatasetVariant("synthetic", ("dataset.kind=synthetic", "dataset.size=default")),
    ),
    "compose": (DatasetVariant("ml-100k-genres", ("dataset.kind=ml-100k-genres",)),),
}


def tables_for(paper: str, dataset: str | None = None) -> tuple[TableSpec, ...]:
    """``paper``'s tables on ``dataset`` (None: the paper's default dataset)."""
    if paper not in TABLES:
        raise ConfigError(f"paper: {paper!r} is not one of {', '.join(TABLES)}")
    if paper not in DATASETS and dataset is None:
        return TABLES[paper]  # a paper with only its own tables' dataset
    variants = {v.name: v for v in DATASETS.get(paper, ())}
    name = dataset or DATASETS[paper][0].name
    if name not in variants:
        raise ConfigError(f"--dataset: {name!r} is not one of {', '.join(variants)} for {paper}")
    return tuple(variants[name].apply(spec) for spec in TABLES[paper])
