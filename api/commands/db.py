"""`briefcast db upgrade | status`: the schema changed once, by one command, where a fleet wants it
so (BRIEFCAST_AUTO_MIGRATE=false); on the embedded default every process may do it (under a lock)."""

from __future__ import annotations

import json

import typer

app = typer.Typer(help="The database schema: its revision, and the one command that upgrades it.",
                  no_args_is_help=True)


@app.command("status")
def status(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """The database's schema revision and the one this briefcast needs; exit 1 when they differ."""
    from store.db import schema_state

    state = schema_state(ctx.obj.settings.db_url)
    current = state["revision"] == state["head"]
    if as_json:
        typer.echo(json.dumps(state | {"current": current}))
    else:
        typer.echo(f"{state['database']}: schema {state['revision'] or 'none (empty database)'}; "
                   f"this briefcast needs {state['head']}" + ("" if current else " — run `briefcast db upgrade`"))
    raise typer.Exit(0 if current else 1)


@app.command("upgrade")
def upgrade(ctx: typer.Context) -> None:
    """Bring the schema to this briefcast's newest revision (once; others wait for the lock)."""
    from store.db import SchemaError, make_engine, migrate, schema_state

    url = ctx.obj.settings.db_url
    before = schema_state(url)["revision"]
    engine = make_engine(url)
    try:
        migrate(engine)
    except SchemaError as error:
        ctx.obj.err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from error
    finally:
        engine.dispose()
    after = schema_state(url)["revision"]
    typer.echo(f"schema {before or 'none'} -> {after}" if before != after else f"schema already at {after}")
