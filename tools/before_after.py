"""Before/after tables of a protocol change, read from the runs' own ``metrics.json``.

    python tools/before_after.py --dataset synthetic \
        --before /path/seed0/cells /path/seed1/cells /path/seed2/cells \
        --after results/micrec/synthetic/cells --out results/micrec/before-after/synthetic.md

Every ``--before``/``--after`` directory holds ``cdr reproduce`` cells named
``<table>_<row>_<column>-seed<N>``; a (row, seed) found in several tables (MICRec is in
Tables 2 and 3) is counted once. Each cell is one seed; the tables show mean ± population
std over the seeds found, with their count, for the MICRec rows the issue names (MICRec,
INMO, LightGCN, MF-BPR and the ablations), P/R/NDCG@20 per domain and NDCG@20 per
inductive slice where the runs reported it, and the popularity reference of each side's
splits where its runs recorded one. Nothing is copied by hand.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

from cdr.studies.cells import Cell

ROWS = ("MICRec", "w/o MM", "w/o CD", "w/o VIS", "w/o TXT", "INMO", "LightGCN", "MF-BPR")
DOMAIN_METRICS = tuple(
    f"{d}/{m}@20" for d in ("source", "target") for m in ("precision", "recall", "ndcg")
)
SLICES = tuple(
    f"{d}/{u}-users/{i}-items/ndcg@20"
    for d in ("source", "target")
    for u in ("seen", "unseen")
    for i in ("seen", "unseen")
)
def cell_name(row: str) -> re.Pattern[str]:
    """The directory names of ``row``'s cells in any table and column, named as
    ``cdr.studies.cells.Cell.dirname`` names them (``table2_w_o_MM_inductive-seed0``)."""
    slug = Cell(row, (), 0).dirname.removesuffix("-seed0")
    return re.compile(rf"^[^_]+_{re.escape(slug)}_[^_]+-seed(?P<seed>\d+)$")


def read(dirs: list[Path]) -> dict[str, dict[int, dict[str, float]]]:
    """row -> seed -> metrics, from the finished cells under ``dirs``."""
    runs: dict[str, dict[int, dict[str, float]]] = {}
    patterns = {row: cell_name(row) for row in ROWS}
    for directory in dirs:
        for cell in sorted(directory.iterdir()):
            metrics = cell / "metrics.json"
            for row, pattern in patterns.items():
                match = pattern.match(cell.name)
                if match is not None and metrics.is_file():
                    seed = int(match["seed"])
                    runs.setdefault(row, {}).setdefault(seed, json.loads(metrics.read_text()))
    return runs


def stat(runs: dict[int, dict[str, float]], metric: str) -> str:
    xs = [m[metric] for m in runs.values() if metric in m]
    if not xs:
        return "–"
    std = statistics.pstdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.fmean(xs):.4f} ± {std:.4f}" + ("" if len(xs) == 3 else f" (n={len(xs)})")


def table(title: str, metrics: tuple[str, ...], before: dict, after: dict) -> list[str]:
    head = [f"### {title}", "", "| model | " + " | ".join(
        f"{m} {when}" for m in metrics for when in ("before", "after")
    ) + " |", "|---|" + "---|" * (2 * len(metrics))]
    body = []
    for row in ROWS:
        if row not in before and row not in after:
            continue
        cells = [stat(side.get(row, {}), m) for m in metrics for side in (before, after)]
        body.append(f"| {row} | " + " | ".join(cells) + " |")
    # the popularity reference depends only on the split: read from any row's runs ("–"
    # where the runs did not record it: the code before issue 15 had no reference rows)
    refs = [next(iter(side.values()), {}) for side in (before, after)]
    cells = [stat(ref, f"ref/popularity/{m}") for m in metrics for ref in refs]
    body.append("| *reference: popularity* | " + " | ".join(cells) + " |")
    return [*head, *body, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--before", type=Path, nargs="+", required=True)
    parser.add_argument("--after", type=Path, nargs="+", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--note", default="", help="A line under the title (the setups).")
    args = parser.parse_args()
    before, after = read(args.before), read(args.after)
    lines = [f"# MICRec before/after issue 15: {args.dataset}", ""]
    if args.note:
        lines += [args.note, ""]
    lines += ["mean ± std over seeds (n=3 unless said)", ""]
    for domain in ("source", "target"):
        metrics = tuple(m for m in DOMAIN_METRICS if m.startswith(domain))
        lines += table(f"{domain} domain, all test users and items", metrics, before, after)
    for domain in ("source", "target"):
        metrics = tuple(m for m in SLICES if m.startswith(domain))
        lines += table(f"{domain} domain, inductive slices (NDCG@20)", metrics, before, after)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
