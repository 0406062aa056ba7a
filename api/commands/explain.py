"""`briefcast explain STORY_ID [--topic T] [--day D] [--json]`: why a story ranked where it did.

Prints the story, each part of its score for the topic and day (relevance, corroboration,
novelty, recency, source weight, total, rank) with the inputs behind it, and its members.
Without --day: the latest day the story was scored for the topic.
"""

from __future__ import annotations

import json

import typer

PARTS = ("relevance", "corroboration", "novelty", "recency", "source_weight", "total")


def explain(
    ctx: typer.Context,
    story_id: int = typer.Argument(..., min=1, max=2**63 - 1, help="a story id (see `briefcast stories list`)"),
    topic: str = typer.Option("ai-geopolitics", "--topic", help="topic profile name"),
    day: str | None = typer.Option(None, "--day", help="YYYY-MM-DD; default: the latest day it was scored"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show a story's score parts and its members."""
    from api.commands.choices import topic_or_exit

    app = ctx.obj
    topic = topic_or_exit(app, topic)
    with app.sessions()() as session:
        found = load_explanation(session, story_id, topic, day)
    if isinstance(found, str):
        app.err.print(f"[red]error:[/] {found}")
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(found, indent=2, ensure_ascii=False, default=str))
        return
    print_explanation(app.out, found)


def load_explanation(session, story_id: int, topic: str, day: str | None) -> dict | str:
    """Everything `explain` shows, or the reason it cannot be shown."""
    from sqlalchemy import select

    from digest.cluster import story_members
    from store.models import Source, Story, StoryScore

    story = session.get(Story, story_id)
    if story is None:
        return f"no story #{story_id}"
    query = select(StoryScore).where(StoryScore.story_id == story_id, StoryScore.topic == topic)
    score = session.scalars(query.where(StoryScore.day == day) if day else query.order_by(StoryScore.day.desc())).first()
    members = story_members(session, story_id)
    sources = {s.id: s.title or s.url for s in session.scalars(select(Source).where(
        Source.id.in_({m.source_id for m in members})))}
    publishers = {m.item_id: sources.get(m.source_id) for m in members}
    return {
        "story": {"id": story.id, "title": story.title, "first_seen": story.first_seen, "last_seen": story.last_seen,
                  "items": story.item_count, "corroboration": story.corroboration, "content_hash": story.content_hash,
                  "lead_item_id": story.lead_item_id},
        "score": None if score is None else {"topic": score.topic, "day": score.day, "rank": score.rank,
                                             **{p: getattr(score, p) for p in PARTS}, "details": score.details},
        "scored_for": f"{topic} on {day}" if day else topic,
        "members": [{"item_id": m.item_id, "kind": m.kind, "publisher": publishers.get(m.item_id),
                     "published": m.published, "duplicate_of": m.duplicate_of, "similarity": round(m.similarity, 3),
                     "title": m.title} for m in members],
    }


def print_explanation(out, found: dict) -> None:
    from rich.table import Table

    story = found["story"]
    out.print(f"[bold]Story #{story['id']}[/]: {story['title']}")
    out.print(f"  {story['items']} items, {story['corroboration']} independent publishers; "
              f"seen {story['first_seen']:%Y-%m-%d %H:%M} to {story['last_seen']:%Y-%m-%d %H:%M} UTC; lead item #{story['lead_item_id']}")
    score = found["score"]
    if score is None:
        out.print(f"  not scored for {found['scored_for']} (it was not a candidate that day)")
    else:
        rank = f"rank {score['rank']}" if score["rank"] else "not selected"
        out.print(f"  {score['topic']} on {score['day']}: {rank}; total = " + " x ".join(
            f"{p} {score[p]:.3f}" for p in PARTS[:-1]) + f" = {score['total']:.4f}")
        for part, inputs in (score["details"] or {}).items():
            out.print(f"    {part}: {json.dumps(inputs, ensure_ascii=False, default=str)}")
    table = Table(title="members")
    for column in ("item", "kind", "publisher", "published", "copy of", "sim", "title"):
        table.add_column(column)
    for m in found["members"]:
        table.add_row(str(m["item_id"]), m["kind"], m["publisher"] or "", f"{m['published']:%Y-%m-%d %H:%M}",
                      str(m["duplicate_of"] or ""), f"{m['similarity']:.2f}", m["title"][:80])
    out.print(table)
