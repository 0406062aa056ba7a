"""`briefcast sources add | import | list | weight | edit | remove`."""

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
    """Add one source by URL (an existing one keeps its settings; --weight still applies; a removed one is fetched again)."""
    from ingest.sources import KINDS
    from ingest.ssrf import BlockedAddressError, check_url_now, parse_networks
    from ingest.urls import is_http_url
    from store import repo

    from api.commands.choices import topic_or_exit

    app_ctx = ctx.obj
    if kind not in KINDS:
        raise typer.BadParameter(f"kind must be one of {', '.join(KINDS)}", param_hint="--kind")
    weight = _checked_weight(weight)
    topic = topic_or_exit(app_ctx, topic)
    if not is_http_url(url):
        raise typer.BadParameter("only http:// and https:// URLs can be fetched", param_hint="URL")
    try:
        check_url_now(url, app_ctx.settings.allow_private_addresses, parse_networks(app_ctx.settings.allowed_networks))
    except BlockedAddressError as exc:
        app_ctx.err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    with app_ctx.sessions()() as session, session.begin():
        before = repo.find_source(session, url)
        was_removed = before is not None and not before.active
        source, created = repo.add_source(session, url, kind=kind, topic=topic, title=title, weight=weight)
        word = "added" if created else "added again (it was removed; its deleted items stay deleted)" if was_removed \
            else "already present"
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
    topic: str | None = typer.Option(None, help="topic for every imported source: wins over OPML folders and "
                                     "the file's own topics"),
) -> None:
    """Import sources from an OPML subscription list (or a sources TOML).

    Without --topic, an OPML folder whose title names a topic ("AI Geopolitics" for ai-geopolitics)
    gives its sources that topic; other folders are reported and their sources get no topic (they
    feed every topic). A topic a TOML file names must exist."""
    from api.commands.choices import fail, topic_or_exit
    from ingest.sources import SourceListError, load_sources_toml, parse_opml
    from ingest.ssrf import parse_networks, refused_urls
    from store import repo

    app_ctx = ctx.obj
    topic = topic_or_exit(app_ctx, topic)
    try:
        specs = load_sources_toml(file) if file.suffix == ".toml" else parse_opml(file.read_bytes())
    except SourceListError as exc:
        fail(app_ctx, exc)
    specs = _with_topics(app_ctx, specs, topic, from_folders=file.suffix != ".toml")
    added = 0
    settings = app_ctx.settings
    refused = refused_urls([s.url for s in specs], settings.allow_private_addresses,
                           parse_networks(settings.allowed_networks))
    with app_ctx.sessions()() as session, session.begin():
        for spec in specs:
            if spec.url in refused:
                app_ctx.err.print(f"[yellow]skipped:[/] {refused[spec.url]}")
                continue
            _, created = repo.add_source(session, spec.url, kind=spec.kind, topic=spec.topic,
                                         title=spec.title, weight=spec.weight)
            added += created
    app_ctx.out.print(f"{len(specs)} sources in {file.name}: {added} added, "
                      f"{len(specs) - added - len(refused)} already present, {len(refused)} refused")


def _with_topics(app_ctx, specs: list, topic: str | None, *, from_folders: bool) -> list:
    """Each spec's topic: the flag's when given; else an OPML folder's when it names a topic, or
    none (said, per folder); else the TOML's own, which must be a known topic (exit 2)."""
    from collections import Counter
    from dataclasses import replace

    from rich.markup import escape

    from api.commands.choices import fail, topic_for_folder, topic_profiles, unknown

    if topic is not None:
        return [replace(s, topic=topic) for s in specs]
    known = sorted(topic_profiles(app_ctx.settings))
    if not from_folders:
        for n, spec in enumerate(specs, 1):
            if spec.topic is not None and spec.topic not in known:
                fail(app_ctx, f"source #{n} ({spec.url}): {unknown('topic', spec.topic, known)}")
        return specs
    mapped = [replace(s, topic=topic_for_folder(s.topic, known) if s.topic else None) for s in specs]
    strays = Counter(s.topic for s, m in zip(specs, mapped) if s.topic and m.topic is None)
    for folder, count in strays.items():
        app_ctx.err.print(f"[yellow]note:[/] " + escape(f"folder {folder!r} is not a topic: its {count} source(s) get "
                          f"no topic (they feed every topic). Known topics: {', '.join(known) or 'none'}; "
                          "--topic T puts every source under one."), highlight=False)
    return mapped


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
                "next_due_at": s.next_due_at.isoformat() if s.next_due_at else None, "active": s.active,
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
        if not r["active"]:
            status = "removed (not fetched)"
        elif r["last_error"]:
            status += f": {r['last_error'][:80]}"
        table.add_row(str(r["id"]), r["kind"], r["topic"] or "", f"{r['weight']:g}", str(r["items"]), status,
                      (r["next_due_at"] or "now")[:16] if r["active"] else "", r["title"] or r["url"])
    app_ctx.out.print(table)


