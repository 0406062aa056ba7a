"""`briefcast serve` and `briefcast apikey create | list | revoke`."""

from __future__ import annotations

import typer
from rich.table import Table

apikey_app = typer.Typer(help="API keys for the HTTP API.", no_args_is_help=True)


def serve(ctx: typer.Context, host: str | None = typer.Option(None), port: int | None = typer.Option(None),
          workers: int = typer.Option(1, min=1)) -> None:
    """Run the HTTP API (uvicorn)."""
    import uvicorn

    settings = ctx.obj.settings
    # Each worker process builds its own app from the same environment (uvicorn needs an import
    # string for more than one worker). h11, named rather than "auto": its size limit refuses a
    # 10 MB request line while parsing it (httptools, if installed, would buffer all of it first).
    # The loop is uvloop when installed (a dependency on Linux), asyncio's otherwise.
    uvicorn.run("api.app:app_from_environment", factory=True, host=host or settings.api_host,
                port=port or settings.api_port, workers=workers, log_level="info",
                http="h11", loop="auto", h11_max_incomplete_event_size=16 * 1024)


@apikey_app.command("create")
def create(ctx: typer.Context, name: str = typer.Option("default", help="who or what the key is for")) -> None:
    """Create a key; it is printed once and stored only as a hash."""
    from store.apikeys import create_key

    with ctx.obj.sessions()() as session, session.begin():
        row, key = create_key(session, name)
        ctx.obj.err.print(f"API key #{row.id} ({name}) — shown once, keep it safe:")
    typer.echo(key)


@apikey_app.command("list")
def list_(ctx: typer.Context) -> None:
    from sqlalchemy import select

    from store.models import ApiKey

    table = Table(title="API keys")
    for column in ("id", "name", "prefix", "created", "last used", "revoked"):
        table.add_column(column)
    with ctx.obj.sessions()() as session:
        for k in session.scalars(select(ApiKey).order_by(ApiKey.id)):
            table.add_row(str(k.id), k.name, k.prefix + "…", k.created_at.isoformat()[:16],
                          k.last_used_at.isoformat()[:16] if k.last_used_at else "", "yes" if k.revoked else "")
    ctx.obj.out.print(table)


@apikey_app.command("revoke")
def revoke(ctx: typer.Context, key_id: int) -> None:
    from store.apikeys import revoke_key

    with ctx.obj.sessions()() as session, session.begin():
        if not revoke_key(session, key_id):
            ctx.obj.err.print(f"[red]error:[/] no key #{key_id}")
            raise typer.Exit(1)
    from api.auth import TRUST_SECONDS

    ctx.obj.out.print(f"revoked key #{key_id}; running servers refuse it within {TRUST_SECONDS:g} s")
