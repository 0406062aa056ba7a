"""`briefcast fetch`: refresh every due source and say what happened to each."""

from __future__ import annotations

import json

import typer


def fetch(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="print the outcome as one JSON object"),
    all_sources: bool = typer.Option(False, "--all", help="fetch every source, due or not"),
) -> None:
    """Refresh every due source, then print per-source outcomes and a summary line."""
    from api.render import report_table, source_progress, summary_line
    from ingest.refresh import refresh

    app = ctx.obj
    sessions = app.sessions()
    with source_progress(app.err, total=_due_count(app, all_sources)) as advance:
        report = refresh(app.settings, sessions, force=all_sources, on_done=advance)
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2))
        return
    if report.sources:
        app.out.print(report_table(report))
    app.out.print(summary_line(report))


def _due_count(app, all_sources: bool) -> int:
    from datetime import UTC, datetime

    from store import repo

    with app.sessions()() as session:
        return len(repo.due_sources(session, datetime.now(UTC), force=all_sources))
