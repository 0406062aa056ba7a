"""`briefcast run`: the main job on the embedded default.

With internet it reads the real default sources (sources/default.toml or BRIEFCAST_SOURCES);
offline it serves the bundled sample world on loopback and reads that instead. Either way the
same path follows: ingest, embed, one demo search, then today's brief for the first topic
(stories, ranking, grounded summaries with the configured summariser — extractive by default),
written as .html, .txt, .json and a ready-to-send .eml, with its top five insights printed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from ingest.sources import SourceSpec
    from store.settings import Settings

PROBE_SECONDS = 4.0


def run(
    ctx: typer.Context,
    offline: bool = typer.Option(False, "--offline", help="use the bundled sample world without probing the internet"),
) -> None:
    """Fetch the sources (real ones when reachable, else the sample world) and show what was stored."""
    from api.commands.samples import start_sample_server
    from api.render import report_table, source_progress, summary_line
    from ingest.refresh import refresh
    from ingest.sources import bundled, load_sources_toml

    app = ctx.obj
    settings: Settings = app.settings
    _check_mail_settings(app)
    specs = _configured_sources(settings)
    server = None
    if offline or not _any_reachable(settings, specs):
        server = start_sample_server()
        app.out.print(f"[bold]Offline[/]: serving the bundled sample world at {server.base_url}")
        # The sample server is on loopback: let the guard through for this run only.
        settings = settings.model_copy(update={"allow_private_addresses": True})
        specs = load_sources_toml(bundled("samples/sources.toml"), base_url=server.base_url)
    else:
        app.out.print(f"[bold]Online[/]: reading {len(specs)} configured sources")
    try:
        sessions = app.sessions()
        source_ids = _register(sessions, specs)
        with source_progress(app.err, total=len(source_ids)) as advance:
            report = refresh(settings, sessions, force=True, source_ids=source_ids, on_done=advance)
    finally:
        if server:
            server.stop()
    app.out.print(report_table(report))
    app.out.print(summary_line(report))
    _print_stored(app, sessions, source_ids)
    encoder = _embed_and_show(ctx, sessions)
    _brief_and_show(ctx, sessions, encoder)


DEMO_QUERY = "How are Chinese open-weight models changing the balance with US closed models?"


def _embed_and_show(ctx: typer.Context, sessions):
    """Index what was stored and answer one question from it, to show the search works."""
    from api.commands.embed import run_embed
    from embed.runtime import search_context
    from embed.search import search

    encoder = run_embed(ctx, rebuild=False)
    context = search_context(ctx.obj.settings, sessions)
    context.encoder_factory = lambda: encoder  # loaded once for embedding; MiniLM takes ~10 s
    hits = search(context, DEMO_QUERY, k=3)
    ctx.obj.out.print(f"\n[bold]Search[/]: {DEMO_QUERY}")
    for n, hit in enumerate(hits, 1):
        ctx.obj.out.print(f"  {n}. {hit.title} — {hit.source} ({hit.kind})\n     {hit.text[:160]}…")
    ctx.obj.out.print('Ask your own: .venv/bin/briefcast search "..."  ·  API: briefcast apikey create; briefcast serve')
    return encoder


BRIEF_TOPIC = "ai-geopolitics"


def _check_mail_settings(app) -> None:
    """The .eml needs a sender address: say so before the run, not after minutes of work."""
    from digest.mail import MailConfigError, sender_address

    try:
        sender_address(app.settings.smtp_from)
    except MailConfigError as exc:
        app.err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


def _brief_and_show(ctx: typer.Context, sessions, encoder) -> None:
    """Today's brief (in the topic's time zone), as files; its top five in the terminal."""
    from datetime import datetime

    from api.commands.digest import print_top_insights
    from digest.compose import build_daily_brief
    from digest.mail import write_brief_files
    from digest.topics import load_topic

    app = ctx.obj
    settings: Settings = app.settings
    today = datetime.now(load_topic(settings, BRIEF_TOPIC).zone).date()
    with app.err.status(f"building today's {BRIEF_TOPIC} brief…"):
        _, brief = build_daily_brief(settings, sessions, BRIEF_TOPIC, today, encoder=encoder)
        files = write_brief_files(settings, brief)
    app.out.print(f"\n[bold]Brief[/]: {files.html.resolve()}")
    print_top_insights(app.out, brief)
    app.out.print(f"\n[bold]Email[/] ready to send: {files.eml.resolve()}  (beside it: {files.text.name}, {files.json.name})")
    app.out.print("Send it: briefcast subscribers add you@example.org; set BRIEFCAST_SMTP_HOST/_PORT/_FROM; "
                  "briefcast digest --send")


def _configured_sources(settings: Settings) -> list[SourceSpec]:
    from ingest.sources import bundled, load_sources_toml, parse_opml

    path = Path(settings.sources) if settings.sources else bundled("sources/default.toml")
    if path.suffix.lower() in (".opml", ".xml"):
        return parse_opml(path.read_bytes())
    return load_sources_toml(path)


def _any_reachable(settings: Settings, specs: list[SourceSpec]) -> bool:
    """True when at least one of the first few sources answers within a few seconds."""
    import asyncio

    from ingest.fetch import Fetcher

    if not specs:
        return False
    probe = settings.model_copy(update={"total_timeout": PROBE_SECONDS, "connect_timeout": PROBE_SECONDS})

    async def check() -> bool:
        async with Fetcher(probe) as fetcher:
            results = await asyncio.gather(*(fetcher.get(s.url) for s in specs[:3]))
        return any(r.ok or r.not_modified for r in results)

    return asyncio.run(check())


def _register(sessions, specs: list[SourceSpec]) -> list[int]:
    from store import repo

    with sessions() as session, session.begin():
        return [repo.add_source(session, s.url, kind=s.kind, topic=s.topic, title=s.title,
                                weight=s.weight)[0].id for s in specs]


def _print_stored(app, sessions, source_ids: list[int]) -> None:
    from sqlalchemy import func, select

    from api.commands.items import item_summary, items_table
    from store.models import Item, Source

    with sessions() as session:
        by_kind = dict(session.execute(
            select(Item.kind, func.count()).where(Item.source_id.in_(source_ids)).group_by(Item.kind)
        ).all())
        queued = session.scalar(select(func.count()).where(Item.source_id.in_(source_ids), Item.transcript_status == "queued"))
        newest = session.scalars(
            select(Item).where(Item.source_id.in_(source_ids)).order_by(Item.published.desc().nulls_last()).limit(15)
        ).all()
        rows = [item_summary(i) for i in newest]
        n_sources = session.scalar(select(func.count()).select_from(Source))
    app.out.print(items_table(rows, "Newest stored items"))
    kinds = ", ".join(f"{n} {k}s" for k, n in sorted(by_kind.items())) or "no items"
    app.out.print(f"[bold]Stored[/]: {kinds} from {len(source_ids)} sources "
                  f"({n_sources} sources in the database); {queued or 0} episodes queued for transcription")
    app.out.print(f"Database: {app.settings.db_url}")
