"""`briefcast items list | show | delete`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.table import Table

    from store.models import Item

app = typer.Typer(help="Look at and remove stored items.", no_args_is_help=True)


@app.command("list")
def list_(
    ctx: typer.Context,
    limit: int = typer.Option(20, min=1, max=10_000),
    kind: str | None = typer.Option(None, help="article | episode | post"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Newest stored items first."""
    from sqlalchemy import select

    from store.models import Item

    app_ctx = ctx.obj
    with app_ctx.sessions()() as session:
        query = select(Item).order_by(Item.published.desc().nulls_last(), Item.id.desc()).limit(limit)
        if kind:
            query = query.where(Item.kind == kind)
        rows = [item_summary(i) for i in session.scalars(query)]
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    app_ctx.out.print(items_table(rows, f"{len(rows)} newest items"))


@app.command("delete")
def delete(ctx: typer.Context, item_id: int, reason: str | None = typer.Option(None)) -> None:
    """Delete an item; a tombstone keeps later fetches from bringing it back."""
    from store import repo

    app_ctx = ctx.obj
    with app_ctx.sessions()() as session, session.begin():
        if not repo.delete_item(session, item_id, reason):
            app_ctx.err.print(f"[red]error:[/] no item #{item_id}")
            raise typer.Exit(1)
    app_ctx.out.print(f"deleted item #{item_id} (tombstoned)")


def item_summary(item: Item) -> dict:
    from ingest.text import word_count

    return {
        "id": item.id, "kind": item.kind, "title": item.title, "url": item.url,
        "published": item.published.isoformat() if item.published else None,
        "language": item.language, "words": word_count(item.text), "text_source": item.text_source,
        "truncated": item.truncated, "transcript": item.transcript_status,
        "capped": item.text_capped,  # why the stored text is shorter than what was fetched (store/caps.py)
    }


def items_table(rows: list[dict], title: str) -> Table:
    from rich.table import Table

    table = Table(title=title)
    for column in ("id", "kind", "published", "lang", "words", "text", "title"):
        table.add_column(column, overflow="fold")
    for r in rows:
        text = r["text_source"] + (" (teaser)" if r["truncated"] else "")
        if r["transcript"] == "queued":
            text = "queued for ASR"
        if r.get("capped"):
            text += f" (capped: {r['capped']})"
        table.add_row(str(r["id"]), r["kind"], (r["published"] or "")[:10], r["language"] or "",
                      str(r["words"]), text, r["title"][:90])
    return table
