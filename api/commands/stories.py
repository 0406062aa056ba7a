"""`briefcast stories list [--day D] [--topic T] [--members] [--json]`: a day's stories with their ids,
titles, members and scores (the ids `briefcast explain` and the story pages take)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta

import typer

app = typer.Typer(help="The stories items were clustered into, and how they ranked.", no_args_is_help=True)
DEFAULT_TOPIC = "ai-geopolitics"


@app.command("list")
def list_(
    ctx: typer.Context,
    day: str | None = typer.Option(None, "--day", help="YYYY-MM-DD, today or yesterday; default: today in the "
                                   "topic's time zone, else the latest ranked day"),
    topic: str = typer.Option(DEFAULT_TOPIC, "--topic", help="topic profile name"),
    members: bool = typer.Option(False, "--members", help="list each story's items under it"),
    limit: int = typer.Option(50, min=1, max=10_000, help="at most this many stories"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Stories ranked for the topic on a day (or, before the ranking ran, the stories seen that day)."""
    from api.commands.choices import UnknownName, checked_topic, fail
    from api.commands.digest import parse_day
    from digest.topics import load_topic

    app_ctx = ctx.obj
    try:
        profile = load_topic(app_ctx.settings, checked_topic(app_ctx.settings, topic))
        wanted = parse_day(day, profile.zone)
    except (UnknownName, ValueError) as exc:
        fail(app_ctx, exc)
    with app_ctx.sessions()() as session:
        shown, note = _choose_day(session, topic, wanted, explicit=day is not None)
        rows = ranked_stories(session, topic, shown, limit) or seen_stories(session, shown, profile.zone, limit)
        for row in rows:
            row["members"] = story_members(session, row["id"])
    if as_json:
        typer.echo(json.dumps({"topic": topic, "day": shown.isoformat(), "stories": rows}, indent=2, ensure_ascii=False))
        return
    _print(app_ctx.out, topic, shown, rows, note, members)


def _choose_day(session, topic: str, wanted: date, *, explicit: bool) -> tuple[date, str]:
    """Today unless nothing was ranked today and no day was asked for: then the latest ranked day."""
    from sqlalchemy import func, select

    from store.models import StoryScore

    if explicit or session.scalar(select(func.count()).where(StoryScore.topic == topic,
                                                             StoryScore.day == wanted.isoformat())):
        return wanted, ""
    latest = session.scalar(select(func.max(StoryScore.day)).where(StoryScore.topic == topic))
    if latest is None:
        return wanted, ""
    return date.fromisoformat(latest), f"nothing ranked for {wanted} yet; showing the latest ranked day"


def ranked_stories(session, topic: str, day: date, limit: int) -> list[dict]:
    """The day's scores for the topic: selected stories first (by rank), then the rest by score."""
    from sqlalchemy import select

    from store.models import Story, StoryScore

    query = (select(Story, StoryScore).join(StoryScore, StoryScore.story_id == Story.id)
             .where(StoryScore.topic == topic, StoryScore.day == day.isoformat())
             .order_by(StoryScore.rank.is_(None), StoryScore.rank, StoryScore.total.desc()).limit(limit))
    return [_row(story, score) for story, score in session.execute(query).all()]


def seen_stories(session, day: date, zone, limit: int) -> list[dict]:
    """Not ranked for the day yet: the stories last seen on it (in the topic's time zone), newest first."""
    from sqlalchemy import select

    from store.models import Story

    start = datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)
    query = (select(Story).where(Story.last_seen >= start, Story.last_seen < start + timedelta(days=1))
             .order_by(Story.last_seen.desc()).limit(limit))
    return [_row(story, None) for story in session.scalars(query)]


def _row(story, score) -> dict:
    parts = None if score is None else {
        "rank": score.rank, "total": round(score.total, 4), "relevance": round(score.relevance, 4),
        "corroboration": round(score.corroboration, 4), "novelty": round(score.novelty, 4),
        "recency": round(score.recency, 4), "source_weight": round(score.source_weight, 4)}
    return {"id": story.id, "title": story.title, "items": story.item_count, "publishers": story.corroboration,
            "first_seen": _iso(story.first_seen), "last_seen": _iso(story.last_seen), "score": parts}


def story_members(session, story_id: int) -> list[dict]:
    from sqlalchemy import select

    from store.models import Item, Source, StoryItem

    query = (select(StoryItem, Item, Source).join(Item, StoryItem.item_id == Item.id)
             .join(Source, Item.source_id == Source.id).where(StoryItem.story_id == story_id)
             .order_by(Item.published.desc().nulls_last(), Item.id))
    return [{"item_id": item.id, "title": item.title, "kind": item.kind, "source": source.title or source.url,
             "url": item.url, "published": _iso(item.published), "similarity": round(member.similarity, 3),
             "duplicate_of": member.duplicate_of} for member, item, source in session.execute(query).all()]


def _print(out, topic: str, day: date, rows: list[dict], note: str, members: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    ranked = any(r["score"] for r in rows)
    title = f"{len(rows)} stories, {topic}, {day}" + ("" if ranked or not rows else " (not ranked yet: the ranking "
                                                    "runs when the day's brief is built)")
    if note:
        out.print(f"[dim]{escape(note)}[/]")
    table = Table(title=escape(title))
    for column in ("id", "rank", "score", "relevance", "items", "publishers", "title"):
        table.add_column(column, overflow="fold", justify="right" if column not in ("title",) else "left")
    for r in rows:
        s = r["score"] or {}
        text = escape(r["title"] or "(untitled)")
        if members:
            text += "".join(f"\n  [dim]#{m['item_id']} {escape(m['source'])}: {escape(m['title'][:80])}"
                            f"{' (copy)' if m['duplicate_of'] else ''}[/]" for m in r["members"])
        table.add_row(str(r["id"]), str(s.get("rank") or "-"), f"{s['total']:.3f}" if s else "-",
                      f"{s['relevance']:.2f}" if s else "-", str(r["items"]), str(r["publishers"]), text)
    out.print(table)
    if rows:
        out.print("[dim]Why a story ranked where it did: briefcast explain ID --day "
                  f"{day}{'' if topic == DEFAULT_TOPIC else ' --topic ' + escape(topic)}[/]")


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="seconds") if value else None
