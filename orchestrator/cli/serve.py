"""``mco serve``: run the model server for a bundle on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli._common import OutputFormat, OutputOpt, err_console
from orchestrator.serving.limits import ConnectionLimits


def serve(
    bundle_dir: Annotated[Path, typer.Argument(help="model bundle directory")],
    port: Annotated[int, typer.Option(help="TCP port")] = 8080,
    host: Annotated[str, typer.Option(help="address to bind; loopback by default")] = "127.0.0.1",
    digest: Annotated[str | None, typer.Option(help="refuse to serve unless the bundle has this digest")] = None,
    max_body_bytes: Annotated[int, typer.Option(help="larger request bodies get 413")] = 1 << 20,
    header_timeout: Annotated[float, typer.Option(help="seconds a client has to send a request's headers (408)")]
        = ConnectionLimits.header_timeout,
    body_timeout: Annotated[float, typer.Option(help="seconds a client has to send a body once its headers are in (408)")]
        = ConnectionLimits.body_timeout,
    max_requests_in_flight: Annotated[int, typer.Option(help="more concurrent requests get 503 with Retry-After")]
        = ConnectionLimits.max_requests_in_flight,
    max_connections: Annotated[int, typer.Option(help="more open connections get 503")]
        = ConnectionLimits.max_connections,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Serve a bundle: /v1/predict, /healthz, /readyz, /v1/model, /metrics.

    With --output json, one JSON line on stdout says where it serves (for scripts that start it)."""
    import json

    from orchestrator.serving.run import run_server

    err_console.print(f"verifying {bundle_dir} and serving on http://{host}:{port}")
    if output == OutputFormat.json:
        typer.echo(json.dumps({"event": "serving", "url": f"http://{host}:{port}", "bundle": str(bundle_dir)}))
    limits = ConnectionLimits(header_timeout=header_timeout, body_timeout=body_timeout,
                              max_requests_in_flight=max_requests_in_flight, max_connections=max_connections)
    run_server(bundle_dir, host=host, port=port, expected_digest=digest, max_body_bytes=max_body_bytes,
               limits=limits)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
