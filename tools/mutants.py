"""Mutation testing of the core math and protocol modules, one bounded mutmut run per module.

Each module group is mutated in its own scratch copy of the tree (``.nox/mutants/<group>``,
git-ignored; ``src/`` is never touched in place), with only the fast tests of that module, so
one group finishes in minutes and a full run stays well under two hours on 2 CPU cores.

    python tools/mutants.py                    # every group, smallest first
    python tools/mutants.py metrics training   # some groups
    python tools/mutants.py --list             # the groups, their files and tests
    python tools/mutants.py --report           # re-print the last results (no run)

``nox -s mutants`` runs it (pass group names after ``--``). Per group it writes
``.nox/mutants/<group>/summary.json`` (counts, score, surviving mutants) and at the end prints
a Markdown table of the scores plus the survivors; ``mutmut show <name>`` inside
``.nox/mutants/<group>`` shows a mutant's diff.

Score = killed / (killed + survived + no tests + suspicious); timeouts count as killed (the
mutant made a test hang, which a test run notices).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".nox" / "mutants"

#: group -> (files to mutate, relative to the root; the tests that cover them). Smallest first.
GROUPS: dict[str, tuple[list[str], list[str]]] = {
    "metrics": (["src/cdr/metrics/*"], ["tests/metrics"]),
    "infonce": (["src/cdr/aligners/infonce.py"], ["tests/aligners"]),
    "evaluation": (
        [
            "src/cdr/evaluation/ranking.py",
            "src/cdr/evaluation/inductive.py",
            "src/cdr/evaluation/rating.py",
        ],
        [
            "tests/evaluation/test_ranking.py",
            "tests/evaluation/test_inductive.py",
            "tests/evaluation/test_rating.py",
            "tests/evaluation/test_evaluation_mutants.py",
        ],
    ),
    "splits": (
        ["src/cdr/data/splits.py"],
        [
            "tests/data/test_splits.py",
            "tests/data/test_split_fractions.py",
            "tests/data/test_splits_mutants.py",
        ],
    ),
    "training": (
        [
            "src/cdr/training/early_stopping.py",
            "src/cdr/training/checkpoint.py",
            "src/cdr/training/loop.py",
        ],
        # not test_distributed.py: its rank processes take ~40 s to start for every mutant
        [
            "tests/training/test_checkpoint.py",
            "tests/training/test_loop.py",
            "tests/training/test_loop_mutants.py",
        ],
    ),
    "ddpm": (
        ["src/cdr/generators/ddpm.py"],
        [
            "tests/generators/test_ddpm.py",
            "tests/generators/test_ddpm_timesteps.py",
            "tests/generators/test_ddpm_mutants.py",
        ],
    ),
    "backbones": (
        [
            "src/cdr/backbones/templates.py",
            "src/cdr/backbones/adjacency.py",
            "src/cdr/backbones/lightgcn.py",
            "src/cdr/backbones/sgl.py",
            "src/cdr/backbones/inmo.py",
        ],
        # the tests of these five modules (tests/backbones also holds other backbones')
        [
            "tests/backbones/test_aggregation.py",
            "tests/backbones/test_backbones_mutants.py",
            "tests/backbones/test_inmo.py",
            "tests/backbones/test_lightgcn.py",
            "tests/backbones/test_sgl.py",
            "tests/backbones/test_templates.py",
        ],
    ),
}

#: mutmut exit codes (mutmut.utils) -> status; see ``mutmut results --all``.
KILLED = {"killed", "timeout", "caught by type check", "segfault"}
COUNTED = KILLED | {"survived", "no tests", "suspicious"}


def setup_cfg(files: list[str], tests: list[str]) -> str:
    def block(values: list[str]) -> str:
        return "\n" + "\n".join(f"    {v}" for v in values)

    return (
        "[mutmut]\n"
        "source_paths = src\n"
        f"only_mutate ={block(files)}\n"
        f"pytest_add_cli_args_test_selection ={block(tests)}\n"
        # -p no:cacheprovider: nothing written into the copy; -W: warnings stay warnings
        "pytest_add_cli_args =\n    -p\n    no:cacheprovider\n"
        # torch is not fork-safe after its thread pools started: fork from a clean server
        "process_isolation = forkserver\n"
        "use_git_change_detection = false\n"
    )


def prepare(group: str, fresh: bool, rev: str | None, work: Path) -> Path:
    """A scratch copy of src/, tests/ and pyproject.toml: the working tree's, or ``rev``'s."""
    files, tests = GROUPS[group]
    if fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    names = ("src", "tests", "pyproject.toml")
    for name in names:
        if (work / name).is_dir():
            shutil.rmtree(work / name)
    if rev is None:
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
        for name in names[:2]:
            shutil.copytree(ROOT / name, work / name, ignore=ignore)
        shutil.copy2(ROOT / "pyproject.toml", work / "pyproject.toml")
    else:  # e.g. the commit before new tests, for a "before" score
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", rev, *names], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(work)], input=archive, check=True)
    (work / "setup.cfg").write_text(setup_cfg(files, tests))
    copied = work / "mutants" / "src"
    if not fresh and copied.is_dir():
        # mutmut copies src/ into mutants/ once: in a later round the modules it does not
        # mutate would stay as they were, so they are refreshed (the mutated ones and their
        # results, the .meta files, are kept)
        mutated = {p.relative_to(work) for f in files for p in work.glob(f)}
        for source in (work / "src").rglob("*"):
            relative = source.relative_to(work)
            if source.is_file() and "__pycache__" not in source.parts and relative not in mutated:
                (work / "mutants" / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, work / "mutants" / relative)
    return work


def mutmut(work: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    # one thread per test process: the workers already use every core
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env.update(TRANSFORMERS_OFFLINE="1", PYTHONHASHSEED="0")
    return subprocess.run(
        [sys.executable, "-m", "mutmut", *args],
        cwd=work,
        env=env,
        check=check,
        text=True,
        capture_output=True,
    )


DIFFS = """
import json, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
print(json.dumps({name: get_diff_for_mutant(name) for name in json.load(sys.stdin)}))
"""

#: (category, pattern on the changed lines, reason). First match wins; see ``classify``.
RULES: list[tuple[str, str, str]] = [
    (
        "message",
        r"raise \w+\(|^[-+]\s+f?\"|^[-+]\s+hint=",
        "error-message wording only; the exception type and its condition are tested",
    ),
    (
        "device",
        r"device=None|device=\w+(\.\w+)*,? ?\)",
        "device argument dropped or None: identical on CPU, the suite's only device",
    ),
    (
        "batching",
        r"batch_size|chunk_size|sample_chunk|capacity",
        "batching/caching size only: rows are independent, results identical",
    ),
    (
        "dtype",
        r"dtype=None|\.to\(None\)|dtype=\w+(\.\w+)*,? ?\)",
        "dtype dropped: float32 instead of float64 for an intermediate, agreement to ~1e-7",
    ),
]


#: survivors analysed by hand and found equivalent (or untestable here), with the reason.
_D, _M, _I = "cdr.generators.ddpm.", "cdr.metrics.ranking.", "cdr.aligners.infonce."
_EI, _ER = "cdr.evaluation.inductive.", "cdr.evaluation.ranking."
_B = "cdr.backbones."
_A = _B + "adjacency."
_NAN = "every metric of a user is NaN exactly when ndcg is (the same skip mask)"
_STABLE = (
    "torch's CPU sort keeps equal scores in input order with or without stable=True (the tie "
    "tests pass); equivalent on CPU, the suite's device"
)
EQUIVALENT: dict[str, str] = {
    _D + "x__per_sample__mutmut_2": "unsqueeze(+1) of the 1-D [B] gather equals unsqueeze(-1)",
    _D + "x_sample__mutmut_1": "any sampler other than 'ddim' runs DDPM: the default still does",
    _D + "x_sample__mutmut_2": "any sampler other than 'ddim' runs DDPM: the default still does",
    _D + "x_sample__mutmut_27": "torch.full with an int fill value is int64 already",
    _D + "x_sample__mutmut_31": "torch.full with an int fill value is int64 already",
    _D + "x_timestep_embedding__mutmut_8": (
        "dim is even (checked first), so dim / 2 is integral: arange and half - 1 are unchanged"
    ),
    _D + "x_timestep_embedding__mutmut_30": "unsqueeze(+1) of the 1-D t equals unsqueeze(-1)",
    _D + "x_timestep_embedding__mutmut_38": "cat on dim=+1 of 2-D tensors equals dim=-1",
    _D + "xǁNoiseScheduleǁcosine__mutmut_29": (
        "the 1e-8 floor never binds: the smallest cosine beta is ~0.04/T (T < 4e6)"
    ),
    _D + "xǁNoiseScheduleǁcosine__mutmut_31": (
        "the 1e-8 floor never binds: the smallest cosine beta is ~0.04/T (T < 4e6)"
    ),
    _D + "xǁNoiseScheduleǁcosine__mutmut_26": (
        "abar's normalisation cancels in beta_t = 1 - abar_(t+1) / abar_t, its only use"
    ),
    _D + "xǁNoiseScheduleǁcosine__mutmut_27": (
        "abar's normalisation cancels in beta_t = 1 - abar_(t+1) / abar_t, its only use"
    ),
    _M + "x_mean_over_users__mutmut_5": "the mean of an empty tensor is NaN already",
    _M + "x_metrics_from_top_k__mutmut_50": (
        "a constant factor on the discount cancels in NDCG = DCG / IDCG, its only use"
    ),
    _M + "x_metrics_from_top_k__mutmut_80": "topk's default dim is -1, the item axis",
    _M + "x_ranking_metrics_per_user__mutmut_33": (
        "ks is non-empty on every path that returns; an empty ks still raises ValueError "
        "(max() of an empty list instead of the cut-off message)"
    ),
    _M + "x_ranking_metrics_per_user__mutmut_35": (
        "the else branch runs only for an empty ks, which metrics_from_top_k then rejects"
    ),
    _M + "x_top_k_items__mutmut_35": "topk's default dim is -1, the item axis",
    _M + "x_top_k_items__mutmut_36": "topk's default is sorted=True",
    _M + "x_top_k_items__mutmut_94": "sort's default dim is -1, the item axis",
    _M + "x_top_k_items__mutmut_92": _STABLE,
    _M + "x_top_k_items__mutmut_96": _STABLE,
    _M + "x_top_k_items__mutmut_104": _STABLE,
    _M + "x_top_k_items__mutmut_75": "cumsum of a bool row in int64 instead of int32: same counts",
    _M + "x_top_k_items__mutmut_77": "cumsum of a bool row in int64 instead of int32: same counts",
    _I + "x_info_nce__mutmut_23": 'float("-INF") is float("-inf")',
    _ER + "x_evaluate_ranking__mutmut_14": "graded=None is falsy like the default False",
    _EI + "x_evaluate_inductive__mutmut_174": _NAN,
    _EI + "x_evaluate_inductive__mutmut_188": _NAN,
    _EI + "x_tail_items__mutmut_33": _STABLE,
    _EI + "x_tail_items__mutmut_35": _STABLE,
    _EI + "x_tail_items__mutmut_36": _STABLE,
    _ER + "xǁRowLookupǁbuild__mutmut_36": _STABLE,
    _ER + "xǁRowLookupǁbuild__mutmut_38": _STABLE,
    _ER + "xǁRowLookupǁbuild__mutmut_39": _STABLE,
    **{_A + f"x_csr_from_edges__mutmut_{i}": "every matrix built is square" for i in (15, 27)},
    _B + "inmo.xǁTemplateEdgesǁwith_values__mutmut_2": "the template matrices are square (n, n)",
    **{
        name: "only which beta warning is silenced; the tensor is the same"
        for name in [_A + f"x_csr_from_edges__mutmut_{i}" for i in (32, 35, 36, 37)]
        + [_B + f"inmo.xǁTemplateEdgesǁwith_values__mutmut_{i}" for i in (8, 11, 12, 13)]
    },
    **{
        name: "check_invariants only validates; the matrices built here are valid CSR"
        for name in [_A + f"x_csr_from_edges__mutmut_{i}" for i in (43, 49, 50)]
        + [_B + f"inmo.xǁTemplateEdgesǁwith_values__mutmut_{i}" for i in (19, 24, 25, 31, 36, 37)]
    },
    _B + "sgl.x_info_nce__mutmut_5": "F.normalize's default dim is 1",
    _B + "sgl.x_info_nce__mutmut_11": "F.normalize's default dim is 1",
    **{_B + f"templates.x__top__mutmut_{i}": _STABLE for i in (14, 17, 19)},
    **{
        _B + f"sgl.x_drop_view__mutmut_{i}": "> instead of >= differs only when a uniform draw "
        "equals rho exactly (probability 0)"
        for i in (10, 16, 22)
    },
    **{
        name: "a 0 in ks is still refused, with the same message, by metrics_from_top_k"
        for name in (_EI + "x_evaluate_inductive__mutmut_12", _ER + "x_evaluate_ranking__mutmut_8")
    },
    _EI + "x_evaluate_inductive__mutmut_24": "graded=None is falsy like False",
    **{
        _ER + f"x_ranked_batches__mutmut_{i}": "scores keep the score function's dtype, float32 "
        "in every caller (the copy that protects the caller's tensor is kept)"
        for i in (19, 21)
    },
    **{
        _ER + f"xǁRowLookupǁbuild__mutmut_{i}": "the lookup of zero users is never read: "
        "there is no batch to rank"
        for i in (9, 10, 11, 12, 18, 23)
    },
    _ER + "xǁRowLookupǁbuild__mutmut_49": "span never reads past ptr[U]: an extra entry is unused",
    _ER + "xǁRowLookupǁspan__mutmut_8": "end <= U = ptr.numel() - 1 in every call, so the "
    "min is end either way",
    **{
        f"cdr.training.checkpoint.{n}": "CUDA RNG states: reached only with CUDA (none here)"
        for n in ("x_rng_state__mutmut_4", "x_rng_state__mutmut_5", "x_set_rng_state__mutmut_9")
    },
    # loop.py as of 563b65a (data-parallel training; the first round's names were of 9ff9bc2)
    "cdr.training.loop.x_fit__mutmut_308": "report's total defaults to None",
    **{
        name: "every parameter gets a gradient at every step of these stages, so zeroed and "
        "None gradients give the same update"
        for name in [f"cdr.training.loop.x_fit__mutmut_{i}" for i in (191, 192)]
        + [f"cdr.training.loop.x__parallel_step__mutmut_{i}" for i in (17, 18)]
    },
    "cdr.training.loop.x_fit__mutmut_112": (
        "params is read only in the data-parallel branch: computing it in one process too "
        "changes nothing"
    ),
    "cdr.training.loop.x_fit__mutmut_301": (
        "a None best state is stored as null and read back as None, as when it is left out; "
        "{} (a module without state) restores nothing either way"
    ),
    **{
        f"cdr.training.checkpoint.x__encode__mutmut_{i}": "the tensors are written before "
        "save_checkpoint returns, so a copy or not (and the device, on CPU) changes nothing"
        for i in (4, 6, 7, 10)
    },
    "cdr.data.splits.x__check_ratios__mutmut_12": "differs only when |sum - 1| is exactly 1e-6",
    "cdr.data.splits.x_cold_start_split__mutmut_64": (
        "a fraction of 0 samples round(0) = 0 items from its own stream: no unseen items either way"
    ),
    "cdr.evaluation.rating.x_rating_per_user__mutmut_26": (
        "the inverse indices of torch.unique cover 0..U-1, so bincount has length U anyway"
    ),
    _I + "xǁInfoNCEAlignerǁloss__mutmut_18": "F.normalize's default dim is 1",
    _I + "xǁInfoNCEAlignerǁloss__mutmut_23": "F.normalize's default dim is 1",
    # splits (issue 20, second round)
    **{
        f"cdr.data.splits.xǁColdStartSplitǁtarget_interactions__mutmut_{i}": "any value other "
        'than "all" and "unseen" selects the seen items, as the default "seen" does'
        for i in (1, 2)
    },
    "cdr.data.splits.x_load_split__mutmut_17": (
        "the format is accepted only as SPLIT_FORMAT (no space), one space, a kind (no space): "
        "partition and rpartition split such a string alike and reject every other"
    ),
    "cdr.data.splits.x_load_split__mutmut_24": (
        'a missing format reads as "XXXX" instead of "": not SPLIT_FORMAT either, same error '
        "(the message quotes the raw metadata value)"
    ),
    # checkpoint (issue 20, second round)
    **{
        f"cdr.training.checkpoint.x_save_checkpoint__mutmut_{i}": "only the prefix of the flat "
        "tensor keys changes; keys are only ever looked up through the skeleton's $t markers "
        "written with them (a file of either spelling loads in both)"
        for i in (4, 10)
    },
    **{
        f"cdr.training.checkpoint.x_save_checkpoint__mutmut_{i}": "_encode has already turned "
        "every non-finite float into a {$f: ...} marker, so json.dumps never meets one"
        for i in (17, 19, 20)
    },
    # backbones (issue 20, second round)
    **{
        _B + f"lightgcn.x_fill_unseen__mutmut_{i}": "a [D] mean broadcasts in torch.where "
        "exactly as the [1, D] one"
        for i in (9, 11)
    },
    _B + "lightgcn.x_propagate__mutmut_9": (
        "with 0 layers layer_mean returns x unchanged; only an unused adjacency is built"
    ),
    **{
        _B + f"lightgcn.xǁLightGCNBackboneǁ__init____mutmut_{i}": 'any init other than "xavier" '
        "draws N(0, init_std), as the default does (_build always passes config.init)"
        for i in (3, 4)
    },
    **{
        name: "prepared is only read as `not self.prepared`: None is falsy like False"
        for name in (
            _B + "lightgcn.xǁLightGCNBackboneǁ__init____mutmut_71",
            _B + "inmo.xǁINMOBackboneǁ__init____mutmut_95",
        )
    },
    **{
        name: "cache=None falls back to the module's DEFAULT_CACHE, which builds the same "
        "adjacency per edge_index tensor: only which cache object holds it changes"
        for name in [
            _B + "lightgcn.xǁLightGCNBackboneǁ__init____mutmut_73",
            _B + "lightgcn.xǁLightGCNBackboneǁrepresent__mutmut_20",
            _B + "lightgcn.xǁLightGCNBackboneǁrepresent__mutmut_25",
            _B + "inmo.xǁINMOBackboneǁ__init____mutmut_98",
            _B + "inmo.xǁINMOBackboneǁrepresent__mutmut_49",
            _B + "inmo.xǁINMOBackboneǁrepresent__mutmut_54",
        ]
        + [_B + f"sgl.xǁSGLBackboneǁregularization__mutmut_{i}" for i in (21, 26, 32, 37)]
    },
    **{
        _B + f"sgl.xǁSGLBackboneǁepoch_views__mutmut_{i}": "the cache key's label is only "
        "compared with itself (one views cache per model, one call site)"
        for i in (42, 43)
    },
    **{
        _B + f"sgl.xǁSGLBackboneǁregularization__mutmut_{i}": "a weight of 0 multiplies the "
        "(finite) term by 0: the same value and zero gradients; only wasted work (the views "
        "come from their own seeded generator, not the global stream)"
        for i in (11, 64)
    },
    _B + "inmo.xǁINMOBackboneǁregularization__mutmut_1": (
        "beta = 0 gives 0 * softplus(...).mean() = 0 (zero gradients); an empty batch reaches "
        "the empty-keep return below with the same zero"
    ),
    _B + "inmo.xǁINMOBackboneǁ__init____mutmut_47": "nn.Linear tests `if bias`: None is False",
    **{
        _A + f"x_normalized_adjacency__mutmut_{i}": "rows and cols hold the same nodes, those "
        "with an edge, so degree and inv_sqrt are read only where the degree is >= 1"
        for i in (31, 39)
    },
    _B + "templates.x_node_scores__mutmut_1": (
        "the default seed is unused: select_templates, the only caller, always passes seed"
    ),
    **{
        _B + f"templates.x_select_templates__mutmut_{i}": "a default that no caller uses: "
        "INMOBackbone.prepare, the only caller, passes ranking, ratio and seed"
        for i in (1, 2, 3, 4)
    },
}


#: survivors analysed by hand that only the multi-process tests can reach (a branch taken
#: under torch.distributed; tests/training/test_distributed.py is left out of the group's
#: tests because its rank processes take ~40 s to start for every mutant), with the reason.
MULTI_PROCESS: dict[str, str] = {
    f"cdr.training.loop.x__parallel_step__mutmut_{i}": "after a step with unequal shards every "
    "rank takes rank 0's random states in the all-reduce; in one process rank 0's states come "
    "back unchanged, so dropping that is invisible there; with two ranks that drew different "
    "amounts they drift apart (test_distributed.py's ranks must end with the same RNG: fails)"
    for i in (19, 20, 31, 37)
}


def changed_lines(diff: str) -> tuple[list[str], list[str]]:
    lines = diff.splitlines()[2:]
    return (
        [ln for ln in lines if ln.startswith("-")],
        [ln for ln in lines if ln.startswith("+")],
    )


def classify(diff: str) -> tuple[str, str]:
    """A survivor's category and reason from its diff ('unexplained' when no rule fits)."""
    import re

    removed, added = changed_lines(diff)
    text = "\n".join(removed + added)
    for category, pattern, reason in RULES:
        if category == "device":
            if (
                any("device" in ln for ln in removed)
                and not any(re.search(r"device=\w", ln) for ln in added if "device=None" not in ln)
            ) or "device=None" in text:
                return category, reason
            continue
        if category == "dtype":
            hit = (
                "dtype=None" in text
                or ".to(None)" in text
                or (
                    any("dtype=" in ln for ln in removed)
                    and not any("dtype=" in ln for ln in added)
                )
            )
            if hit:
                return category, reason
            continue
        if re.search(pattern, text, flags=re.M):
            if category == "message" and not all(
                "raise" in ln or ln.lstrip("-+ ").startswith(('"', 'f"', "hint=", ")"))
                for ln in removed
            ):
                continue
            return category, reason
    return "unexplained", ""


