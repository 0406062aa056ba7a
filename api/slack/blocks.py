"""Block Kit for the Slack bot's search answers (`/ask`, @-mentions), inside Slack's limits.

The text and block helpers (escaping untrusted feed text, clipping, links, limits) are the brief's,
from digest.slack_blocks: what is safe in a posted brief is safe in an answer.
"""

from __future__ import annotations

from digest.slack_blocks import MAX_FALLBACK_TEXT, clip, clock, context, divider, escape, link, section, within_limit
from embed.search import SearchHit
from store.links import moment_url

EXCERPT_CHARS = 400


# --- search answers --------------------------------------------------------------------------


def hit_line(hit: SearchHit) -> str:
    url = moment_url(hit.url, hit.start) if hit.kind == "episode" else hit.url  # an episode opens at the moment
    parts = [link(url, hit.title or "(untitled)"), escape(hit.source)]
    if hit.published:
        parts.append(hit.published.date().isoformat())
    if hit.kind == "episode" and clock(hit.start):
        parts.append(f"at {clock(hit.start)}" + (f"–{clock(hit.end)}" if clock(hit.end) else ""))
    return " · ".join(parts)


def answer_blocks(question: str, hits: list[SearchHit]) -> list[dict]:
    blocks = [section(f"*Q:* {escape(question)}")]
    if not hits:
        return blocks + [context("Nothing in the index matches that question yet. Try other words, "
                                 "or wait for the next fetch and embed.")]
    for hit in hits:
        excerpt = clip(escape(" ".join(hit.text.split())), EXCERPT_CHARS)
        blocks += [divider(), section(f"*{hit_line(hit)}*\n>{excerpt}")]
        if hit.more_passages:
            blocks.append(context(f"{hit.more_passages} more matching passage(s) in this {escape(hit.kind)}"))
    return within_limit(blocks, "… more results: ask the search API.")


def answer_text(question: str, hits: list[SearchHit]) -> str:
    found = "; ".join(h.title for h in hits) or "nothing found"
    return clip(escape(f"{question}: {found}"), MAX_FALLBACK_TEXT)
