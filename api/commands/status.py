"""`briefcast status [--json]`: sources, the embed backlog, each topic's next brief, today's deliveries."""

from __future__ import annotations

import json
from datetime import datetime

import typer


def status(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="one JSON object, for scripts")) -> None:
    """Sources due and failing, the embed backlog, each topic's next brief, today's deliveries.

    Read-only and quick: sources due now, failing (with the reason and the retry time) and next
    due; items and passages waiting to be embedded, episodes waiting for speech recognition; per
    topic its next brief in its own time zone, today's brief, stories and deliveries (pending,
    sent, failed with the server's reason)."""
    from api.status import collect_status

    app = ctx.obj
    report = collect_status(app.settings, app.sessions())
    if as_json:
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return
    for line in render_status(report):
        app.out.print(line, highlight=False, markup=False)


def render_status(report: dict) -> list[str]:
    """The report as lines of plain text (no markup: sources' names and errors come from outside)."""
    return [*_sources(report["sources"]), *_items(report["items"], report["index"]),
            *[line for topic in report["topics"] for line in _topic(topic)]]


def _sources(s: dict) -> list[str]:
    removed = f", {s['removed']} removed" if s["removed"] else ""
    head = f"Sources: {s['active']} active{removed}; {s['due_now']} due now"
    if s["next_due_at"]:
        head += f"; next due {_when(s['next_due_at'])}"
    if s["last_fetch_at"]:
        head += f"; last fetch {_when(s['last_fetch_at'])}"
    lines = [head, f"  failing: {s['failing']}" if s["failing"] else "  failing: none"]
    for f in s["failures"]:
        lines.append(f"    #{f['id']} {f['source']}: {f['failures']} failure(s) in a row, retry {_when(f['retry_at'])}")
        lines.append(f"      {_short(f['reason'])}")
    if s["failing"] > len(s["failures"]):
        lines.append(f"    … and {s['failing'] - len(s['failures'])} more (briefcast sources list)")
    return lines


def _items(i: dict, index: dict | None) -> list[str]:
    kinds = ", ".join(f"{n} {kind}s" for kind, n in sorted(i["by_kind"].items())) or "none"
    lines = [f"Items: {i['total']} ({kinds})",
             f"  waiting to be embedded: {i['waiting_to_embed']} items, {i['passages_waiting_to_embed']} passages "
             f"(of {i['passages']}){'  -> briefcast embed' if i['waiting_to_embed'] or i['passages_waiting_to_embed'] else ''}"]
    if i["transcription_queued"] or i["transcription_failed"]:
        lines.append(f"  episodes for speech recognition: {i['transcription_queued']} queued, "
                     f"{i['transcription_failed']} failed  -> briefcast transcribe")
    lines.append(f"  index: {index['vectors']} vectors ({index['model']}, {index['kind']})" if index
                 else "  index: none yet (briefcast embed)")
    return lines


def _topic(t: dict) -> list[str]:
    brief = t["brief_today"]
    state = {"scheduled": "next brief", "due": "brief DUE since", "built": "next brief"}[t["next_brief_state"]]
    at = datetime.fromisoformat(t["next_brief_at"])
    lines = [f"Topic {t['topic']} ({t['timezone']}, sends at {t['send_time']}; local time {t['local_time'][11:16]})",
             f"  {state} {at:%Y-%m-%d %H:%M} {t['timezone']}" + _in(t)]
    if t["next_brief_state"] == "due":
        lines.append("    not built yet: the worker builds it on its next tick (or run `briefcast digest --send`)")
    lines.append(f"  today ({t['today']}): " + (f"brief #{brief['id']} built {_when(brief['built_at'])} with "
                                                f"{brief['stories']} stories" if brief else "no brief yet"))
    st = t["stories_today"]
    lines.append(f"  stories today: {st['seen']} seen, {st['ranked']} ranked for the topic, {st['selected']} selected")
    d = t["deliveries_today"]
    lines.append(f"  deliveries today: {d['pending']} pending, {d['sent']} sent, {d['failed']} failed")
    for f in d["failures"]:
        lines.append(f"    {f['channel']} {f['target']}: {_short(f['reason'])}  -> briefcast digest --send --retry-failed")
    return lines


def _in(t: dict) -> str:
    minutes = t["next_brief_in_minutes"]
    if t["next_brief_state"] == "due" or minutes <= 0:
        return ""
    hours, mins = divmod(minutes, 60)
    return f" (in {hours} h {mins:02d} min)" if hours else f" (in {mins} min)"


def _when(iso: str | None) -> str:
    return iso.replace("T", " ")[:16] + " UTC" if iso else "-"


def _short(text: str | None, limit: int = 160) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
