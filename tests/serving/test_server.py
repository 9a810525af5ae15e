"""``cdr serve`` against a real uvicorn process on 127.0.0.1, over real HTTP (httpx).

One small real bundle (a short DDPM run on the tiny synthetic preset) is built once for the
module and served by one ``cdr serve`` subprocess on a free port (``--port 0``; the bound
port is read from uvicorn's log), waited for through /health and always terminated by the
fixture's finaliser. Results are compared with ``cdr recommend`` and with ``Recommender``
in this process; every request loop is bounded in count and time.
"""

from __future__ import annotations

import importlib.util
import json
import math
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
from serving_support import launch_server, stop_process, trained_bundle
from typer.testing import CliRunner

from cdr.errors import InputError
from cdr.registry import Registry
from cdr.serving.bundle import Recommender, export_bundle
from cdr.serving.history import parse_history
from cdr.serving.server import openapi_json

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = Registry()
STARTUP_TIMEOUT = 90.0  # seconds for a server to answer /health (slow shared CPUs)
REQUEST_TIMEOUT = 20.0  # seconds per request


def strict_json(text: str) -> Any:
    """Parse JSON refusing NaN / Infinity (what a strict client does)."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


@attrs.frozen
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


def start_server(bundle: Path, log: Path, *args: str) -> Server:
    """``cdr serve BUNDLE --port 0 ARGS`` in a subprocess, once it answers /health."""
    process, port = launch_server(bundle, log, *args, timeout=STARTUP_TIMEOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"cdr serve exited {process.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                    return Server(url, process, log)
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"cdr serve not healthy in {STARTUP_TIMEOUT}s:\n{log.read_text()}")
    except BaseException:
        stop_server(process)
        raise


stop_server = stop_process


@attrs.frozen
class Served:
    bundle: Path
    model: Recommender
    workdir: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Served:
    root = tmp_path_factory.mktemp("server")
    _, bundle = trained_bundle(root, REGISTRY)
    return Served(bundle, Recommender.load(bundle, REGISTRY), root)


@pytest.fixture(scope="module")
def server(served: Served) -> Iterator[Server]:
    running = start_server(served.bundle, served.workdir / "server.log")
    try:
        yield running
    finally:
        stop_server(running.process)


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT) as http:
        yield http


def seen_by(model: Recommender, user: str) -> set[str]:
    """The target items ``user`` has (training edges), as ids."""
    index = model.user_index[user]
    start, end = model.seen_offsets[index].item(), model.seen_offsets[index + 1].item()
    return {model.target_item_ids[i] for i in model.seen_items[start:end].tolist()}


def known_users(model: Recommender) -> list[str]:
    """Six users spread over the id space, with seen items (so exclude_seen matters)."""
    users = [u for u in model.user_ids if seen_by(model, u)]
    return [users[0], users[5], users[11], users[len(users) // 2], users[-2], users[-1]]


def cli_recommend(args: list[str]) -> list[dict[str, Any]]:
    from cdr.cli.app import app

    result = CliRunner().invoke(app, ["recommend", *args])
    assert result.exit_code == 0, result.output
    out: list[dict[str, Any]] = strict_json(result.stdout)
    return out


# --------------------------------------------------------------------------- correctness


def test_health_and_metadata(served: Served, client: httpx.Client) -> None:
    health = client.get("/health")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    meta = strict_json(client.get("/metadata").text)
    model = served.model
    assert meta["users"] == len(model.user_ids)
    assert meta["domains"] == {
        "source": {"name": "books", "items": len(model.source_item_index), "dim": 8},
        "target": {"name": "movies", "items": len(model.target_item_ids), "dim": 8},
    }
    assert meta["generator"] == {"kind": "ddpm", "dim": 8, "in_dim": 8}
    assert meta["cold_start"] is True and meta["format"] == "cdr-bundle/1"
    assert meta["seen_interactions"] == int(model.seen_items.numel())
    assert meta["config"]["generator"]["steps"] == 3
    assert meta["config"]["dataset"]["size"] == "tiny"


@pytest.mark.parametrize("exclude_seen", [False, True])
def test_known_topk_equals_cdr_recommend(
    served: Served, client: httpx.Client, exclude_seen: bool
) -> None:
    users = known_users(served.model)
    response = client.post(
        "/recommend", json={"users": users, "k": 7, "exclude_seen": exclude_seen}
    )
    assert response.status_code == 200, response.text
    results = strict_json(response.text)["results"]
    flag = ["--exclude-seen"] if exclude_seen else []
    args = [str(served.bundle), *[a for u in users for a in ("--user", u)], "--k", "7", *flag]
    assert results == cli_recommend(args)  # same users, items, order and scores
    direct = served.model.recommend_known(users, k=7, exclude_seen=exclude_seen)
    assert results == [r.to_json() for r in direct]
    assert [r["user"] for r in results] == users
    overlap = [
        seen_by(served.model, user) & {entry["item"] for entry in result["items"]}
        for user, result in zip(users, results, strict=True)
    ]
    assert not any(overlap) if exclude_seen else any(overlap)


def test_known_users_as_integers_and_repeats(served: Served, client: httpx.Client) -> None:
    """An integer id means its decimal string (as in history files); repeats are served."""
    user = served.model.user_ids[3]
    response = client.post("/recommend", json={"users": [user, user], "k": 3})
    assert response.status_code == 200
    [a, b] = strict_json(response.text)["results"]
    assert a == b == served.model.recommend_known([user], k=3)[0].to_json()
    unknown = client.post("/recommend", json={"users": [123], "k": 3})
    assert unknown.status_code == 404 and "'123'" in unknown.json()["message"]


HISTORIES: list[Any] = [
    "pairs",  # [[item, rating], ...]
    "objects",  # [{"item": id, "rating": r}, ...]
    "mapping",  # {"item": rating}
    "ids",  # [item, ...] (rating 1)
]


def history_of(shape: str, items: list[str]) -> Any:
    ratings = [5, 3.5, 1, 4]
    if shape == "pairs":
        return [[item, r] for item, r in zip(items, ratings, strict=False)]
    if shape == "objects":
        return [{"item": item, "rating": r} for item, r in zip(items, ratings, strict=False)]
    if shape == "mapping":
        return {item: r for item, r in zip(items, ratings, strict=False)}
    return list(items)


@pytest.mark.parametrize("shape", HISTORIES)
def test_cold_start_equals_recommend_cold(served: Served, client: httpx.Client, shape: str) -> None:
    items = list(served.model.source_item_index)[2:6]
    history = history_of(shape, items)
    body = {"user": "newcomer", "history": history, "k": 6, "seed": 11}
    response = client.post("/recommend/cold", json=body)
    assert response.status_code == 200, response.text
    [result] = strict_json(response.text)["results"]
    expected = served.model.recommend_cold(
        "newcomer", parse_history("history", history), k=6, seed=11
    )
    assert result == expected.to_json() and result["cold_start"] is True
    if shape == "pairs":  # and what `cdr recommend --history` prints for the same file
        path = served.workdir / "history.json"
        path.write_text(json.dumps(history))
        args = [str(served.bundle), "--user", "newcomer", "--history", str(path)]
        assert [result] == cli_recommend([*args, "--k", "6", "--seed", "11"])
    other = client.post("/recommend/cold", json={**body, "seed": 12})
    again = client.post("/recommend/cold", json=body)
    assert strict_json(again.text)["results"] == [result]  # the seed decides
    assert other.status_code == 200


# --------------------------------------------------------------------------- bad requests

NAN_HISTORY = '{"history": [["%s", NaN]], "k": 3}'
INF_HISTORY = '{"history": {"%s": Infinity}, "k": 3}'

# (id, path, body (a JSON value, or raw text with %s for a known auxiliary item id),
#  status, field, fragment of the message)
BAD: list[tuple[str, str, Any, int, str | None, str]] = [
    ("k-zero", "/recommend", {"users": ["U"], "k": 0}, 422, "k", "greater than or equal to 1"),
    ("k-negative", "/recommend", {"users": ["U"], "k": -5}, 422, "k", "greater than or equal"),
    ("k-string", "/recommend", {"users": ["U"], "k": "5"}, 422, "k", "valid integer"),
    ("k-float", "/recommend", {"users": ["U"], "k": 2.5}, 422, "k", "valid integer"),
    ("k-null", "/recommend", {"users": ["U"], "k": None}, 422, "k", "valid integer"),
    ("users-missing", "/recommend", {"k": 5}, 422, "users", "Field required"),
    ("users-empty", "/recommend", {"users": []}, 422, "users", "at least 1 item"),
    ("users-not-list", "/recommend", {"users": "U"}, 422, "users", "valid list"),
    ("user-bool", "/recommend", {"users": ["U", True]}, 422, "users[1]", "boolean true"),
    ("user-null", "/recommend", {"users": [None]}, 422, "users[0]", "got null"),
    ("user-list", "/recommend", {"users": [["U"]]}, 422, "users[0]", "got a list"),
    (
        "exclude-string",
        "/recommend",
        {"users": ["U"], "exclude_seen": "yes"},
        422,
        "exclude_seen",
        "valid boolean",
    ),
    ("unknown-key", "/recommend", {"users": ["U"], "kk": 3}, 422, "kk", "Extra inputs"),
    (
        "unknown-user",
        "/recommend",
        {"users": ["U", "nobody"]},
        404,
        "users[1]",
        "unknown user id 'nobody'",
    ),
    ("not-json", "/recommend", '{"users": [', 422, None, "not valid JSON"),
    ("not-object", "/recommend", '["U"]', 422, None, "JSON object"),
    ("history-missing", "/recommend/cold", {"k": 3}, 422, "history", "Field required"),
    ("history-string", "/recommend/cold", {"history": "abc"}, 422, "history", "got a string"),
    ("history-empty", "/recommend/cold", {"history": []}, 422, "history", "empty history"),
    (
        "history-lone-object",
        "/recommend/cold",
        {"history": {"item": "%s"}},
        422,
        "history",
        "one entry, not a history",
    ),
    (
        "history-bad-entry",
        "/recommend/cold",
        {"history": [["%s", 1, 2]]},
        422,
        "history",
        "entry 1: a list entry is an [item, rating] pair",
    ),
    (
        "history-bad-key",
        "/recommend/cold",
        {"history": [{"item": "%s", "score": 2}]},
        422,
        "history",
        "unknown key 'score'",
    ),
    (
        "rating-nan",
        "/recommend/cold",
        NAN_HISTORY,
        422,
        "history",
        "entry 1: rating nan is not a finite number",
    ),
    ("rating-inf", "/recommend/cold", INF_HISTORY, 422, "history", "is not a finite number"),
    (
        "rating-string",
        "/recommend/cold",
        {"history": [["%s", "5"]]},
        422,
        "history",
        "rating must be a number",
    ),
    ("rating-zero", "/recommend/cold", {"history": [["%s", 0]]}, 422, "history", "outside (0"),
    ("rating-bool", "/recommend/cold", {"history": [["%s", True]]}, 422, "history", "boolean"),
    ("item-repeated", "/recommend/cold", {"history": ["%s", "%s"]}, 422, "history", "repeats"),
    (
        "item-unknown",
        "/recommend/cold",
        {"history": [["nope", 2]]},
        404,
        "history",
        "entry 1: unknown auxiliary item id 'nope'",
    ),
    ("cold-k-zero", "/recommend/cold", {"history": ["%s"], "k": 0}, 422, "k", "greater than"),
    (
        "cold-seed-negative",
        "/recommend/cold",
        {"history": ["%s"], "seed": -1},
        422,
        "seed",
        "greater than or equal to 0",
    ),
    (
        "cold-user-int",
        "/recommend/cold",
        {"history": ["%s"], "user": 5},
        422,
        "user",
        "valid string",
    ),
]


def _fill(value: Any, user: str, item: str) -> Any:
    if isinstance(value, str):
        return value.replace("%s", item) if value != "U" else user
    if isinstance(value, list):
        return [_fill(v, user, item) for v in value]
    if isinstance(value, dict):
        return {_fill(k, user, item): _fill(v, user, item) for k, v in value.items()}
    return value


@pytest.mark.parametrize(
    ("path", "body", "status", "field", "fragment"),
    [case[1:] for case in BAD],
    ids=[case[0] for case in BAD],
)
def test_bad_requests_are_4xx_naming_the_field(
    served: Served,
    client: httpx.Client,
    path: str,
    body: Any,
    status: int,
    field: str | None,
    fragment: str,
) -> None:
    user, item = served.model.user_ids[0], next(iter(served.model.source_item_index))
    if isinstance(body, str):  # raw text: not necessarily valid (or standard) JSON
        content = (body % item if "%s" in body else body).encode()
    else:
        content = json.dumps(_fill(body, user, item)).encode()
    response = client.post(path, content=content, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    error = strict_json(response.text)
    assert error["status"] == status and error["field"] == field
    message = error["message"]
    assert "\n" not in message and fragment in message, message
    assert message.startswith(field if field is not None else "body"), message
    if status == 422 and field == "history" and b'"history"' in content:
        # validated the same way as a history file: the very same message
        with pytest.raises(InputError) as exc:
            parse_history("history", json.loads(content)["history"])
        assert message == str(exc.value)


def test_oversized_body_is_413(client: httpx.Client, server: Server) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=REQUEST_TIMEOUT) as sock:
        sock.sendall(
            b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 999999999999\r\n\r\n{}"
        )
        data = b""
        for _ in range(100):  # the server closes the connection after its answer
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    reply = data.decode()
    assert reply.startswith("HTTP/1.1 413"), reply
    assert '"message": "body: over the' in reply
    assert client.get("/health").status_code == 200  # the server is fine


def test_unknown_route_is_json_404(client: httpx.Client) -> None:
    response = client.get("/recommend")
    assert response.status_code == 405 and "GET /recommend" in response.json()["message"]
    assert client.get("/nope").status_code == 404


# --------------------------------------------------------------------------- concurrency


def test_burst_of_concurrent_requests_all_answered_correctly(
    served: Served, server: Server
) -> None:
    """200 requests (known batches, exclude_seen, cold starts) over 16 concurrent clients."""
    model = served.model
    users = model.user_ids
    items = list(model.source_item_index)
    total, clients = 200, 16
    cases: list[tuple[str, dict[str, Any], list[dict[str, Any]]]] = []
    for n in range(total):
        if n % 4 == 3:
            history = [[items[(n + j) % len(items)], 1 + (n + j) % 5] for j in range(3)]
            body: dict[str, Any] = {"user": f"cold{n}", "history": history, "k": 5, "seed": n}
            expected = model.recommend_cold(f"cold{n}", parse_history("history", history), 5, n)
            cases.append(("/recommend/cold", body, [expected.to_json()]))
        else:
            batch = [users[(n * 7 + j) % len(users)] for j in range(1 + n % 5)]
            body = {"users": batch, "k": 1 + n % 9, "exclude_seen": n % 2 == 0}
            records = model.recommend_known(batch, k=body["k"], exclude_seen=body["exclude_seen"])
            cases.append(("/recommend", body, [r.to_json() for r in records]))

    def worker(slot: int) -> list[tuple[int, int, Any]]:
        out = []
        with httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT) as http:
            for n in range(slot, total, clients):
                path, body, _ = cases[n]
                response = http.post(path, json=body)
                out.append((n, response.status_code, strict_json(response.text)))
        return out

    with ThreadPoolExecutor(max_workers=clients) as pool:
        futures = [pool.submit(worker, slot) for slot in range(clients)]
        done, not_done = wait(futures, timeout=120)
        assert not not_done, "the burst did not finish in 120 s"
    answers = sorted((a for f in done for a in f.result()), key=lambda a: a[0])
    assert len(answers) == total
    for n, status, body in answers:
        assert status == 200, (n, body)
        assert body["results"] == cases[n][2], n


# --------------------------------------------------------------------------- CLI, schema


def test_serve_bad_bundle_is_one_line_exit_1(tmp_path: Path) -> None:
    from cdr.cli.app import app

    runner = CliRunner()
    missing = runner.invoke(app, ["serve", str(tmp_path / "none.cdr"), "--port", "0"])
    assert missing.exit_code == 1
    assert (
        missing.stderr.strip().splitlines()[0] == f"error: {tmp_path / 'none.cdr'}: no such bundle"
    )
    junk = tmp_path / "junk.cdr"
    junk.write_text("not a zip")
    damaged = runner.invoke(app, ["serve", str(junk), "--port", "0"])
    assert damaged.exit_code == 1 and "not a cdr bundle" in damaged.stderr
    assert "Traceback" not in damaged.output
    bad_port = runner.invoke(app, ["serve", str(junk), "--port", "70000"])
    assert bad_port.exit_code == 1 and "--port 70000" in bad_port.stderr


def test_openapi_committed_equals_generated(client: httpx.Client) -> None:
    committed = (ROOT / "docs" / "openapi.json").read_text(encoding="utf-8")
    assert committed == openapi_json(), (
        "docs/openapi.json is stale: python -m cdr.serving.server openapi docs/openapi.json"
    )
    served = client.get("/openapi.json")
    assert served.status_code == 200 and served.json() == json.loads(committed)
    paths = json.loads(committed)["paths"]
    assert set(paths) == {"/recommend", "/recommend/cold", "/health", "/metadata"}


def test_two_workers_serve_the_same_results(served: Served) -> None:
    running = start_server(served.bundle, served.workdir / "workers.log", "--workers", "2")
    try:
        users = known_users(served.model)
        with httpx.Client(base_url=running.url, timeout=REQUEST_TIMEOUT) as http:
            for _ in range(4):
                response = http.post("/recommend", json={"users": users, "k": 4})
                assert response.status_code == 200
                expected = served.model.recommend_known(users, k=4)
                assert strict_json(response.text)["results"] == [r.to_json() for r in expected]
    finally:
        stop_server(running.process)
    assert running.process.returncode is not None


def test_serving_doc_table_is_rendered_from_the_benchmark_results() -> None:
    """docs/serving.md's measured table is what benchmarks/test_server.py renders."""
    spec = importlib.util.spec_from_file_location(
        "server_benchmark", ROOT / "benchmarks" / "test_server.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = json.loads((ROOT / "benchmarks" / "results" / "server.json").read_text())
    doc = (ROOT / "docs" / "serving.md").read_text(encoding="utf-8")
    assert module.render_block(results) in doc
    assert all(math.isfinite(row["users_per_s"]) for row in results["rows"])


# --------------------------------------------------------------------------- in process


def generatorless_bundle(root: Path) -> Path:
    """A 3-user bundle without a generator (it serves known users only)."""
    import torch

    from cdr.config import config_to_toml, load_experiment
    from cdr.serving.artifacts import ServingArtifacts, save_artifacts

    run_dir = root / "no-generator"
    run_dir.mkdir()
    cfg = load_experiment(None, REGISTRY, [])
    (run_dir / "config.toml").write_text(config_to_toml(cfg, REGISTRY))
    art = ServingArtifacts(
        user_ids=("a", "b", "c"),
        source_item_ids=("s0", "s1"),
        target_item_ids=("t0", "t1", "t2"),
        source_users=torch.eye(3, 2),
        target_users=torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.9]]),
        source_items=torch.eye(2),
        target_items=torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.5]]),
        seen_user=torch.tensor([0]),
        seen_item=torch.tensor([0]),
    )
    save_artifacts(run_dir, art)
    return export_bundle(run_dir, root / "no-generator.cdr", REGISTRY)


