"""A DailyBrief -> the email's HTML and plain-text parts, and its JSON.

Every string that came from a feed is reduced to plain text with nh3 (repeated until nothing
changes, so double-escaped markup goes too) before a template sees it, and the HTML template
escapes it again (autoescape). Links keep only http(s) URLs. The CSS is written once in the
template and inlined by css-inline; the dark-mode @media rules stay in a <style> block for the
clients that honour them.
"""

from __future__ import annotations

import dataclasses
import html
import json
import re
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path

import css_inline
import jinja2
import nh3

from digest.summary.schema import DailyBrief, InsightCard, PodcastInsight, Sentence, SourceRef, StoryBrief, to_dict
from store.links import moment_url as timestamp_url  # noqa: F401  (re-exported: tests and templates use these names)
from store.links import safe_url

TEMPLATES = Path(__file__).resolve().parent / "templates"
TOP_CARDS = 5
PREHEADER_CHARS = 140
WORDS_PER_MINUTE = 230
_NOT_READ = {"url", "unsubscribe_url", "web_url", "manage_url", "kind", "published", "topic", "day", "anchor", "line", "sources",
             "related"}
UNVERIFIED_HEADING = "Unverified: only social posts carry these claims"
UNVERIFIED_NOTE = "No independent article or episode confirms them; they are shown for awareness, not ranked as insights."
_CITATION = re.compile(r"\s*\[(\d{1,2})\]")
_END = re.compile(r"[.!?…:;]+[\"'”’)]*$")


# --- sanitising -------------------------------------------------------------------------------


def clean_text(value: str | None) -> str:
    """Feed text as plain text: tags (and script/style content) removed, entities decoded."""
    text = value or ""
    for _ in range(4):  # `&lt;script&gt;` decodes to a tag on the first pass; the next removes it
        cleaned = html.unescape(nh3.clean(text, tags=set()))
        if cleaned == text:
            break
        text = cleaned
    return " ".join(text.split())


def clock(seconds: float | None) -> str:
    if seconds is None:
        return ""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


# --- the view: plain, clean values only --------------------------------------------------------


@dataclass
class LinkView:
    title: str
    url: str | None
    publisher: str
    kind: str
    published: str
    at: str = ""  # episodes: m:ss of the cited passage


@dataclass
class PublisherView:
    """A card's source list shows publishers, each linked to its item (more items: numbered links)."""

    name: str
    links: list[LinkView]
    unverified: bool = False  # a social post: labelled as such
    language: str = ""  # "Chinese": a source in another language than the brief's, marked
    original_title: str = ""  # ... and shown with its own headline
    lang: str = ""  # its language code, for the HTML lang attribute

    @property
    def first(self) -> LinkView:
        return self.links[0]


@dataclass
class InsightView:
    text: str
    episode: LinkView
    related: list[InsightView] = field(default_factory=list)


@dataclass
class CardView:
    anchor: str  # the card's id in the HTML, which "Today in five lines" links to
    title: str
    summary: str
    persona: str
    key_takeaway: str
    key_insights: list[str]
    principles: list[str]
    in_practice: list[str]
    topics: list[str]
    best_for: list[str]
    attribution: str
    reading_minutes: int
    sources: list[PublisherView]
    related: list[PublisherView]
    related_insights: list[InsightView]

    line: str = ""  # the card in one sentence, for "Today in five lines"
    covered_only: str = ""  # "Covered only in Chinese": a story no source tells in the brief's language


@dataclass
class CitedSentence:
    text: str  # without its final punctuation, so [n] sits before it: "... benchmarks [1]."
    end: str
    citations: list[tuple[int, str | None]]  # ([n], the source's link)

    @property
    def plain(self) -> str:
        return self.text + "".join(f" [{n}]" for n, _ in self.citations) + self.end


@dataclass
class LeadView:
    title: str
    label: str
    reading_minutes: int
    paragraphs: list[list[CitedSentence]]
    sources: list[LinkView]
    glossary: list[tuple[str, str]]


@dataclass
class BriefView:
    topic: str
    topic_title: str
    day: str
    day_long: str
    cards: list[CardView]
    podcasts: list[InsightView]
    unverified: list[str]
    unsubscribe_url: str | None
    web_url: str | None
    reading_minutes: int
    unverified_heading: str = UNVERIFIED_HEADING
    unverified_note: str = UNVERIFIED_NOTE
    manage_url: str | None = None  # the subscriber's settings page (digest.manage_links)

    @property
    def preheader(self) -> str:
        """The line an inbox shows beside the subject: the day's stories by title."""
        return clip(" · ".join(c.title for c in self.cards), PREHEADER_CHARS) or "No new insights today"