def survivor_diffs(work: Path, names: list[str]) -> dict[str, str]:
    if not names:
        return {}
    result = subprocess.run(
        [sys.executable, "-c", DIFFS],
        cwd=work,
        input=json.dumps(names),
        text=True,
        capture_output=True,
        check=True,
    )
    diffs: dict[str, str] = json.loads(result.stdout)
    return diffs


def statuses_of(work: Path) -> dict[str, str]:
    out = mutmut(work, "results", "--all", "true").stdout
    statuses: dict[str, str] = {}
    for line in out.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            statuses[name] = status
    return statuses


def summarize(
    group: str,
    work: Path,
    seconds: float | None,
    base: Path | None = None,
    rerun: bool | None = None,
) -> dict[str, object]:
    """Counts, score and survivors of ``work``; with ``base`` (a survivors-only rerun), the
    mutants not rerun keep their status from ``base`` (a test added cannot revive them).
    ``seconds``: this run's time (None: a report, the times recorded before are kept);
    ``rerun``: whether the run was of earlier survivors only (then the last full run's time
    in this folder is kept as ``full_seconds``)."""
    statuses = statuses_of(work)
    if base is None and (work / "base.txt").exists():
        base = Path((work / "base.txt").read_text().strip())
    if base is not None:
        earlier = statuses_of(base)
        statuses = {
            name: status if status != "not checked" else earlier.get(name, status)
            for name, status in statuses.items()
        }
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    counted = sum(counts.get(s, 0) for s in COUNTED)
    killed = sum(counts.get(s, 0) for s in KILLED)
    previous = work / "summary.json"
    before: dict[str, object] = json.loads(previous.read_text()) if previous.exists() else {}
    if seconds is None:  # a report: what the runs recorded
        seconds = before.get("seconds")  # type: ignore[assignment]
        rerun = before.get("rerun")  # type: ignore[assignment]
        full_seconds = before.get("full_seconds")
    else:
        full_seconds = before.get("full_seconds") if rerun else round(seconds)
    survivors = sorted(n for n, s in statuses.items() if s not in KILLED and s in COUNTED)
    diffs = survivor_diffs(work, survivors)
    details = {}
    for name in survivors:
        category, reason = classify(diffs.get(name, ""))
        removed, added = changed_lines(diffs.get(name, ""))
        details[name] = {
            "status": statuses[name],
            "category": category,
            "reason": reason,
            "removed": [ln[1:].strip() for ln in removed],
            "added": [ln[1:].strip() for ln in added],
        }
    summary: dict[str, object] = {
        "group": group,
        "files": GROUPS[group][0],
        "tests": GROUPS[group][1],
        "counts": counts,
        "mutants": len(statuses),
        "score": round(100 * killed / counted, 1) if counted else None,
        "survivors": details,
        "seconds": None if seconds is None else round(seconds),
        "rerun_of_survivors_of": None if base is None else str(base),
        "rerun": rerun,
        "full_seconds": full_seconds,
    }
    previous.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def table(summaries: list[dict[str, object]]) -> str:
    lines = [
        "| group | mutants | killed | survived | no tests | timeout | score | time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        c: dict[str, int] = s["counts"]  # type: ignore[assignment]
        lines.append(
            f"| {s['group']} | {s['mutants']} | {c.get('killed', 0)} | {c.get('survived', 0)} "
            f"| {c.get('no tests', 0)} | {c.get('timeout', 0)} | {s['score']}% "
            f"| {s['seconds']} s |"
        )
    return "\n".join(lines)


START, END = "<!-- mutants:start -->", "<!-- mutants:end -->"


def _load(root: Path, group: str) -> dict[str, object] | None:
    path = root / group / "summary.json"
    return json.loads(path.read_text()) if path.exists() else None


def _cell(summary: dict[str, object] | None) -> str:
    if summary is None:
        return "not run"
    counts: dict[str, int] = summary["counts"]  # type: ignore[assignment]
    killed = sum(counts.get(k, 0) for k in KILLED)
    counted = sum(counts.get(k, 0) for k in COUNTED)
    return f"{summary['score']}% ({killed}/{counted})"


def why(name: str, details: dict[str, object]) -> tuple[str, str]:
    """A survivor's category and reason: analysed by hand (EQUIVALENT, MULTI_PROCESS) first,
    then the automatic category of its diff."""
    if name in EQUIVALENT:
        return "equivalent", EQUIVALENT[name]
    if name in MULTI_PROCESS:
        return "multi-process", MULTI_PROCESS[name]
    return str(details["category"]), str(details["reason"] or "**not analysed yet**")


def markdown(groups: list[str], before_root: Path, after_root: Path) -> str:
    """The generated part of docs/testing.md: scores before/after, then every survivor."""
    lines = [
        START,
        "<!-- generated by `python tools/mutants.py --report --doc docs/testing.md`; edit the",
        "reasons in tools/mutants.py (RULES, EQUIVALENT, MULTI_PROCESS), not here -->",
        "",
        "| group | files | mutants | score before | score after | survivors after "
        "| full run | rerun of survivors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for group in groups:
        before, after = _load(before_root, group), _load(after_root, group)
        last = after or before
        files = ", ".join(f.removeprefix("src/cdr/") for f in GROUPS[group][0])
        survivors = len(last["survivors"]) if last else "–"  # type: ignore[arg-type]
        rerun = after and (after.get("rerun") or after.get("rerun_of_survivors_of"))
        full_time = (after or {}).get("full_seconds") or (before or after or {}).get("seconds")
        lines.append(
            f"| {group} | {files} | {last['mutants'] if last else '–'} | {_cell(before)} "
            f"| {_cell(after)} | {survivors if after else '–'} "
            f"| {full_time if full_time else '–'} s "
            f"| {str(after['seconds']) + ' s' if after and rerun else '–'} |"
        )
    totals: dict[str, int] = {}
    for group in groups:
        last = _load(after_root, group) or _load(before_root, group)
        analysed: dict[str, dict[str, object]] = last["survivors"] if last else {}  # type: ignore[assignment]
        for name, d in analysed.items():
            kind = why(name, d)[0]
            kind = "not analysed yet" if kind == "unexplained" else kind
            totals[kind] = totals.get(kind, 0) + 1
    lines += [
        "",
        "Survivors by reason, all groups: "
        + ", ".join(f"{kind} {count}" for kind, count in sorted(totals.items()))
        + f" (total {sum(totals.values())}).",
    ]
    for group in groups:
        last = _load(after_root, group) or _load(before_root, group)
        if not last:
            continue
        which = "after" if _load(after_root, group) else "before (no after run)"
        details: dict[str, dict[str, object]] = last["survivors"]  # type: ignore[assignment]
        lines += ["", f"### {group}: {len(details)} surviving mutants ({which})", ""]
        if not details:
            continue
        lines += ["| mutant | change | category | why it survives |", "|---|---|---|---|"]
        for name, d in details.items():
            category, reason = why(name, d)
            removed = " / ".join(d["removed"])  # type: ignore[arg-type]
            added = " / ".join(d["added"])  # type: ignore[arg-type]
            change = f"`{removed}` → `{added}`".replace("|", "\\|")
            if len(change) > 220:
                change = change[:217] + "…`"
            short = ".".join(name.split(".")[-2:])
            lines.append(f"| `{short}` | {change} | {category} | {reason} |")
    lines.append(END)
    return "\n".join(lines)


def write_doc(path: Path, block: str) -> None:
    text = path.read_text() if path.exists() else ""
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="*", help=f"default: all ({', '.join(GROUPS)})")
    parser.add_argument("--list", action="store_true", help="print the groups and exit")
    parser.add_argument("--report", action="store_true", help="summarize earlier runs only")
    parser.add_argument("--resume", action="store_true", help="keep earlier mutmut results")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rev", help="mutate and test this git revision instead of the tree")
    parser.add_argument("--work", type=Path, default=WORK, help=f"scratch root ({WORK})")
    parser.add_argument("--before", type=Path, default=WORK.parent / "mutants-before")
    parser.add_argument("--doc", type=Path, help="write the scores and survivors into this file")
    parser.add_argument(
        "--survivors-of",
        type=Path,
        help="rerun only the survivors recorded under this scratch root (e.g. the before run); "
        "the other mutants keep their status from there",
    )
    args = parser.parse_args(argv)
    unknown = [g for g in args.groups if g not in GROUPS]
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    groups = args.groups or list(GROUPS)
    if args.list:
        for g in groups:
            print(f"{g}: {' '.join(GROUPS[g][0])}  <-  {' '.join(GROUPS[g][1])}")
        return 0
    summaries = []
    for group in groups:
        work = args.work / group
        seconds = None
        if not args.report:
            prepare(group, not args.resume, args.rev, work)
            names: list[str] = []
            if args.survivors_of:  # after new tests: rerun only what survived there
                base = args.survivors_of / group
                names = list(json.loads((base / "summary.json").read_text())["survivors"])
                if base.resolve() != work.resolve():  # a second round in place keeps its base
                    (work / "base.txt").write_text(str(base.resolve()))
            print(f"== {group}: mutating {' '.join(GROUPS[group][0])}", flush=True)
            start = time.perf_counter()
            result = mutmut(
                work, "run", "--max-children", str(args.max_children), *names, check=False
            )
            seconds = time.perf_counter() - start
            (work / "mutmut-run.log").write_text(result.stdout + result.stderr)
            if result.returncode != 0:
                print(result.stdout[-3000:], result.stderr[-3000:], sep="\n")
                print(f"== {group}: mutmut run failed (exit {result.returncode})")
                return result.returncode
        elif not (work / "mutants").exists():
            print(f"== {group}: not run yet")
            continue
        summary = summarize(group, work, seconds, rerun=None if args.report else bool(names))
        summaries.append(summary)
        print(
            f"== {group}: score {summary['score']}% of {summary['mutants']} mutants "
            f"in {summary['seconds']} s",
            flush=True,
        )
    print(table(summaries))
    if args.doc:
        write_doc(args.doc, markdown(list(GROUPS), args.before, args.work))
    for s in summaries:
        for name in s["survivors"]:  # type: ignore[attr-defined]
            print(f"  {s['group']}: {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
