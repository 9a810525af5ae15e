"""HTTP serving of a bundle (``cdr serve``): the FastAPI app and its request/response models.

Endpoints (``docs/serving.md`` has examples, ``docs/openapi.json`` the schema):

``POST /recommend``       top-K for known users, batched: ``{"users": [...], "k", "exclude_seen"}``
``POST /recommend/cold``  top-K for a cold-start user from an auxiliary-domain ``history`` in
                          any shape ``cdr.serving.history.parse_history`` accepts
``GET /health``           ``{"status": "ok"}`` once the model is loaded
``GET /metadata``         the bundle's config, domains and sizes

Results are exactly ``Recommendation.to_json()`` (what ``cdr recommend`` prints), inside
``{"results": [...]}``, written as strict JSON (never NaN or infinity). Every error is a JSON
body ``{"status", "message", "field", "errors"}`` whose message starts with the field it is
about: 422 for a request that does not fit the schema (types, ranges, missing or unknown
fields, a malformed history), 404 for an unknown user or auxiliary item id, 400 for a body
that cannot be parsed, a cold-start request to a bundle without a generator or an
``InputError`` of the library, 413 for a body over ``MAX_BODY_BYTES``, 500 (JSON too) for
another ``CdrError`` (a bundle whose scores overflow) or a bug.

The model is loaded once per worker process (the app's lifespan). All scoring runs on one
thread per worker (torch uses ``threads`` cores for it), off the event loop, so /health
answers while a batch is scored. A /recommend request is one ``recommend_known`` call: the
client batches (up to ``MAX_USERS_PER_REQUEST`` users). Merging concurrent requests into one
call on the server was measured and did not pay (``docs/serving.md``), so there is none.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import attrs
import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cdr import __version__
from cdr.errors import CdrError, InputError
from cdr.registry import Registry
from cdr.serving.bundle import Recommendation, Recommender
from cdr.serving.history import MAX_HISTORY_BYTES, MAX_RATING, SHAPES, History, parse_history
from cdr.serving.history import show as show_id
from cdr.serving.schema import FORMAT, META, one_line, parse_meta, read_members

__all__ = [
    "API_VERSION",
    "MAX_BODY_BYTES",
    "MAX_USERS_PER_REQUEST",
    "Served",
    "ServerSettings",
    "create_app",
    "load_served",
    "openapi_schema",
]

#: Version of the HTTP API (``info.version`` of the OpenAPI schema).
API_VERSION = "1"
#: Most users in one /recommend request (bounds the [B, It] score matrix of one call).
MAX_USERS_PER_REQUEST = 1024
#: Largest request body; the same limit as a history file.
MAX_BODY_BYTES = MAX_HISTORY_BYTES
#: Environment variable through which ``cdr serve --workers N`` hands settings to workers.
SETTINGS_ENV = "CDR_SERVE_SETTINGS"


# --------------------------------------------------------------------------- models


def _user_id(value: Any) -> Any:
    """A user id: a string, or an integer (``42`` means ``"42"``), as in history files."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"a user id is a string or an integer, got {_kind(value)}")


UserId = Annotated[
    str,
    BeforeValidator(_user_id),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "integer"}], "title": "User id"}),
]

_ITEM_ID = {"anyOf": [{"type": "string"}, {"type": "integer"}]}
_RATING = {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_RATING}
HISTORY_SCHEMA: dict[str, Any] = {
    "title": "History",
    "description": f"A cold-start user's auxiliary-domain history: {SHAPES.split(', or a .csv')[0]}"
    f". Ratings are numbers in (0, {MAX_RATING:g}] (default 1), each item once, every item "
    "known to the bundle.",
    "anyOf": [
        {
            "type": "array",
            "minItems": 1,
            "items": {
                "anyOf": [
                    _ITEM_ID,
                    {
                        "type": "array",
                        "prefixItems": [_ITEM_ID, _RATING],
                        "minItems": 2,
                        "maxItems": 2,
                    },
                    {
                        "type": "object",
                        "properties": {"item": _ITEM_ID, "rating": _RATING},
                        "required": ["item"],
                        "additionalProperties": False,
                    },
                ]
            },
        },
        {"type": "object", "minProperties": 1, "additionalProperties": _RATING},
    ],
}


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class KnownRequest(_Strict):
    """Top-K for known users (one batch)."""

    users: list[UserId] = Field(
        min_length=1,
        max_length=MAX_USERS_PER_REQUEST,
        description="Ids of users the bundle knows (a string, or an integer meaning its "
        "decimal string); results come back in this order.",
    )
    k: int = Field(20, ge=1, description="How many items per user (fewer if fewer remain).")
    exclude_seen: bool = Field(False, description="Drop items the user already has.")