def _sentences(sentences: list[Sentence]) -> str:
    return " ".join(t for t in (clean_text(s.text) for s in sentences) if t)


def _each(sentences: list[Sentence]) -> list[str]:
    return [t for t in (clean_text(s.text) for s in sentences) if t]


def link_view(ref: SourceRef) -> LinkView:
    url = timestamp_url(ref.url, ref.start) if ref.kind == "episode" else safe_url(ref.url)
    return LinkView(title=clean_text(ref.title) or clean_text(ref.url) or "untitled", url=url,
                    publisher=clean_text(ref.publisher), kind=ref.kind, published=(ref.published or "")[:10],
                    at=clock(ref.start) if ref.kind == "episode" else "")


def insight_view(insight: PodcastInsight) -> InsightView:
    return InsightView(text=clean_text(insight.insight.text), episode=link_view(insight.episode),
                       related=[insight_view(r) for r in insight.related])


def publisher_views(refs: list[SourceRef]) -> list[PublisherView]:
    """Items grouped by publisher, in their order: "Policy Wire", linked, rather than each title."""
    groups: dict[str, PublisherView] = {}
    for ref in refs:
        link = link_view(ref)
        name = link.publisher or link.title
        if name not in groups:
            language = language_name(ref.language)
            groups[name] = PublisherView(name=name, links=[], unverified=ref.kind == "post", language=language,
                                         original_title=link.title if language else "",
                                         lang=(ref.language or "") if language else "")
        groups[name].links.append(link)
    return list(groups.values())


def language_name(language: str | None) -> str:
    """"Chinese" for a source in another language than the brief's (English); "" for English or unknown."""
    from digest.crosslingual import LANGUAGE_NAMES

    return "" if language in (None, "en") else LANGUAGE_NAMES.get(language, language)


LINE_WORDS = 30


def one_line(card: InsightCard) -> str:
    """The story in one sentence: its key takeaway, else its summary's lede, the first within
    LINE_WORDS; the shorter of them when neither is."""
    options = [t for t in map(clean_text, (s.text for s in [*card.key_takeaway[:1], *card.summary[:1]])) if t]
    if not options:
        return covered_only_label(card) + (f": {clean_text(card.title)}" if card.covered_only_in else "")
    return next((t for t in options if len(t.split()) <= LINE_WORDS), min(options, key=lambda t: len(t.split())))


def covered_only_label(card: InsightCard) -> str:
    return f"Covered only in {language_name(card.covered_only_in)}" if card.covered_only_in else ""


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


def card_view(card: InsightCard, podcast_insights: list[PodcastInsight]) -> CardView:
    return CardView(
        anchor=f"story-{card.story_id}",
        title=clean_text(card.title), summary=_sentences(card.summary), persona=clean_text(card.persona),
        line=one_line(card), covered_only=covered_only_label(card),
        key_takeaway=_sentences(card.key_takeaway), key_insights=_each(card.key_insights),
        principles=_each(card.principles), in_practice=_each(card.in_practice),
        topics=[t for t in map(clean_text, card.topics) if t], best_for=[b for b in map(clean_text, card.best_for) if b],
        attribution=clean_text(card.attribution), reading_minutes=max(1, card.reading_minutes),
        sources=publisher_views(card.sources), related=publisher_views(card.related),
        # The story's podcast insights and, flattened under them, the same point from other episodes.
        related_insights=[insight_view(x) for i in podcast_insights if i.story_id == card.story_id
                          for x in (i, *i.related)],
    )


def lead_view(lead: StoryBrief, passage_items: dict[int, int]) -> LeadView:
    """[n] is sources[n-1]: a sentence cites the sources its passages come from (and any [n] it wrote)."""
    number = {s.item_id: n for n, s in enumerate(lead.sources, 1)}
    links = {n: link_view(s).url for n, s in enumerate(lead.sources, 1)}

    def cited(sentence: Sentence) -> CitedSentence:
        text = clean_text(sentence.text)
        written = {int(m) for m in _CITATION.findall(text) if 1 <= int(m) <= len(lead.sources)}
        text = _CITATION.sub(lambda m: "" if 1 <= int(m.group(1)) <= len(lead.sources) else m.group(0), text).strip()
        resolved = {number[passage_items[p]] for p in sentence.passage_ids if passage_items.get(p) in number}
        body, end = _split_end(" ".join(text.split()))
        return CitedSentence(text=body, end=end, citations=[(n, links[n]) for n in sorted(written | resolved)])

    return LeadView(
        title=clean_text(lead.title), label=clean_text(lead.label), reading_minutes=max(1, lead.reading_minutes),
        paragraphs=[[cited(s) for s in p if clean_text(s.text)] for p in lead.paragraphs],
        sources=[link_view(s) for s in lead.sources],
        glossary=[(clean_text(g.term), clean_text(g.definition.text)) for g in lead.glossary if clean_text(g.term)],
    )


