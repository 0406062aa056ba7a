"""`briefcast search "query"`."""

from __future__ import annotations

import json
from datetime import datetime

import typer
from rich.table import Table


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _check_topic(app, topic: str) -> None:
    """A topic no source has would match nothing: refused with the sources' topics listed (read
    from the database, not the topic profiles: search does not load digest)."""
    from sqlalchemy import select

    from api.commands.choices import fail, unknown
    from store.models import Source

    with app.sessions()() as session:
        known = sorted(t for t in session.scalars(select(Source.topic).distinct()) if t)
    if topic not in known:
        fail(app, unknown("topic", topic, known, " (the topics of your sources)"))


def search(
    ctx: typer.Context,
    query: str,
    k: int = typer.Option(10, min=1, max=50),
    kind: str | None = typer.Option(None, help="article | episode | post"),
    since: datetime | None = typer.Option(None, help="only items published since (YYYY-MM-DD)"),
    until: datetime | None = typer.Option(None),
    lang: str | None = typer.Option(None),
    source: str | None = typer.Option(None, help="source id or URL"),
    topic: str | None = typer.Option(None, help="only sources of this topic"),
    mode: str = typer.Option("hybrid", help="hybrid | vector | keyword"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Semantic search over stored passages."""
    from embed.encoder import EncoderError
    from embed.index import IndexMismatchError
    from embed.runtime import search_context
    from embed.search import SearchFilters
    from embed.search import search as run_search

    app = ctx.obj
    if topic is not None:
        _check_topic(app, topic)
    context = search_context(app.settings, app.sessions())
    filters = SearchFilters(since=since, until=until, kind=kind, language=lang, source=source, topic=topic)
    try:
        hits = run_search(context, query, k=k, filters=filters, mode=mode)
    except (IndexMismatchError, EncoderError) as exc:  # a rebuild or an install step to name, not a traceback
        app.err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    if as_json:
        rows = [vars(h) | {"published": h.published.isoformat() if h.published else None} for h in hits]
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    table = Table(title=f"{len(hits)} results for {query!r}", show_lines=True)
    for column in ("#", "score", "source", "when", "passage"):
        table.add_column(column, overflow="fold")
    for n, h in enumerate(hits, 1):
        where = h.published.date().isoformat() if h.published else ""
        if h.start is not None:
            where += f"\n@{_clock(h.start)}"
        table.add_row(str(n), f"{h.score:.4f}", f"{h.source}\n[dim]{h.kind}[/]", where,
                      f"[bold]{h.title}[/]\n{h.text[:400]}{'…' if len(h.text) > 400 else ''}\n[dim]{h.link or h.url or ''}[/]")
    app.out.print(table)
