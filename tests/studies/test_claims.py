from __future__ import annotations

from cdr.studies.claims import music_claims, render_claims
from cdr.studies.tables import TableResult, TableSpec

BETAS = (("beta=0.2", ("split.beta=0.2",)), ("beta=0.5", ("split.beta=0.5",)))
METRICS = ("mae", "rmse", "rated_ndcg@20")


def _table(name: str, columns: tuple, cells: dict[tuple[str, str], dict]) -> TableResult:
    rows = tuple(dict.fromkeys(r for r, _ in cells))
    spec = TableSpec(name, name, tuple((r, ()) for r in rows), columns, METRICS)
    values = {key: {m: list(v) for m, v in metrics.items()} for key, metrics in cells.items()}
    return TableResult(spec, values, {})


def _results() -> dict[str, TableResult]:
    # MuSiC beats both baselines at beta 0.2 on every metric; at 0.5 PTUPCDR has the lower MAE
    table2 = _table(
        "table2",
        BETAS,
        {
            ("MuSiC", "beta=0.2"): {
                "mae": [0.70, 0.72], "rmse": [0.90, 0.92], "rated_ndcg@20": [0.90, 0.90],
                "ref/item_mean/mae": [0.80, 0.80], "ref/global_mean/mae": [0.95, 0.95],
                "ref/item_mean/rmse": [1.00, 1.00], "ref/item_mean/rated_ndcg@20": [0.95, 0.95],
            },
            ("MuSiC", "beta=0.5"): {
                "mae": [0.80, 0.80], "rmse": [1.00, 1.00], "rated_ndcg@20": [0.88, 0.88],
                "ref/item_mean/mae": [0.85, 0.85],
            },
            ("PTUPCDR", "beta=0.2"): {"mae": [0.75], "rmse": [0.95], "rated_ndcg@20": [0.85]},
            ("PTUPCDR", "beta=0.5"): {"mae": [0.78], "rmse": [1.02], "rated_ndcg@20": [0.80]},
            ("CMF", "beta=0.2"): {"mae": [0.90], "rmse": [1.10], "rated_ndcg@20": [0.80]},
            ("CMF", "beta=0.5"): {"mae": [0.95], "rmse": [1.20], "rated_ndcg@20": [0.70]},
        },
    )
    table3 = _table(
        "table3",
        BETAS[:1],
        {
            ("MuSiC", "beta=0.2"): {"mae": [0.71], "rmse": [0.91], "rated_ndcg@20": [0.90]},
            ("w/o side", "beta=0.2"): {"mae": [0.73], "rmse": [0.93], "rated_ndcg@20": [0.91]},
            # w/o MLLM: better than CMF, worse than PTUPCDR's 0.75 MAE but not its RMSE
            ("w/o MLLM", "beta=0.2"): {"mae": [0.80], "rmse": [0.94], "rated_ndcg@20": [0.8]},
        },
    )
    dual = (("dual", ("split.beta=0.5", "split.unseen_item_fraction=0.2")),)
    table4 = _table(
        "table4",
        dual,
        {
            ("MuSiC", "dual"): {
                "dual_mae": [0.90], "dual_rmse": [1.10],
                "ref/global_mean/dual_mae": [0.85], "ref/global_mean/dual_rmse": [1.20],
            },
            ("PTUPCDR", "dual"): {"dual_mae": [1.20], "dual_rmse": [1.40]},
        },
    )
    table4 = TableResult(
        TableSpec("table4", "t4", table4.spec.rows, dual, ("dual_mae", "dual_rmse")),
        table4.values,
        {},
    )
    return {"table2": table2, "table3": table3, "table4": table4}


