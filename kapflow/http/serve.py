"""``kapflow serve``'s application factory: each uvicorn worker process builds its own engine.

uvicorn starts ``--workers`` processes and imports ``app_from_environment`` in each, so the database
URL, the settings file and how many processes serve travel as ``KAPFLOW_DB``, ``KAPFLOW_CONFIG`` and
``KAPFLOW_SERVE_WORKERS`` (set by ``kapflow serve``).
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from kapflow.bootstrap import build_api, database_url
from kapflow.config import load_settings
from kapflow.logging import configure_logging


def app_from_environment() -> FastAPI:
    # Each worker process logs as ``kapflow serve`` was asked to (a line per request, on stderr).
    configure_logging(json=os.environ.get("KAPFLOW_LOG_JSON") == "1")
    settings = load_settings(os.environ.get("KAPFLOW_CONFIG"))
    app: FastAPI = build_api(database_url(None, settings), settings,
                             processes=int(os.environ.get("KAPFLOW_SERVE_WORKERS", "1")))
    return app


def run(host: str, port: int, *, workers: int = 1, tls_cert: str | None = None, tls_key: str | None = None) -> None:
    """uvicorn serving ``app_from_environment`` until SIGTERM or SIGINT (it finishes requests in flight).

    uvicorn's own access log is off: it writes the raw path and query; kapflow logs each request itself,
    by route template, without query strings (``kapflow.http.app``).
    """
    import uvicorn  # the one importer of uvicorn in kapflow

    uvicorn.run(
        "kapflow.http.serve:app_from_environment", factory=True, host=host, port=port, workers=workers,
        ssl_certfile=tls_cert, ssl_keyfile=tls_key, access_log=False, log_level="warning",
        timeout_graceful_shutdown=30, server_header=False,
    )
