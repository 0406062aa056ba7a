"""Helpers for the digest tests: a small hand-written world of items, the real embed stage over it
(with the fake encoder), and a fake summariser that copies source sentences and counts its calls."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from embed.encoder import FakeEncoder
from embed.index import IndexStore
from embed.passages import split_sentences
from embed.pipeline import embed_pending
from digest.summary.base import StoryInput, Summarizer
from digest.summary.schema import InsightCard, PodcastInsight, Sentence, StoryBrief
from store.models import Item, Source

NOW = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)


def add_source(session, url: str, kind: str = "feed", title: str | None = None, topic: str | None = "ai-geopolitics",
               weight: float = 1.0) -> Source:
    source = Source(url=url, kind=kind, title=title or url.rsplit("/", 1)[-1], topic=topic, weight=weight)
    session.add(source)
    session.flush()
    return source


def add_item(session, source: Source, title: str, text: str, *, kind: str = "article", hours_ago: float = 2.0,
             now: datetime = NOW) -> Item:
    n = session.query(Item).count() + 1
    item = Item(source_id=source.id, stable_key=f"k{n}-{source.id}", url=f"{source.url}/item{n}",
                content_hash=f"hash-{n}", entry_hash=f"entry-{n}", kind=kind, title=title, text=text,
                published=now - timedelta(hours=hours_ago))
    session.add(item)
    session.flush()
    return item


def embed(settings, sessions, encoder=None):
    encoder = encoder or FakeEncoder()
    embed_pending(sessions, encoder, IndexStore(settings.index_dir))
    return encoder


def _first_sentence(text: str) -> str:
    sentences = split_sentences(text)
    return sentences[0] if sentences else text


def _last_sentence(text: str) -> str:
    sentences = split_sentences(text)
    return sentences[-1] if sentences else text


class FakeSummarizer(Summarizer):
    """Copies the first sentence of the story's passages: grounded by construction, and counted."""

    name = "fake"
    model = "copy-first-sentences"

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def _sentences(self, story: StoryInput, n: int) -> list[Sentence]:
        return [Sentence(_first_sentence(p.text), [p.passage_id]) for p in story.passages[:n]]

    def insight_card(self, story: StoryInput, persona: str) -> InsightCard:
        self.calls["card"] += 1
        lead = story.sources[0] if story.sources else None
        return InsightCard(
            story_id=story.story_id, title=story.title, summary=self._sentences(story, 2),
            key_takeaway=self._sentences(story, 1), persona=persona, key_insights=self._sentences(story, 3)[2:],
            principles=[], in_practice=[], topics=[], best_for=story.persona_names[:2], sources=story.sources,
            related=[], attribution=f"Original article published by {lead.publisher}" if lead else "", reading_minutes=1,
            backend=self.name, model=self.model)

    def story_brief(self, story: StoryInput) -> StoryBrief:
        self.calls["story_brief"] += 1
        return StoryBrief(story_id=story.story_id, title=story.title, paragraphs=[self._sentences(story, 3)],
                          sources=story.sources, glossary=[], reading_minutes=1, backend=self.name, model=self.model)

    def podcast_insights(self, episode: StoryInput, limit: int = 3) -> list[PodcastInsight]:
        self.calls["podcast_insights"] += 1
        # the passage's last sentence: a card quotes first sentences, and a brief says each thing once
        return [PodcastInsight(insight=Sentence(_last_sentence(p.text), [p.passage_id]), episode=episode.source_of(p.item_id))
                for p in episode.passages[:limit] if episode.source_of(p.item_id) is not None]