class ColdRequest(_Strict):
    """Top-K for a cold-start user from their auxiliary-domain history."""

    history: Annotated[Any, WithJsonSchema(HISTORY_SCHEMA)] = Field(
        description="The history, validated like a history file (`cdr recommend --history`)."
    )
    user: str = Field("anonymous", description="A label for the user, echoed in the result.")
    k: int = Field(20, ge=1, description="How many items (fewer if the catalogue is smaller).")
    seed: int = Field(
        0,
        ge=0,
        le=2**63 - 1,
        description="Seed of the generator's sampling (same seed, same result).",
    )


class ScoredItem(BaseModel):
    item: str
    score: float = Field(description="Dot score, rounded to 6 decimals; always finite.")


class UserResult(BaseModel):
    user: str
    cold_start: bool
    items: list[ScoredItem] = Field(description="Best first.")


class RecommendResponse(BaseModel):
    results: list[UserResult] = Field(
        description="One per requested user, in request order (one for /recommend/cold)."
    )


class FieldError(BaseModel):
    field: str | None = Field(description="Dotted path of the field, e.g. users[2], or null.")
    message: str
    type: str


class ErrorBody(BaseModel):
    status: int
    message: str = Field(description="One line, starting with the field it is about.")
    field: str | None
    errors: list[FieldError]


class Health(BaseModel):
    status: str


class DomainInfo(BaseModel):
    name: str | None = Field(description="From the dataset config, when it names the domain.")
    items: int
    dim: int = Field(description="Width of the item vectors.")


class GeneratorInfo(BaseModel):
    kind: str
    dim: int
    in_dim: int


class Metadata(BaseModel):
    format: str
    cdr_version: str
    api_version: str
    bundle: str = Field(description="File name of the bundle.")
    users: int = Field(description="Known users (servable by /recommend).")
    seen_interactions: int = Field(description="Target-domain training edges (exclude_seen).")
    domains: dict[str, DomainInfo] = Field(description="source (auxiliary) and target.")
    generator: GeneratorInfo | None
    cold_start: bool = Field(description="Whether /recommend/cold can serve (a generator).")
    max_users_per_request: int
    threads: int = Field(description="torch threads of the worker that answered.")
    config: dict[str, Any] = Field(description="The resolved experiment config of the run.")


# --------------------------------------------------------------------------- the model


@attrs.frozen
class ServerSettings:
    """What a worker needs to serve: the bundle, and torch's threads (None: its default)."""

    bundle: str
    threads: int | None = None

    def to_env(self) -> str:
        return json.dumps(attrs.asdict(self))

    @classmethod
    def from_env(cls) -> ServerSettings:
        raw = os.environ.get(SETTINGS_ENV)
        if raw is None:
            raise InputError(f"{SETTINGS_ENV} is not set (start the server with `cdr serve`)")
        data = json.loads(raw)
        threads = data.get("threads")
        return cls(bundle=str(data["bundle"]), threads=None if threads is None else int(threads))


@attrs.frozen(eq=False)
class Served:
    """A loaded bundle and what /metadata reports about it."""

    model: Recommender
    metadata: dict[str, Any]


def load_served(path: Path, registry: Registry | None = None) -> Served:
    """Read and check the bundle at ``path`` once (BundleError when it is not valid)."""
    registry = registry if registry is not None else Registry()
    members = read_members(path)
    model = Recommender.from_members(members, registry, name=str(path))
    meta = parse_meta(str(path), members[META])  # held to the schema by from_members
    config: dict[str, Any] = meta.get("config") or {}
    dataset: dict[str, Any] = config.get("dataset") or {}
    if not isinstance(dataset, dict):
        dataset = {}
    spec = meta.get("generator")
    metadata = {
        "format": FORMAT,
        "cdr_version": __version__,
        "api_version": API_VERSION,
        "bundle": path.name,
        "users": len(model.user_ids),
        "seen_interactions": int(model.seen_items.numel()),
        "domains": {
            "source": {
                "name": _domain_name(dataset, "source"),
                "items": int(model.source_items.shape[0]),
                "dim": int(model.source_items.shape[1]),
            },
            "target": {
                "name": _domain_name(dataset, "target"),
                "items": int(model.target_items.shape[0]),
                "dim": int(model.target_items.shape[1]),
            },
        },
        "generator": spec,
        "cold_start": model.generator is not None,
        "max_users_per_request": MAX_USERS_PER_REQUEST,
        "config": config,
    }
    return Served(model, metadata)


