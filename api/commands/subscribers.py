"""`briefcast subscribers add | list | remove | unsubscribe`."""

from __future__ import annotations

import json
from dataclasses import asdict

import typer

app = typer.Typer(help="The people who get the email brief.", no_args_is_help=True)
DEFAULT_TOPIC = "ai-geopolitics"


def _known_topics(settings) -> set[str] | None:
    try:
        from digest.topics import list_topics
    except ImportError:  # topic profiles not installed: accept any name
        return None
    return set(list_topics(settings))


def _fail(app_ctx, exc: Exception) -> None:
    from api.commands.choices import fail

    fail(app_ctx, exc)


@app.command("add")
def add(
    ctx: typer.Context,
    email: str = typer.Argument(..., help="the subscriber's address"),
    name: str | None = typer.Option(None, help="display name in the To: header"),
    topic: list[str] = typer.Option([], "--topic", help="a topic to receive (repeatable; replaces the list); "
                                    f"default for a new subscriber: {DEFAULT_TOPIC}"),
    persona: str | None = typer.Option(None, help="whose key takeaway to show, e.g. 'Policy Maker' ('' for the "
                                       "general reader); one of the topics' personas"),
    tz: str | None = typer.Option(None, "--tz", help="IANA time zone, e.g. Europe/Paris; default for a new "
                                  "subscriber: UTC"),
) -> None:
    """Add a subscriber, or change an existing one: only the options given change."""
    from api.commands.choices import UnknownName, checked_persona, topic_or_exit
    from digest.subscribers import SubscriberError, add_subscriber

    app_ctx = ctx.obj
    for name in topic:
        topic_or_exit(app_ctx, name)  # the closest name and the known ones

    def check_persona(wanted: str, topics: list[str]) -> str:
        try:
            return checked_persona(app_ctx.settings, wanted, topics)
        except UnknownName as exc:
            raise SubscriberError(str(exc)) from None

    try:
        view, created = add_subscriber(app_ctx.sessions(), email, name=name, topics=topic, persona=persona,
                                       timezone=tz, known_topics=_known_topics(app_ctx.settings),
                                       default_topics=[DEFAULT_TOPIC], check_persona=check_persona)
    except SubscriberError as exc:
        _fail(app_ctx, exc)
    word = "added" if created else "updated"
    app_ctx.out.print(f"{word}: #{view.id} {view.email} — topics {', '.join(view.topics)}; "
                      f"persona {view.persona or 'default'}; time zone {view.timezone}", highlight=False, markup=False)


@app.command("list")
def list_(
    ctx: typer.Context,
    topic: str | None = typer.Option(None, help="only subscribers of this topic"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List subscribers."""
    from rich.table import Table

    from digest.subscribers import list_subscribers

    from api.commands.choices import topic_or_exit

    app_ctx = ctx.obj
    rows = list_subscribers(app_ctx.sessions(), topic=topic_or_exit(app_ctx, topic))
    if as_json:
        app_ctx.out.print_json(json.dumps([{k: v for k, v in asdict(r).items() if k != "unsubscribe_token"} for r in rows]))
        return
    table = Table("id", "email", "name", "topics", "persona", "time zone", "active", title="Subscribers")
    for r in rows:
        table.add_row(str(r.id), r.email, r.name or "", ", ".join(r.topics), r.persona or "", r.timezone,
                      "yes" if r.active else "no")
    app_ctx.out.print(table)


@app.command("remove")
def remove(ctx: typer.Context, subscriber: str = typer.Argument(..., help="email address or id")) -> None:
    """Delete a subscriber (their delivery history stays)."""
    from digest.subscribers import SubscriberError, remove_subscriber

    app_ctx = ctx.obj
    try:
        view = remove_subscriber(app_ctx.sessions(), subscriber)
    except SubscriberError as exc:
        _fail(app_ctx, exc)
    app_ctx.out.print(f"removed: #{view.id} {view.email}")


@app.command("unsubscribe")
def unsubscribe_(ctx: typer.Context, token: str = typer.Argument(..., help="the token from an unsubscribe link")) -> None:
    """Deactivate the subscriber an unsubscribe link (or mailto request) belongs to."""
    from digest.subscribers import SubscriberError, unsubscribe

    app_ctx = ctx.obj
    view = unsubscribe(app_ctx.sessions(), token)
    if view is None:
        _fail(app_ctx, SubscriberError("no subscriber has that unsubscribe token"))
    app_ctx.out.print(f"unsubscribed: #{view.id} {view.email}")
