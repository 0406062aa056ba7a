"""`briefcast digest [--date D] [--topic T] [--out DIR] [--send] [--rebuild]`: a topic's daily brief as files,
and by email."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

if TYPE_CHECKING:
    from store.settings import Settings

DEFAULT_TOPIC = "ai-geopolitics"


def digest(
    ctx: typer.Context,
    day: str | None = typer.Option(None, "--date", help="YYYY-MM-DD, today or yesterday; default: today in the topic's time zone"),
    topic: str = typer.Option(DEFAULT_TOPIC, "--topic", help="topic profile name"),
    out: Path | None = typer.Option(None, "--out", file_okay=False, help="directory for the files; default data/briefs/TOPIC/DATE"),
    send: bool = typer.Option(False, "--send", help="email it to every active subscriber of the topic (once each)"),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="with --send: try again where a server refused for good"),
    rebuild: bool = typer.Option(False, "--rebuild", help="build the day's brief anew (after changing the summariser "
                                 "or the topic profile); refused once any of it was sent"),
    to: str | None = typer.Option(None, "--to", help="with --send: send it now to this one address only, as a test "
                                  "(no subscriber needed, not recorded as the day's delivery)"),
    persona: str | None = typer.Option(None, "--persona", help="with --to: the cards this persona's readers get"),
) -> None:
    """Build (or load) the day's brief, write .html, .txt, .json and .eml, and optionally send it."""
    from api.commands.choices import UnknownName, checked_persona, checked_topic, fail
    from digest.compose import BriefAlreadySent, build_daily_brief
    from digest.mail import MailConfigError, sender_address, write_brief_files
    from digest.subscribers import SubscriberError, normalise_email
    from digest.topics import TopicError, load_topic

    app = ctx.obj
    settings: Settings = app.settings
    try:
        profile = load_topic(settings, checked_topic(settings, topic))
        when = parse_day(day, profile.zone)
        sender_address(settings.smtp_from)  # before minutes of work, not after
        _check_test_options(send, to, persona, retry_failed)
        to = normalise_email(to) if to is not None else None
        persona = checked_persona(settings, persona, [topic]) if persona else None
    except (TopicError, MailConfigError, ValueError, UnknownName, SubscriberError) as exc:
        fail(app, exc)
    sessions = app.sessions()
    try:
        with app.err.status(f"building the {topic} brief for {when}…"):
            brief_id, brief = build_daily_brief(settings, sessions, topic, when, rebuild=rebuild)
    except BriefAlreadySent as exc:
        app.err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    files = write_brief_files(settings, brief, out)
    print_files(app.out, files)
    print_top_insights(app.out, brief)
    if send and to is not None:
        send_test(app, settings, brief, to, persona)
    elif send:
        if not send_to_subscribers(app, settings, sessions, topic, brief_id, retry_failed=retry_failed):
            raise typer.Exit(1)


def _check_test_options(send: bool, to: str | None, persona: str | None, retry_failed: bool) -> None:
    if to is not None and not send:
        raise ValueError("--to ADDRESS sends a test: give it with --send (`briefcast digest --send --to ADDRESS`)")
    if persona is not None and to is None:
        raise ValueError("--persona chooses the cards of a test send: give it with --send --to ADDRESS")
    if to is not None and retry_failed:
        raise ValueError("--retry-failed concerns the subscribers' deliveries, not a test send to --to")


def send_test(app, settings: Settings, brief, to: str, persona: str | None) -> None:
    """One message to one address, now; the subscribers' deliveries are not touched."""
    from digest.delivery import DeliveryError
    from digest.mail import send_test_email

    try:
        message_id = send_test_email(settings, brief, to, persona=persona)
    except DeliveryError as exc:
        app.err.print(f"[red]test email to {to} not sent:[/] {getattr(exc, 'reason', exc)}", highlight=False)
        raise typer.Exit(1) from None
    app.out.print(f"test email sent to {to} via {settings.smtp_host}:{settings.smtp_port}: {message_id} "
                  "(not recorded as a delivery; subscribers still get theirs)", highlight=False, markup=False)


def parse_day(value: str | None, zone) -> date:
    today = datetime.now(zone).date()
    if value is None or value == "today":
        return today
    if value == "yesterday":
        return today - timedelta(days=1)
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"--date {value!r} is not YYYY-MM-DD (or today / yesterday)") from None


def print_files(out, files) -> None:
    out.print(f"[bold]Brief[/]: {files.html.resolve()}")
    out.print(f"  text {files.text.resolve()}\n  json {files.json.resolve()}\n"
              f"  eml  {files.eml.resolve()} (the message as it would be sent)")


def print_top_insights(out, brief) -> None:
    """Title, publisher and the card's one line (as in "Today in five lines") for each of the top five."""
    from digest.render import TOP_CARDS, clean_text, one_line, select_cards

    cards = select_cards(brief, None, TOP_CARDS)
    out.print(f"\n[bold]Top {len(cards)} insights[/] — {brief.topic_title}, {brief.day}")
    if not cards:
        out.print("  (no story reached today's brief)")
    for n, card in enumerate(cards, 1):
        publisher = clean_text(card.sources[0].publisher) if card.sources else ""
        out.print(f"  {n}. [bold]{clean_text(card.title)}[/]" + (f" — {publisher}" if publisher else ""))
        if line := one_line(card):
            out.print(f"     {line}", highlight=False)
    if brief.unverified:
        out.print(f"  ({len(brief.unverified)} unverified claims, labelled in the brief)")


def send_to_subscribers(app, settings: Settings, sessions, topic: str, brief_id: int, *, retry_failed: bool) -> bool:
    """Email every active subscriber of the topic once; True when nothing failed or is left to retry."""
    from digest.delivery import TransientDeliveryError
    from digest.mail import SmtpConfig, SmtpTransport, email_recipients, send_brief_email, worker_name

    transport = SmtpTransport(SmtpConfig.from_settings(settings))
    table = Table("subscriber", "outcome", "attempts", "detail", title=f"Email via {settings.smtp_host}:{settings.smtp_port}")
    ok = True
    recipients = email_recipients(sessions, topic)
    worker = worker_name()
    for subscriber_id in recipients:
        try:
            outcome = send_brief_email(settings, sessions, subscriber_id=subscriber_id, brief_id=brief_id,
                                       worker_id=worker, transport=transport, retry_failed=retry_failed)
        except TransientDeliveryError as exc:
            table.add_row(str(subscriber_id), "[yellow]retry later[/]", "", exc.reason)
            ok = False
            continue
        if outcome is None:
            continue
        status = {"sent": "[green]sent[/]", "already_sent": "already sent", "in_progress": "being sent elsewhere",
                  "failed": "[red]failed[/]"}[outcome.status]
        ok = ok and outcome.status != "failed"
        detail = outcome.error if outcome.status == "failed" else (outcome.message_id or "")
        if outcome.resumed_from:
            detail += f" (took over a claim left in {outcome.resumed_from})"
        table.add_row(outcome.target, status, str(outcome.attempts), detail)
    if not recipients:
        app.out.print(f"No active subscribers of {topic}: add one with `briefcast subscribers add EMAIL --topic {topic}`.")
    else:
        app.out.print(table)
    return ok