def _split_end(text: str) -> tuple[str, str]:
    match = _END.search(text)
    return (text[: match.start()], match.group(0)) if match else (text, "")


def select_cards(brief: DailyBrief, persona: str | None, limit: int = TOP_CARDS) -> list[InsightCard]:
    """One card per story, in rank order: the card written for the reader's persona where the story
    had one, else the general reader's card (persona "")."""
    wanted = (persona or "").strip().lower()
    by_story: dict[int, list[InsightCard]] = {}
    for card in brief.cards:
        by_story.setdefault(card.story_id, []).append(card)
    out = []
    for cards in by_story.values():
        mine = next((c for c in cards if wanted and c.persona.lower() == wanted), None)
        general = next((c for c in cards if not c.persona), None)
        out.append(mine or general or cards[0])
    return out[:limit]


def brief_view(brief: DailyBrief, *, persona: str | None = None, unsubscribe_url: str | None = None,
               web_url: str | None = None, manage_url: str | None = None) -> BriefView:
    podcast_insights = brief.podcasts.insights if brief.podcasts else []
    shown = select_cards(brief, persona)
    cards = [card_view(c, podcast_insights) for c in shown]
    view = BriefView(
        topic=clean_text(brief.topic), topic_title=clean_text(brief.topic_title) or clean_text(brief.topic),
        day=brief.day, day_long=_long_date(brief.day), cards=cards,
        # An insight shown under its story's card is not repeated in the podcast section.
        podcasts=[insight_view(i) for i in podcast_insights if i.story_id not in {c.story_id for c in shown}],
        unverified=[t for t in (clean_text(s.text) for s in brief.unverified) if t],
        unsubscribe_url=safe_url(unsubscribe_url), web_url=safe_url(web_url), reading_minutes=1,
        manage_url=safe_url(manage_url),
    )
    view.reading_minutes = max(1, round(_words(view) / WORDS_PER_MINUTE))
    return view


def _words(value) -> int:
    """Words the reader reads in the brief itself (not in the linked sources)."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, (list, tuple)):
        return sum(_words(v) for v in value)
    if dataclasses.is_dataclass(value):
        return sum(_words(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name not in _NOT_READ)
    return 0


def _long_date(day: str) -> str:
    try:
        d = date.fromisoformat(day)
    except ValueError:
        return clean_text(day)
    return f"{d:%A} {d.day} {d:%B %Y}"


# --- output ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedBrief:
    subject: str
    html: str
    text: str
    json: str


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"), default_for_string=True),
        undefined=jinja2.StrictUndefined,  # a misspelt field fails the render, not the reader
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["wrap"] = _wrap
    env.filters["bullet"] = lambda text: _wrap(text, 76, "  ", first="- ")
    return env


def _wrap(text: str, width: int = 76, indent: str = "", first: str | None = None) -> str:
    import textwrap

    return textwrap.fill(text, width=width, initial_indent=indent if first is None else first,
                         subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)


_INLINER = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


def subject_line(view: BriefView) -> str:
    lead = view.cards[0].title if view.cards else "no new insights today"
    return f"{view.topic_title} brief, {view.day_long}: {lead}"


def render_brief(brief: DailyBrief, *, persona: str | None = None, unsubscribe_url: str | None = None,
                 web_url: str | None = None, manage_url: str | None = None) -> RenderedBrief:
    view = brief_view(brief, persona=persona, unsubscribe_url=unsubscribe_url, web_url=web_url,
                      manage_url=manage_url)
    env = _environment()
    subject = subject_line(view)
    page = env.get_template("brief.html.j2").render(v=view, subject=subject)
    text = env.get_template("brief.txt.j2").render(v=view, subject=subject)
    return RenderedBrief(subject=subject, html=_INLINER.inline(page), text=text,
                         json=json.dumps(to_dict(brief), ensure_ascii=False, indent=2))
