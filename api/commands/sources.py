"""`briefcast sources add | import | list | weight`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

# ingest.sources.MAX_WEIGHT, restated for the help texts so that the command line does not import
# ingest to start (tests/test_cli_speed.py holds the two equal).
MAX_WEIGHT = 10.0

app = typer.Typer(help="Manage the feeds, podcasts and threads briefcast reads.", no_args_is_help=True)


@app.command("add")
def add(
    ctx: typer.Context,
    url: str,
    kind: str = typer.Option("feed", help="feed | podcast | thread"),
    topic: str | None = typer.Option(None, help="topic this source feeds, e.g. ai-geopolitics"),
    title: str | None = typer.Option(None, help="display name"),
    weight: float | None = typer.Option(None, help=f"ranking weight, 0 to {MAX_WEIGHT:g} (default 1)"),
) -> None:
    """Add one source by URL (an existing one keeps its settings; --weight still applies)."""
    from ingest.sources import KINDS
    from ingest.ssrf import BlockedAddressError, check_url_now, parse_networks
    from ingest.urls import is_http_url
    from store import repo

    app_ctx = ctx.obj
    if kind not in KINDS:
        raise typer.BadParameter(f"kind must be one of {', '.join(KINDS)}", param_hint="--kind")
    weight = _checked_weight(weight)
    if not is_http_url(url):
        raise typer.BadParameter("only http:// and https:// URLs can be fetched", param_hint="URL")
    try:
        check_url_now(url, app_ctx.settings.allow_private_addresses, parse_networks(app_ctx.settings.allowed_networks))
    except BlockedAddressError as exc:
        app_ctx.err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    with app_ctx.sessions()() as session, session.begin():
        source, created = repo.add_source(session, url, kind=kind, topic=topic, title=title, weight=weight)
        word = "added" if created else "already present"
        app_ctx.out.print(f"{word}: #{source.id} {source.url} ({source.kind}, weight {source.weight:g})")


@app.command("weight")
def set_weight(
    ctx: typer.Context,
    source_id: int = typer.Argument(..., help="the source's id (see `briefcast sources list`)"),
    weight: float = typer.Argument(..., help=f"0 mutes the source in the ranking, 1 is the default, up to {MAX_WEIGHT:g}"),
) -> None:
    """Set how much a source's stories count in the daily ranking."""
    from store.models import Source

    app_ctx = ctx.obj
    weight = _checked_weight(weight)
    with app_ctx.sessions()() as session, session.begin():
        source = session.get(Source, source_id)
        if source is None:
            app_ctx.err.print(f"[red]error:[/] no source #{source_id}")
            raise typer.Exit(2)
        before, source.weight = source.weight, weight
        app_ctx.out.print(f"#{source.id} {source.title or source.url}: weight {before:g} -> {weight:g}")


def _checked_weight(weight: float | None) -> float | None:
    from ingest.sources import SourceListError, check_weight

    try:
        return None if weight is None else check_weight(weight)
    except SourceListError as exc:
        raise typer.BadParameter(str(exc), param_hint="WEIGHT") from None


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="an OPML file (or briefcast sources TOML)"),
    topic: str | None = typer.Option(None, help="topic for every imported source without one"),
) -> None:
    """Import sources from an OPML subscription list."""
    from ingest.sources import SourceListError, load_sources_toml, parse_opml
    from ingest.ssrf import parse_networks, refused_urls
    from store import repo

    app_ctx = ctx.obj
    try:
        specs = load_sources_toml(file) if file.suffix == ".toml" else parse_opml(file.read_bytes())
    except SourceListError as exc:
        app_ctx.err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    added = 0
    settings = app_ctx.settings
    refused = refused_urls([s.url for s in specs], settings.allow_private_addresses,
                           parse_networks(settings.allowed_networks))
    with app_ctx.sessions()() as session, session.begin():
        for spec in specs:
            if spec.url in refused:
                app_ctx.err.print(f"[yellow]skipped:[/] {refused[spec.url]}")
                continue
            _, created = repo.add_source(session, spec.url, kind=spec.kind, topic=spec.topic or topic,
                                         title=spec.title, weight=spec.weight)
            added += created
    app_ctx.out.print(f"{len(specs)} sources in {file.name}: {added} added, "
                      f"{len(specs) - added - len(refused)} already present, {len(refused)} refused")


@app.command("list")
def list_(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """List sources with their state."""
    from rich.table import Table
    from sqlalchemy import func, select

    from store import repo
    from store.models import Item

    app_ctx = ctx.obj
    with app_ctx.sessions()() as session:
        counts = dict(session.execute(select(Item.source_id, func.count()).group_by(Item.source_id)).all())
        rows = [
            {
                "id": s.id, "url": s.url, "kind": s.kind, "topic": s.topic, "title": s.title, "weight": s.weight,
                "items": counts.get(s.id, 0), "last_status": s.last_status, "last_error": s.last_error,
                "next_due_at": s.next_due_at.isoformat() if s.next_due_at else None,
            }
            for s in repo.list_sources(session)
        ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{len(rows)} sources")
    for column in ("id", "kind", "topic", "weight", "items", "status", "next due", "source"):
        table.add_column(column, overflow="fold")
    for r in rows:
        status = r["last_status"] or "never fetched"
        if r["last_error"]:
            status += f": {r['last_error'][:80]}"
        table.add_row(str(r["id"]), r["kind"], r["topic"] or "", f"{r['weight']:g}", str(r["items"]), status,
                      (r["next_due_at"] or "now")[:16], r["title"] or r["url"])
    app_ctx.out.print(table)
