"""Block Kit for the daily brief, inside Slack's limits, and the text and block helpers the Slack
bot's search answers (api.slack.blocks) share with it.

Everything shown comes from feeds, so it is untrusted: `&`, `<` and `>` are escaped (no
`<!channel>` or fake links can reach a channel), only http(s) URLs become links, and every text
is cut to its limit without breaking an escape or a link. Limits, from Slack's Block Kit
reference: 50 blocks per message, 150 characters in a header, 3000 in a section or any text
object, 10 elements in a context block.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from digest.crosslingual import LANGUAGE_NAMES
from digest.summary.schema import DailyBrief, InsightCard, PodcastInsight, Sentence, SourceRef
from store.links import moment_url

MAX_BLOCKS = 50
MAX_HEADER = 150
MAX_TEXT = 3000
MAX_CONTEXT_ELEMENTS = 10
MAX_FALLBACK_TEXT = 4000  # the notification / screen-reader text beside the blocks
RELATED_SHOWN = 5

_PARTIAL_ESCAPE = re.compile(r"&[a-z]{0,4}$")
_URL_UNSAFE = {"<": "%3C", ">": "%3E", "|": "%7C", " ": "%20", "\n": "", "\r": "", "\t": ""}


# --- text ------------------------------------------------------------------------------------


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    """At most `limit` characters; a cut never leaves half an escape (&am) or half a link (<http...)."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    opened = cut.rfind("<")
    if opened > cut.rfind(">"):
        cut = cut[:opened]
    return _PARTIAL_ESCAPE.sub("", cut).rstrip() + "…"


def link(url: str | None, label: str) -> str:
    """`<url|label>` for an http(s) URL, else the label alone, both escaped."""
    shown = escape(" ".join(label.split()) or (url or ""))
    if not url or not url.lower().startswith(("http://", "https://")):
        return shown
    safe = "".join(_URL_UNSAFE.get(ch, ch) for ch in url.strip())
    return f"<{safe}|{shown.replace('|', '¦')}>"  # a | in the label would end it early


def sentences(items: Iterable[Sentence]) -> str:
    return " ".join(escape(s.text) + (" _(unverified)_" if s.unverified else "") for s in items if s.text.strip())


def clock(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _day(published: str | None) -> str | None:
    return published[:10] if published else None


def source_line(ref: SourceRef) -> str:
    """`<url|title> · Publisher · 2026-11-30 · at 12:34` (the time for episodes)."""
    url = moment_url(ref.url, ref.start) if ref.kind == "episode" else ref.url  # opens the episode at the moment
    parts = [link(url, ref.title), escape(ref.publisher)]
    if ref.language not in (None, "en"):  # the title stays as published; the language is said
        parts.append(f"in {LANGUAGE_NAMES.get(ref.language, ref.language)}")
    if _day(ref.published):
        parts.append(_day(ref.published))
    if ref.kind == "episode" and clock(ref.start):
        parts.append(f"at {clock(ref.start)}")
    return " · ".join(p for p in parts if p)


# --- blocks ----------------------------------------------------------------------------------


def header(text: str) -> dict:
    return {"type": "header", "text": {"type": "plain_text", "text": clip(" ".join(text.split()), MAX_HEADER),
                                       "emoji": True}}


def section(mrkdwn: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(mrkdwn, MAX_TEXT)}}


def context(*texts: str) -> dict:
    elements = [{"type": "mrkdwn", "text": clip(t, MAX_TEXT)} for t in texts if t][:MAX_CONTEXT_ELEMENTS]
    return {"type": "context", "elements": elements}


def divider() -> dict:
    return {"type": "divider"}


def within_limit(blocks: list[dict], more: str) -> list[dict]:
    """At most MAX_BLOCKS: what does not fit is replaced by one line saying so."""
    if len(blocks) <= MAX_BLOCKS:
        return blocks
    kept = blocks[: MAX_BLOCKS - 1]
    while kept and kept[-1]["type"] in ("divider", "header"):
        kept.pop()
    return kept + [context(more)]


# --- the daily brief -------------------------------------------------------------------------


def card_blocks(number: int, card: InsightCard) -> list[dict]:
    lead = card.sources[0] if card.sources else None
    title = link(lead.url if lead else None, card.title)
    text = f"*{number}. {title}*"
    if card.covered_only_in:
        language = LANGUAGE_NAMES.get(card.covered_only_in, card.covered_only_in)
        text += f"\n_Covered only in {language}: the original headline; no summary is written from it._"
    if card.summary:
        text += "\n" + sentences(card.summary)
    if card.key_takeaway:
        label = f" (for {escape(card.persona)})" if card.persona else ""
        text += f"\n*Key takeaway*{label}: {sentences(card.key_takeaway)}"
    blocks = [section(text)]
    publishers = [escape(card.attribution)] if card.attribution else []
    publishers += [source_line(ref) for ref in card.sources[: MAX_CONTEXT_ELEMENTS - len(publishers)]]
    if publishers:
        blocks.append(context(*publishers))
    if card.related:
        shown = " · ".join(source_line(ref) for ref in card.related[:RELATED_SHOWN])
        blocks.append(context("*Related:* " + shown))
    return blocks


def podcast_blocks(insight: PodcastInsight) -> list[dict]:
    blocks = [section(f"{sentences([insight.insight])}\n— {source_line(insight.episode)}")]
    if insight.related:
        also = [f"{source_line(r.episode)}: {sentences([r.insight])}" for r in insight.related[:RELATED_SHOWN]]
        blocks.append(context("*Also said:* " + " · ".join(also)))
    return blocks


def brief_blocks(brief: DailyBrief) -> list[dict]:
    """A channel reads the general reader's cards: one per story, no persona's version."""
    from digest.render import select_cards

    cards = select_cards(brief, None, limit=len(brief.cards))
    blocks = [header(f"{brief.topic_title or brief.topic} · {brief.day}"),
              context(f"Top {len(cards)} insights · generated {escape(brief.generated_at[:16])} · briefcast")]
    for number, card in enumerate(cards, start=1):
        blocks += [divider(), *card_blocks(number, card)]
    if brief.podcasts and brief.podcasts.insights:
        blocks += [divider(), section("*From the podcasts*")]
        for insight in brief.podcasts.insights:
            blocks += podcast_blocks(insight)
    if brief.unverified:
        blocks += [divider(), context("*Unverified* (only social posts carry these; not ranked): "
                                      + sentences(brief.unverified))]
    return within_limit(blocks, "… more in the full brief (email or `briefcast digest`).")


def brief_text(brief: DailyBrief) -> str:
    """The plain fallback Slack shows in notifications and reads to screen readers."""
    from digest.render import select_cards

    cards = select_cards(brief, None, limit=len(brief.cards))
    titles = "; ".join(f"{n}. {c.title}" for n, c in enumerate(cards, start=1))
    return clip(escape(f"{brief.topic_title or brief.topic} brief for {brief.day}: {titles}"), MAX_FALLBACK_TEXT)
