"""``kapflow serve``: the HTTP API (``kapflow.http``) on uvicorn."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated

import typer

from kapflow.cli.common import fail, handled, settings_of
from kapflow.present import EXIT_INPUT

commands = typer.Typer()


@commands.command("serve")
@handled
def serve_command(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option("--host", help="The address to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="The port (default 8443).")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Server processes (PostgreSQL for more than 1).")
                       ] = None,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="The TLS certificate chain (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="The TLS private key (PEM).")] = None,
    log_json: Annotated[bool, typer.Option("--log-json", help="Log lines as JSON (for a log collector).")] = False,
) -> None:
    """Serve the engine's API over HTTP under /v1 until SIGTERM (requests in flight are finished)."""
    found = settings_of(ctx)
    s = found.settings.serve
    host, port, workers = host or s.host, port or s.port, workers or s.workers
    cert = str(tls_cert) if tls_cert else s.tls_cert_file
    key = str(tls_key) if tls_key else s.tls_key_file
    if (cert is None) != (key is None):
        fail("input_error: --tls-cert and --tls-key go together", EXIT_INPUT)
    if cert is None and not _loopback(host):
        fail(f"input_error: serving on {host} needs TLS: give --tls-cert and --tls-key (or [serve] tls_cert_file "
             "and tls_key_file); plain HTTP is for 127.0.0.1 only, behind a TLS proxy", EXIT_INPUT)
    if workers > 1 and found.url.startswith("sqlite"):
        fail("input_error: several server processes need PostgreSQL; SQLite takes --workers 1", EXIT_INPUT)
    from kapflow.http.serve import run  # the serve extra: imported only by this command

    os.environ["KAPFLOW_DB"] = found.url  # each worker process builds its own engine from these
    if found.config is not None:
        os.environ["KAPFLOW_CONFIG"] = str(found.config)
    os.environ["KAPFLOW_LOG_JSON"] = "1" if log_json else "0"
    os.environ["KAPFLOW_SERVE_WORKERS"] = str(workers)
    print(f"kapflow serve: {'https' if cert else 'http'}://{host}:{port}/v1 with {workers} worker(s); "
          "stop with Ctrl-C or SIGTERM", flush=True)
    run(host, port, workers=workers, tls_cert=cert, tls_key=key)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