@app.command("remove")
def remove(
    ctx: typer.Context,
    source: str = typer.Argument(..., help="the source's id or its exact feed URL"),
    purge: bool = typer.Option(False, "--purge", help="also delete its items (tombstoned: never fetched back); "
                               "their passages leave the search index at the next embed"),
) -> None:
    """Stop fetching a source. Its items stay (searchable, in briefs) unless --purge."""
    from api.commands.choices import fail
    from store import repo

    app_ctx = ctx.obj
    with app_ctx.sessions()() as session, session.begin():
        row = repo.find_source(session, source)
        if row is None:
            fail(app_ctx, f"no source {source!r} (see `briefcast sources list`)")
        row.active = False  # kept, inactive: its tombstones keep a re-added feed from bringing items back
        name = f"#{row.id} {row.title or row.url}"
        items, passages = repo.purge_source_items(session, row.id, reason="source removed") if purge else (0, 0)
        kept = 0 if purge else _item_count(session, row.id)
    if purge:
        app_ctx.out.print(f"removed {name}: {items} items deleted (tombstoned), {passages} passages; "
                          "search skips them now and `briefcast embed` drops them from the index")
    else:
        app_ctx.out.print(f"removed {name}: no longer fetched; its {kept} items are kept (--purge deletes them)")


def _item_count(session, source_id: int) -> int:
    from sqlalchemy import func, select

    from store.models import Item

    return session.scalar(select(func.count()).select_from(Item).where(Item.source_id == source_id))


@app.command("edit")
def edit(
    ctx: typer.Context,
    source: str = typer.Argument(..., help="the source's id or its exact feed URL"),
    topic: str | None = typer.Option(None, help="a known topic, or '' for none (the source then feeds every topic)"),
    weight: float | None = typer.Option(None, help=f"ranking weight, 0 to {MAX_WEIGHT:g}"),
    title: str | None = typer.Option(None, help="display name ('' to use the feed's own)"),
    kind: str | None = typer.Option(None, help="feed | podcast | thread"),
) -> None:
    """Change a source's topic, weight, title or kind (only what is given)."""
    from api.commands.choices import fail, topic_or_exit
    from ingest.sources import KINDS
    from store import repo

    app_ctx = ctx.obj
    if topic is None and weight is None and title is None and kind is None:
        fail(app_ctx, "nothing to change: give --topic, --weight, --title or --kind")
    if kind is not None and kind not in KINDS:
        fail(app_ctx, f"--kind must be one of {', '.join(KINDS)}")
    weight = _checked_weight(weight)
    topic = topic_or_exit(app_ctx, topic) if topic else topic
    changes = {k: v for k, v in {"topic": topic, "weight": weight, "title": title, "kind": kind}.items() if v is not None}
    with app_ctx.sessions()() as session, session.begin():
        row = repo.find_source(session, source)
        if row is None:
            fail(app_ctx, f"no source {source!r} (see `briefcast sources list`)")
        said = []
        for field, value in changes.items():
            value = value or None if field in ("topic", "title") else value  # '' clears
            before = getattr(row, field)
            setattr(row, field, value)
            said.append(f"{field} {_shown(before)} -> {_shown(value)}")
        app_ctx.out.print(f"#{row.id} {row.title or row.url}: " + "; ".join(said), highlight=False, markup=False)


def _shown(value) -> str:
    if value is None:
        return "(none)"
    return f"{value:g}" if isinstance(value, float) else str(value)
