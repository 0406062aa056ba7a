"""Marking text in another language than the page's (English), so browsers pick its fonts and
line breaking and screen readers its voice: `lang="zh"` on a Chinese title or passage.

Items carry their language (items.language, from the feed); a card's publishers carry theirs
(digest.render.PublisherView.lang); a card "covered only in Chinese" has a Chinese headline.
"""

from __future__ import annotations

from datetime import date

from markupsafe import Markup, escape

PAGE_LANGUAGE = "en"


def other_lang(code: str | None) -> str:
    """The value for a lang attribute when it differs from the page's ("zh", "zh-tw"), else ""."""
    value = (code or "").strip().lower()
    if not value or value.split("-")[0] == PAGE_LANGUAGE or not value.replace("-", "").isalnum() or len(value) > 16:
        return ""
    return value


def lang_attr(code: str | None) -> Markup:
    """` lang="zh"` for another language, nothing for the page's own (a Jinja filter)."""
    value = other_lang(code)
    return Markup(' lang="{}"').format(value) if value else Markup("")


def with_langs(text: str, groups) -> Markup:
    """Plain `text` escaped, each publisher name of another language in it wrapped in <span lang>.

    `groups` are digest.render.PublisherView (name, lang): the card's attribution names them."""
    names = sorted({(g.name, other_lang(g.lang)) for g in groups if g.name and other_lang(g.lang)},
                   key=lambda pair: -len(pair[0]))
    pieces: list[Markup] = [escape(text)]
    for name, lang in names:
        marked = Markup('<span lang="{}">{}</span>').format(lang, name)
        pieces = [part for piece in pieces for part in _split_on(piece, escape(name), marked)]
    return Markup("").join(pieces)


def _split_on(piece: Markup, needle: Markup, replacement: Markup) -> list[Markup]:
    if piece.startswith('<span lang="') or needle not in piece:  # already marked, or nothing to mark
        return [piece]
    parts = piece.split(needle)
    out: list[Markup] = []
    for i, part in enumerate(parts):
        if i:
            out.append(replacement)
        out.append(Markup(part))
    return out


def long_date(day: str | None) -> str:
    """'Sunday 6 December 2026', as the brief's dateline; the value itself when it is not a date."""
    try:
        d = date.fromisoformat(day or "")
    except ValueError:
        return day or ""
    return f"{d:%A} {d.day} {d:%B %Y}"


def short_date(day: str | None) -> str:
    """'5 Dec 2026' for a search hit's day."""
    try:
        d = date.fromisoformat(day or "")
    except ValueError:
        return day or ""
    return f"{d.day} {d:%b %Y}"
