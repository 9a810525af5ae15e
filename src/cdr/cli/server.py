"""``cdr serve``: an HTTP server (FastAPI + uvicorn) for a bundle (``cdr.serving.server``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from cdr.cli.common import err_console, user_errors
from cdr.device import threads_per_worker
from cdr.errors import InputError
from cdr.registry import Registry
from cdr.serving.server import (
    SETTINGS_ENV,
    Served,
    ServerSettings,
    create_app,
    load_served,
)


@user_errors
def serve(
    bundle: Annotated[Path, typer.Argument(help="A bundle written by `cdr export`.")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0: any free port).")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes; each loads the model once.")] = 1,
    threads: Annotated[
        int | None,
        typer.Option(
            help="torch threads per worker (default: the cores, or OMP_NUM_THREADS where set, "
            "divided by --workers)."
        ),
    ] = None,
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="Log every request.")
    ] = True,
) -> None:
    """Serve a bundle over HTTP: POST /recommend, POST /recommend/cold, GET /health,
    GET /metadata (schema at /openapi.json; docs/serving.md)."""
    import uvicorn

    if not 0 <= port <= 65535:
        raise InputError(f"--port {port}: must be in 0..65535")
    if workers < 1:
        raise InputError(f"--workers {workers}: must be at least 1")
    if threads is not None and threads < 1:
        raise InputError(f"--threads {threads}: must be at least 1")
    if threads is None:
        threads = threads_per_worker(workers)
    # Check the bundle here, so that a bad path is one line and exit 1 before any worker starts.
    served = load_served(bundle, Registry())
    err_console.print(
        f"serving {bundle} ({served.metadata['users']} users, "
        f"{served.metadata['domains']['target']['items']} target items) on "
        f"http://{host}:{port} with {workers} worker(s), {threads} thread(s) each",
        highlight=False,
        soft_wrap=True,
    )
    if workers == 1:
        app = create_app(_given(served), threads=threads)
        uvicorn.run(app, host=host, port=port, access_log=access_log, log_level="info")
        return
    del served  # each worker loads its own copy
    settings = ServerSettings(bundle=str(bundle.resolve()), threads=threads)
    os.environ[SETTINGS_ENV] = settings.to_env()
    uvicorn.run(
        "cdr.serving.server:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=access_log,
        log_level="info",
    )


def _given(served: Served) -> Callable[[], Served]:
    """A loader that hands over the model this process already loaded."""
    return lambda: served