def test_each_claim_is_judged_on_the_cells_it_names() -> None:
    claims = {c.text.split(" (")[0]: c for c in music_claims(_results())}
    # 6 cells (2 betas x 3 metrics); MuSiC loses beta=0.5 MAE (0.80 vs PTUPCDR 0.78)
    assert claims["MuSiC beats every baseline"].verdict == "partly (5 of 6)"
    # vs the best reference: beta=0.2 mae (0.71 < 0.80), rmse (0.91 < 1.00), rated_ndcg
    # (0.90 < 0.95: lost), beta=0.5 mae (0.80 < 0.85); 0.5's other metrics have no reference
    refs = claims["MuSiC beats the best reference predictor"]
    assert refs.verdict == "partly (3 of 4)"
    assert "reference: item mean" in refs.comparisons[0].worse
    # side users: MAE and RMSE better, rated NDCG 0.90 < 0.91
    assert claims["side users help"].verdict == "partly (2 of 3)"
    assert claims["the diffusion module helps"].verdict == "not measured"  # no such row
    # w/o MLLM vs 2 baselines x 2 metrics: beats CMF on both, PTUPCDR on RMSE only
    assert claims["w/o MLLM beats the rating-only baselines on the same features"].verdict == (
        "partly (3 of 4)"
    )
    assert claims["MuSiC beats every baseline on dual cold-start"].verdict == "holds (2 of 2)"
    # vs the global mean on the unseen items: MAE 0.90 > 0.85 lost, RMSE 1.10 < 1.20 won
    dual_refs = claims["MuSiC beats the best reference predictor on dual cold-start"]
    assert dual_refs.verdict == "partly (1 of 2)"
    # lead on cold items: MAE (1.20 - 0.90) / 1.20 = 25% vs beta=0.5's (0.78 - 0.80) / 0.78
    # = -2.6%; RMSE 21.4% vs (1.02 - 1.00) / 1.02 = 2.0%
    lead = claims["MuSiC's lead is larger on cold items"]
    assert lead.verdict == "holds (2 of 2)"
    assert round(lead.comparisons[0].better_mean, 2) == 25.0
    assert round(lead.comparisons[0].worse_mean, 2) == -2.56
    assert "beta=0.5" in lead.comparisons[0].worse


def test_a_gap_inside_the_seed_noise_is_marked() -> None:
    claims = {c.text.split(" (")[0]: c for c in music_claims(_results())}
    best = claims["MuSiC beats every baseline"].comparisons
    # beta=0.2 MAE: MuSiC 0.71 ± 0.01 vs PTUPCDR 0.75: outside; all other gaps are too
    assert not any(c.within_noise for c in best)
    results = _results()
    results["table2"].values[("PTUPCDR", "beta=0.2")]["mae"] = [0.705, 0.725]
    claims = {c.text.split(" (")[0]: c for c in music_claims(results)}
    first = claims["MuSiC beats every baseline"].comparisons[0]
    assert first.within_noise and first.text().endswith("~")
    assert "1 within one std" in claims["MuSiC beats every baseline"].verdict


def test_claims_render_as_a_markdown_table_with_their_numbers() -> None:
    text = render_claims(music_claims(_results()))
    assert text.startswith("### The paper's claims, checked on these tables")
    line = next(x for x in text.splitlines() if x.startswith("| side users help"))
    assert "beta=0.2 mae: MuSiC 0.7100 < w/o side 0.7300" in line
    assert "beta=0.2 rated_ndcg@20: MuSiC 0.9000 <= w/o side 0.9100" in line
    assert "| not measured | - |" in text


def test_nothing_is_measured_without_the_tables() -> None:
    assert all(c.verdict == "not measured" for c in music_claims({}))


def test_the_figures_claims_compare_moderate_t_and_the_activations() -> None:
    beta = BETAS[:1]
    fig3 = _table(
        "fig3",
        beta,
        {
            ("T=2", "beta=0.2"): {"rmse": [1.00], "rated_ndcg@20": [0.90]},
            ("T=5", "beta=0.2"): {"rmse": [0.97], "rated_ndcg@20": [0.91]},
            ("T=10", "beta=0.2"): {"rmse": [0.95], "rated_ndcg@20": [0.89]},
            ("T=20", "beta=0.2"): {"rmse": [0.96], "rated_ndcg@20": [0.88]},
            ("T=50", "beta=0.2"): {"rmse": [0.99], "rated_ndcg@20": [0.92]},
        },
    )
    fig4 = _table(
        "fig4",
        beta,
        {
            ("tanh", "beta=0.2"): {"rmse": [0.95]},
            ("relu", "beta=0.2"): {"rmse": [0.94]},
            ("softmax", "beta=0.2"): {"rmse": [1.10]},
        },
    )
    claims = {c.text.split(" (")[0]: c for c in music_claims({"fig3": fig3, "fig4": fig4})}
    moderate = claims["a moderate T is best"]
    # RMSE: T=10's 0.95 < T=50's 0.99 (the better extreme); NDCG: T=5's 0.91 < T=50's 0.92
    assert moderate.verdict == "partly (1 of 2)"
    assert moderate.comparisons[0].better == "T=10" and moderate.comparisons[0].worse == "T=50"
    assert moderate.comparisons[1].better == "T=5" and moderate.comparisons[1].worse == "T=50"
    # tanh 0.95 vs relu 0.94: lost; relu 0.94 vs softmax 1.10: won
    assert claims["tanh beats ReLU and ReLU beats softmax"].verdict == "partly (1 of 2)"