def _domain_name(dataset: dict[str, Any], role: str) -> str | None:
    for key in (f"{role}_name", role):
        if isinstance(dataset.get(key), str) and dataset[key]:
            return str(dataset[key])
    genres = dataset.get(f"{role}_genres")
    if isinstance(genres, list) and genres and all(isinstance(g, str) for g in genres):
        return "+".join(genres)
    return None


def _render(records: Sequence[Recommendation]) -> bytes:
    """``{"results": [...]}`` as strict JSON (a non-finite score raises, never goes out)."""
    body = {"results": [r.to_json() for r in records]}
    return json.dumps(body, allow_nan=False, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- errors


class ApiError(Exception):
    """A request the server refuses: status, one-line message, the field it is about."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def _error(status: int, message: str, field: str | None, errors: list[dict[str, Any]]) -> Response:
    body = {"status": status, "message": message, "field": field, "errors": errors}
    return JSONResponse(body, status_code=status)


def _field(loc: Sequence[Any]) -> str | None:
    """('body', 'users', 2) -> 'users[2]'; ('body',) -> None."""
    parts = list(loc[1:] if loc and loc[0] == "body" else loc)
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or None


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        kind = str(err.get("type", "invalid"))
        msg = str(err.get("msg", "invalid"))
        msg = msg.removeprefix("Value error, ")
        if kind == "json_invalid":
            reason = (err.get("ctx") or {}).get("error", "")
            position = loc[1] if len(loc) > 1 else "?"
            errors.append(
                {
                    "field": None,
                    "message": f"body: not valid JSON ({reason} at char {position})",
                    "type": kind,
                }
            )
            continue
        if kind == "missing" and loc == ("body",):
            errors.append(
                {"field": None, "message": "body: missing (expected a JSON object)", "type": kind}
            )
            continue
        field = _field(loc)
        if kind == "model_attributes_type" and field is None:
            msg = "expected a JSON object (send Content-Type: application/json)"
        errors.append({"field": field, "message": f"{field or 'body'}: {msg}", "type": kind})
    return errors


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = _validation_errors(exc)
        first = errors[0] if errors else {"field": None, "message": "invalid request"}
        more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
        return _error(422, str(first["message"]) + more, first["field"], errors)

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> Response:
        kind = {404: "not_found", 400: "bad_request"}.get(exc.status, "invalid")
        errors = [{"field": exc.field, "message": exc.message, "type": kind}]
        return _error(exc.status, exc.message, exc.field, errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        message = f"{request.method} {request.url.path}: {exc.detail}"
        if exc.status_code == 400:  # FastAPI: a body json could not decode (e.g. huge ints)
            message = f"body: {exc.detail}"
        errors = [{"field": None, "message": message, "type": "http"}]
        return _error(exc.status_code, message, None, errors)

    @app.exception_handler(CdrError)
    async def _cdr(request: Request, exc: CdrError) -> Response:
        # checks of the library that the request models do not repeat: a bad input is the
        # client's (400); anything else (e.g. a bundle whose scores overflow) is the server's
        status = 400 if isinstance(exc, InputError) else 500
        message = one_line(exc, limit=1000)
        errors = [{"field": None, "message": message, "type": type(exc).__name__}]
        return _error(status, message, None, errors)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> Response:
        message = f"{request.method} {request.url.path}: internal error (see the server log)"
        errors = [{"field": None, "message": message, "type": "internal"}]
        return _error(500, message, None, errors)


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413 (read no further).

    The body is read here, then handed on whole (FastAPI reads it whole anyway).
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        message = f"body: over the {self.limit}-byte limit"
        errors = [{"field": None, "message": message, "type": "too_large"}]
        body = json.dumps(
            {"status": 413, "message": message, "field": None, "errors": errors}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


# --------------------------------------------------------------------------- the app

_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {
        "model": ErrorBody,
        "description": "The request does not fit the schema; the message names the field.",
    },
    400: {"model": ErrorBody, "description": "A body that cannot be parsed."},
    413: {"model": ErrorBody, "description": f"A body over {MAX_BODY_BYTES} bytes."},
}


def create_app(load: Callable[[], Served], threads: int | None = None) -> FastAPI:
    """The app; ``load`` is called once, in the lifespan of each worker process.

    ``threads``: torch's intra-op threads in this worker (None: torch's default).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if threads is not None:
            torch.set_num_threads(threads)
        served = load()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cdr-score")
        app.state.served = served
        app.state.metadata = json.dumps(
            {**served.metadata, "threads": torch.get_num_threads()}, allow_nan=False
        ).encode()
        app.state.executor = executor
        try:
            yield
        finally:
            executor.shutdown(wait=True, cancel_futures=True)

    app = FastAPI(
        title="cdr recommender",
        version=API_VERSION,
        description="Top-K target-domain items from a cdr bundle, for known users and for "
        "cold-start users given their auxiliary-domain history. See docs/serving.md.",
        lifespan=lifespan,
    )
    _install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)

    @app.post(
        "/recommend",
        response_model=RecommendResponse,
        responses={**_ERRORS, 404: {"model": ErrorBody, "description": "An unknown user id."}},
        summary="Top-K items for known users (one batch)",
    )
    async def recommend(request: Request, body: KnownRequest) -> Response:
        served: Served = request.app.state.served
        index = served.model.user_index
        unknown = [n for n, user in enumerate(body.users) if user not in index]
        if unknown:
            first = unknown[0]
            more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
            raise ApiError(
                404,
                f"users[{first}]: unknown user id {show_id(body.users[first])}{more}; "
                "use /recommend/cold with the user's history",
                f"users[{first}]",
            )
        loop = asyncio.get_running_loop()
        content = await loop.run_in_executor(
            request.app.state.executor, _known, served.model, body.users, body.k, body.exclude_seen
        )
        return Response(content, media_type="application/json")

    @app.post(
        "/recommend/cold",
        response_model=RecommendResponse,
        responses={
            **_ERRORS,
            400: {
                "model": ErrorBody,
                "description": "A body that cannot be parsed, or a "
                "bundle without a generator (it cannot serve cold-start users).",
            },
            404: {"model": ErrorBody, "description": "An auxiliary item id the bundle lacks."},
        },
        summary="Top-K items for a cold-start user from their auxiliary-domain history",
    )
    async def recommend_cold(request: Request, body: ColdRequest) -> Response:
        served: Served = request.app.state.served
        model = served.model
        try:
            history = parse_history("history", body.history)
        except InputError as exc:
            raise ApiError(422, str(exc), "history") from None
        unknown = [n for n, item in enumerate(history.items) if item not in model.source_item_index]
        if unknown:
            first = unknown[0]
            more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
            raise ApiError(
                404,
                f"history: {history.labels[first]}: unknown auxiliary item id "
                f"{show_id(history.items[first])}{more}",
                "history",
            )
        if model.generator is None:
            raise ApiError(400, "this bundle has no generator: it cannot serve cold-start users")
        loop = asyncio.get_running_loop()
        content = await loop.run_in_executor(
            request.app.state.executor, _cold, model, body.user, history, body.k, body.seed
        )
        return Response(content, media_type="application/json")

    @app.get("/health", response_model=Health, summary="Liveness: the model is loaded")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metadata", response_model=Metadata, summary="The bundle: config, domains, sizes")
    async def metadata(request: Request) -> Response:
        return Response(request.app.state.metadata, media_type="application/json")

    return app


