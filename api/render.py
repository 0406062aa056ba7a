"""Terminal output for refresh reports and stored items (rich)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ingest.refresh import RefreshReport, SourceOutcome

STATUS_STYLE = {"new": "green", "not_modified": "cyan", "failed": "red"}


@contextmanager
def source_progress(console: Console, total: int, label: str = "fetching") -> Iterator:
    """A progress bar over sources; yields the callback that advances it."""
    columns = (TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.description}"))
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("", total=total)

        def advance(outcome: SourceOutcome) -> None:
            progress.update(task, advance=1, description=outcome.url[-50:])

        yield advance


def report_table(report: RefreshReport) -> Table:
    table = Table(title="Sources", show_lines=False)
    for column in ("status", "new", "upd", "source", "reason / note"):
        table.add_column(column, overflow="fold")
    for o in sorted(report.sources, key=lambda o: (o.status != "failed", o.url)):
        note = o.error or "; ".join(o.warnings[:2])
        style = STATUS_STYLE.get(o.status, "")
        table.add_row(f"[{style}]{o.status}[/]", str(o.new_items), str(o.updated_items),
                      o.title or o.url, note[:300] if note else "")
    return table


def summary_line(report: RefreshReport) -> str:
    ok = report.count("new")
    return (
        f"{len(report.sources)} sources: {ok} fetched, {report.count('not_modified')} not modified, "
        f"{report.count('failed')} failed; {report.new_items} new items, "
        f"{sum(o.updated_items for o in report.sources)} updated"
    )
