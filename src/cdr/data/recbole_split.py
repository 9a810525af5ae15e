"""Fixed splits as RecBole benchmark files, both ways.

**In** (``dataset.kind = "recbole-benchmark"``, ``split.kind = "fixed"``): a split given as
RecBole's benchmark files ``<directory>/<name>.train.inter``, ``.valid.inter`` and
``.test.inter`` (atomic format, a header such as ``user_id:token  item_id:token
rating:float  timestamp:float``) is used exactly as given, never redrawn. The provider
reads the three files (and ``<name>.item`` for item content when present) into the target
domain; because a ``CrossDomainDataset`` has two domains, the same interactions stand in
as the auxiliary domain (named ``<name>-as-source``), which single-domain protocols never
read. The provider also stores which rows came from which file, as dataset indices, in
``benchmark/split.safetensors`` inside the built dataset (``Domain.root`` of the target
points there), so ``fixed_split`` rebuilds the split from the dataset alone: rows in file
order, a (user, item) pair repeated across files kept in each.

**Out** (``cdr datasets export-split``): any cdr split written as RecBole benchmark files,
deterministically: rows sorted by (user id, timestamp, item id, rating) in the dataset's
index order, ids as given, ratings in the shortest text that reads back to the same
float32, timestamps as integers, ``\\n`` line ends. A split read from files in this form
writes them back byte for byte. Single-domain / fixed splits give ``<name>.{train,valid,
test}.inter``; cold-start splits give the auxiliary domain's ``<aux>.inter`` (all visible)
and the target's ``<name>.{train,valid,test}.inter`` (train: training + side users' target
edges on seen items; valid / test: the validation / cold-start test users' target edges)
plus ``<name>.unseen_items`` for dual cold-start; inductive splits give both domains'
``.{train,valid,test}.inter`` plus ``.new.inter`` (E_new, revealed at inference) and the
unseen user / item id lists. ``<name>.cdr-split.json`` records the protocol, the edge sets
masked at validation and test, row counts and the files' sha256.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import attrs
import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save
from torch import Tensor

from cdr.components import BuildContext, Component, DatasetConfig
from cdr.config.experiment import SplitConfig
from cdr.data.assemble import RawDomain, assemble
from cdr.data.atomic import RecboleAtomicConfig, interactions, item_metadata, read_atomic
from cdr.data.records import CrossDomainDataset, Domain, Interactions
from cdr.data.splits import ColdStartSplit, DomainInductiveSplit, InductiveSplit
from cdr.data.validate import above_rating_min, check_usable, finite
from cdr.errors import DataError, SplitError
from cdr.paths import safe_name
from cdr.progress import Reporter
from cdr.runs import atomic_write_bytes, atomic_write_text

#: (file suffix, split part)
PARTS = (("train", "train"), ("valid", "val"), ("test", "test"))
HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
#: inside a built recbole-benchmark dataset: the rows of each file as dataset indices
SPLIT_DIR = "benchmark"
SPLIT_FILE = "split.safetensors"
SPLIT_FORMAT = "cdr-fixed-split-1"
_FIELDS = ("user", "item", "rating", "timestamp")


@attrs.frozen
class RecboleBenchmarkConfig(DatasetConfig):
    """A split given as RecBole benchmark files ``<directory>/<name>.{train,valid,test}.inter``
    (or ``<directory>/<name>/<name>.*.inter``). Field names and the rating scale as for
    ``recbole-atomic``."""

    kind: str = "recbole-benchmark"
    directory: str = ""
    name: str = ""
    user_field: str = "user_id"
    item_field: str = "item_id"
    rating_field: str = "rating"
    timestamp_field: str = "timestamp"
    rating_min: float = attrs.field(default=1.0, validator=finite)
    rating_max: float = attrs.field(default=5.0, validator=above_rating_min)
    clip_ratings: bool = False

    def atomic(self) -> RecboleAtomicConfig:
        return RecboleAtomicConfig(
            user_field=self.user_field,
            item_field=self.item_field,
            rating_field=self.rating_field,
            timestamp_field=self.timestamp_field,
            rating_min=self.rating_min,
            rating_max=self.rating_max,
            clip_ratings=self.clip_ratings,
        )


def benchmark_files(directory: Path, name: str) -> list[Path]:
    """The train / valid / test files of ``name`` (``<dir>/<name>.*`` or ``<dir>/<name>/``)."""
    for base in (directory, directory / name):
        paths = [base / f"{name}.{suffix}.inter" for suffix, _ in PARTS]
        if any(p.exists() for p in paths):
            break
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataError(
            f"{missing[0]}: no such file (a benchmark needs {name}.train.inter, "
            f"{name}.valid.inter and {name}.test.inter)",
            hint="write them with `cdr datasets export-split RUN_OR_CONFIG --out DIR`",
        )
    return paths


def _concat(name: str, parts: Sequence[RawDomain]) -> RawDomain:
    return RawDomain(
        name=name,
        user_ids=[u for p in parts for u in p.user_ids],
        item_ids=[i for p in parts for i in p.item_ids],
        ratings=np.concatenate([p.ratings for p in parts]),
        timestamps=np.concatenate([p.timestamps for p in parts]),
        reviews=None,
        items=parts[0].items,
        clipped=sum(p.clipped for p in parts),
    )


def _indexed(raw: RawDomain, users: dict[str, int], items: dict[str, int]) -> Interactions:
    return Interactions(
        torch.tensor([users[u] for u in raw.user_ids], dtype=torch.long),
        torch.tensor([items[i] for i in raw.item_ids], dtype=torch.long),
        torch.from_numpy(np.asarray(raw.ratings, dtype=np.float32)),
        torch.from_numpy(np.asarray(raw.timestamps, dtype=np.int64)),
    )


def save_fixed_split(parts: dict[str, Interactions], path: Path) -> None:
    tensors = {f"{part}.{field}": getattr(inter, field).contiguous().clone()
               for part, inter in parts.items() for field in _FIELDS}
    atomic_write_bytes(path, st_save(tensors, metadata={"format": SPLIT_FORMAT}))


def load_fixed_split(path: Path) -> dict[str, Interactions]:
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(f"{path}: not a fixed split file ({exc})") from exc
    if meta.get("format") != SPLIT_FORMAT:
        raise DataError(f"{path}: format {meta.get('format')!r}, expected {SPLIT_FORMAT!r}")
    try:
        return {part: Interactions(*(tensors[f"{part}.{f}"] for f in _FIELDS))
                for _, part in PARTS}
    except KeyError as exc:
        raise DataError(f"{path}: lacks tensor {exc.args[0]!r}") from exc


class RecboleBenchmarkProvider:
    def __init__(self, config: RecboleBenchmarkConfig) -> None:
        self.config = config
        self.source = f"RecBole benchmark files {config.name}.*.inter in {config.directory}"

    def _files(self) -> list[Path]:
        if not self.config.directory or not self.config.name:
            raise DataError("dataset.directory / dataset.name: the directory and name of the "
                            "RecBole benchmark files are required")
        return benchmark_files(Path(self.config.directory), self.config.name)

    def inputs(self) -> list[Path]:
        """The raw files ``load`` reads (their fingerprints are part of the cache key)."""
        files = self._files()
        item = files[0].parent / f"{self.config.name}.item"
        return [*files, item] if item.is_file() else files

    def load(self, reporter: Reporter | None = None,
             workdir: Path | None = None) -> CrossDomainDataset:
        cfg, name = self.config, self.config.name
        files = self._files()
        item_file = files[0].parent / f"{name}.item"
        items = item_metadata(read_atomic(item_file), cfg.atomic()) if item_file.is_file() else {}
        parts = [interactions(read_atomic(path), name, cfg.atomic(), items) for path in files]
        whole = _concat(name, parts)
        dataset = assemble(name, attrs.evolve(whole, name=f"{name}-as-source"), whole)
        if workdir is None:
            return dataset
        users = {u: i for i, u in enumerate(dataset.user_ids)}
        item_index = {it: i for i, it in enumerate(dataset.target.item_ids)}
        root = workdir / SPLIT_DIR
        save_fixed_split({part: _indexed(raw, users, item_index)
                          for (_, part), raw in zip(PARTS, parts, strict=True)},
                         root / SPLIT_FILE)
        return attrs.evolve(dataset, target=attrs.evolve(dataset.target, root=root))


def fixed_split(dataset: CrossDomainDataset, cfg: SplitConfig) -> DomainInductiveSplit:
    """The split the benchmark files give (train / validation / test of the target domain;
    no unseen users or items, no E_new)."""
    check_usable(dataset)
    root = dataset.target.root
    path = root / SPLIT_FILE if root is not None else None
    if path is None or not path.is_file():
        raise SplitError(
            f"dataset {dataset.name!r}: split.kind=fixed needs a split given as files",
            hint="use dataset.kind=recbole-benchmark with dataset.directory and dataset.name",
        )
    parts = load_fixed_split(path)
    for part, inter in parts.items():
        if len(inter) and (int(inter.user.max()) >= dataset.num_users
                           or int(inter.item.max()) >= dataset.target.num_items):
            raise DataError(f"{path}: {part} rows index past the dataset; rebuild it")
    if len(parts["train"]) == 0:
        raise SplitError(f"dataset {dataset.name!r}: the train file has no rows")
    empty = torch.empty(0, dtype=torch.long)
    return DomainInductiveSplit(
        unseen_users=empty, unseen_items=empty.clone(), train=parts["train"], val=parts["val"],
        test=parts["test"], new=Interactions.empty(),
    )


def _build(config: RecboleBenchmarkConfig, ctx: BuildContext) -> RecboleBenchmarkProvider:
    return RecboleBenchmarkProvider(config)


component = Component(
    "recbole-benchmark", "datasets", RecboleBenchmarkConfig, _build,
    "a fixed split as RecBole benchmark files <name>.{train,valid,test}.inter",
)


# ---- export -------------------------------------------------------------------------------


def _rating_text(values: np.ndarray) -> list[str]:
    return [np.format_float_positional(v, trim="-") for v in values.astype(np.float32)]


def inter_text(inter: Interactions, user_ids: Sequence[str], item_ids: Sequence[str]) -> str:
    """One ``.inter`` file: the header, then rows sorted by (user, timestamp, item, rating)."""
    user, item = inter.user.numpy(), inter.item.numpy()
    rating, stamp = inter.rating.numpy().astype(np.float32), inter.timestamp.numpy()
    order = np.lexsort((rating, item, stamp, user))
    ratings = _rating_text(rating[order])
    rows = [
        f"{user_ids[u]}\t{item_ids[i]}\t{r}\t{int(t)}\n"
        for u, i, r, t in zip(user[order], item[order], ratings, stamp[order], strict=True)
    ]
    return HEADER + "".join(rows)


def _ids_text(ids: Tensor, names: Sequence[str]) -> str:
    return "".join(f"{names[i]}\n" for i in ids.tolist())


def _domain_files(name: str, split: DomainInductiveSplit, dataset: CrossDomainDataset,
                  domain: Domain, extra: bool) -> dict[str, str]:
    files = {
        f"{name}.{suffix}.inter": inter_text(getattr(split, part), dataset.user_ids,
                                             domain.item_ids)
        for suffix, part in PARTS
    }
    if extra:
        files[f"{name}.new.inter"] = inter_text(split.new, dataset.user_ids, domain.item_ids)
        files[f"{name}.unseen_users"] = _ids_text(split.unseen_users, dataset.user_ids)
        files[f"{name}.unseen_items"] = _ids_text(split.unseen_items, domain.item_ids)
    return files


def _cold_start_files(name: str, source: str, split: ColdStartSplit,
                      dataset: CrossDomainDataset) -> dict[str, str]:
    users, target = dataset.user_ids, dataset.target
    train = split.target_interactions(dataset, torch.cat([split.train_users, split.side_users]))
    files = {
        f"{source}.inter": inter_text(dataset.source.interactions, users,
                                      dataset.source.item_ids),
        f"{name}.train.inter": inter_text(train, users, target.item_ids),
        f"{name}.valid.inter": inter_text(split.target_interactions(dataset, split.val_users),
                                          users, target.item_ids),
        f"{name}.test.inter": inter_text(split.target_interactions(dataset, split.test_users),
                                         users, target.item_ids),
    }
    if split.unseen_items.numel():
        files[f"{name}.unseen_items"] = _ids_text(split.unseen_items, target.item_ids)
    return files


def split_files(split: object, dataset: CrossDomainDataset, name: str) -> dict[str, str]:
    """File name -> text of the RecBole benchmark files of ``split`` (see the module doc)."""
    safe_name(name, "--name")
    if isinstance(split, DomainInductiveSplit):
        return _domain_files(name, split, dataset, dataset.target, extra=False)
    if isinstance(split, ColdStartSplit):
        source = _file_name(dataset.source.name)
        if source == name:
            source = f"{name}-source"
        return _cold_start_files(name, source, split, dataset)
    if isinstance(split, InductiveSplit):
        source = _file_name(dataset.source.name)
        if source == name:
            source = f"{name}-source"
        return {
            **_domain_files(source, split.source, dataset, dataset.source, extra=True),
            **_domain_files(name, split.target, dataset, dataset.target, extra=True),
        }
    raise SplitError(f"export-split: a {type(split).__name__} cannot be written as RecBole "
                     "benchmark files")


def _file_name(text: str) -> str:
    """A domain name as one plain file-name component."""
    clean = "".join(c if c.isalnum() or c in "-_." else "_" for c in text).strip("._")
    return clean or "domain"


def default_name(dataset: CrossDomainDataset) -> str:
    return _file_name(dataset.target.name)


def write_split_files(files: dict[str, str], out: Path, name: str,
                      about: dict[str, object]) -> list[Path]:
    """Write ``files`` and ``<name>.cdr-split.json`` into ``out``; never overwrites a file."""
    manifest = {
        **about,
        "format": "recbole-benchmark",
        "name": name,
        "files": {
            file: {"rows": max(text.count("\n") - 1, 0) if file.endswith(".inter")
                   else text.count("\n"),
                   "sha256": hashlib.sha256(text.encode()).hexdigest()}
            for file, text in sorted(files.items())
        },
    }
    everything = {**files, f"{name}.cdr-split.json": json.dumps(manifest, indent=2,
                                                                 sort_keys=True) + "\n"}
    taken = [file for file in everything if (out / file).exists()]
    if taken:
        raise DataError(f"{out / taken[0]}: already exists; export-split never overwrites",
                        hint="choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    for file, text in sorted(everything.items()):
        atomic_write_text(out / file, text)
    return [out / file for file in sorted(everything)]
