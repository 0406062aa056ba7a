"""`briefcast samples serve`: the bundled sample world on loopback, for trying things by hand."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from ingest.localserver import LocalServer

app = typer.Typer(help="The bundled sample world (fictional feeds, podcast, threads).", no_args_is_help=True)
DEFAULT_PORT = 8737


def start_sample_server(port: int = DEFAULT_PORT) -> LocalServer:
    """Serve samples/site on 127.0.0.1, on `port` or any free port when it is taken."""
    from ingest.localserver import LocalServer
    from ingest.sources import bundled

    root = bundled("samples/site")
    try:
        return LocalServer(root, port=port).start()
    except OSError:
        return LocalServer(root, port=0).start()


@app.command("serve")
def serve(ctx: typer.Context, port: int = typer.Option(DEFAULT_PORT)) -> None:
    """Serve the sample world until Ctrl-C."""
    server = start_sample_server(port)
    ctx.obj.out.print(f"serving {server.root} at {server.base_url} (Ctrl-C to stop)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