def _known(model: Recommender, users: list[str], k: int, exclude_seen: bool) -> bytes:
    return _render(model.recommend_known(users, k=k, exclude_seen=exclude_seen))


def _cold(model: Recommender, user: str, history: History, k: int, seed: int) -> bytes:
    return _render([model.recommend_cold(user, history, k=k, seed=seed)])


def app_from_environment() -> FastAPI:
    """The app of one ``cdr serve --workers N`` worker (uvicorn factory; settings from env)."""
    settings = ServerSettings.from_env()
    return create_app(lambda: load_served(Path(settings.bundle)), threads=settings.threads)


def openapi_schema() -> dict[str, Any]:
    """The OpenAPI schema the server publishes at /openapi.json (no bundle needed)."""

    def unavailable() -> Served:
        raise CdrError("no bundle: this app only describes the API")

    return create_app(unavailable).openapi()


def openapi_json() -> str:
    """``docs/openapi.json``'s exact text."""
    return json.dumps(openapi_schema(), indent=2, ensure_ascii=False) + "\n"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {json.dumps(value)}"
    if isinstance(value, int | float):
        return "a number"
    return "a list" if isinstance(value, list) else "an object"


def main(argv: Sequence[str]) -> int:
    """``python -m cdr.serving.server openapi [PATH]``: write (or print) the OpenAPI schema."""
    if len(argv) not in (1, 2) or argv[0] != "openapi":
        print("usage: python -m cdr.serving.server openapi [PATH]", file=sys.stderr)
        return 2
    text = openapi_json()
    if len(argv) == 2:
        Path(argv[1]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
