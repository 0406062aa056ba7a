"""`briefcast slack post [--topic T] [--date D]`: post a stored brief to the Slack channel by hand,
through the same exactly-once delivery as the worker (running it twice posts once)."""

from __future__ import annotations

import typer

app = typer.Typer(help="The Slack bot: post the daily brief by hand.", no_args_is_help=True)


@app.command("post")
def post(
    ctx: typer.Context,
    topic: str | None = typer.Option(None, help="default: BRIEFCAST_SLACK_TOPIC"),
    day: str | None = typer.Option(None, "--date", help="YYYY-MM-DD; default: today in the topic's time zone"),
) -> None:
    """Post the stored brief of a topic's day to BRIEFCAST_SLACK_CHANNEL, once."""
    from api.slack.answers import find_brief, topic_today
    from digest.slack import SlackNotConfigured, SlackTransientError, post_brief

    from api.commands.choices import topic_or_exit

    settings, sessions = ctx.obj.settings, ctx.obj.sessions()
    topic = topic_or_exit(ctx.obj, topic or settings.slack_topic)
    day = day or topic_today(settings, topic)[0].isoformat()
    row = find_brief(sessions, topic, day)
    if row is None:
        ctx.obj.err.print(f"[red]error:[/] no brief stored for {topic} on {day}: build it first (briefcast digest)")
        raise typer.Exit(1)
    try:
        outcome = post_brief(settings, sessions, row.id, worker_id="cli")
    except SlackNotConfigured as exc:
        ctx.obj.err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    except SlackTransientError as exc:
        ctx.obj.err.print(f"[yellow]not posted, try again later:[/] {exc.reason}")
        raise typer.Exit(75) from None  # EX_TEMPFAIL
    if outcome.status == "failed":
        ctx.obj.err.print(f"[red]failed:[/] {outcome.error}")
        raise typer.Exit(1)
    ctx.obj.out.print(f"{topic} {day} → {settings.slack_channel}: {outcome.status} (ts {outcome.message_id or '-'})")