def test_bundle_without_generator_refuses_cold_start(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from cdr.serving.server import create_app, load_served

    bundle = generatorless_bundle(tmp_path)
    with TestClient(create_app(lambda: load_served(bundle, REGISTRY))) as http:
        meta = http.get("/metadata").json()
        assert meta["generator"] is None and meta["cold_start"] is False
        known = http.post("/recommend", json={"users": ["c", "a"], "k": 2, "exclude_seen": True})
        assert known.json()["results"][0]["items"] == [
            {"item": "t2", "score": 2.35},
            {"item": "t0", "score": 2.0},
        ]
        assert [i["item"] for i in known.json()["results"][1]["items"]] == ["t2", "t1"]
        cold = http.post("/recommend/cold", json={"history": ["s0"]})
        assert cold.status_code == 400 and "no generator" in cold.json()["message"]


def test_library_errors_are_json_4xx_or_500(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A check only the library makes is a 400 (InputError) or 500, as JSON, never a crash."""
    from fastapi.testclient import TestClient

    from cdr.errors import BundleError
    from cdr.serving import server as server_module

    failures: list[Exception] = [
        InputError("k must be a positive integer, got 0"),
        BundleError("model.cdr: non-finite scores for user 'u1'"),
        RuntimeError("a bug"),
    ]

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise failures.pop(0)

    monkeypatch.setattr(server_module, "_known", failing)
    app = server_module.create_app(lambda: server_module.load_served(served.bundle, REGISTRY))
    user = served.model.user_ids[0]
    with TestClient(app, raise_server_exceptions=False) as http:
        answers = [http.post("/recommend", json={"users": [user]}) for _ in range(3)]
    assert [a.status_code for a in answers] == [400, 500, 500]
    assert answers[0].json()["message"] == "k must be a positive integer, got 0"
    assert "non-finite scores" in answers[1].json()["message"]
    assert answers[2].json()["message"] == "POST /recommend: internal error (see the server log)"
