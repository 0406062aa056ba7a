"""The summarise tests' story (tests/data/summarise_story.json) as a StoryInput, cut into passages
by the real splitter, with passage ids numbered from 100 per item."""

from __future__ import annotations

import json
from pathlib import Path

from embed.passages import split_item, split_segments
from digest.summary.base import PassageText, StoryInput
from digest.summary.schema import SourceRef
from store.entry import Segment

DATA = Path(__file__).resolve().parent / "data" / "summarise_story.json"


def _load() -> dict:
    return json.loads(DATA.read_text())


def _item_passages(item: dict) -> list[PassageText]:
    segments = [Segment(**s) for s in item.get("segments", [])]
    if segments:  # short windows, so each insight's timestamp is its own segment's
        passages = split_segments(segments, target_words=20, max_words=40)
    else:
        passages = split_item(item["title"] if item["kind"] != "post" else "", item.get("text", ""))
    base = item["item_id"] * 100
    return [PassageText(base + p.position, item["item_id"], p.text, p.start, p.end, p.speaker, p.position)
            for p in passages]


def _source(item: dict) -> SourceRef:
    return SourceRef(item_id=item["item_id"], title=item["title"], url=item["url"], publisher=item["publisher"],
                     kind=item["kind"], published="2026-11-30T08:00:00Z")


def story(extra: list[dict] = (), kinds: set[str] | None = None) -> StoryInput:
    data = _load()["story"]
    items = [i for i in data["items"] if kinds is None or i["kind"] in kinds] + list(extra)
    return StoryInput(story_id=data["story_id"], title=data["title"], topic=data["topic"],
                      sources=[_source(i) for i in items],
                      passages=[p for i in items for p in _item_passages(i)],
                      topic_terms=data["topic_terms"], personas=data["personas"])


def injection_item() -> dict:
    return _load()["injection"]


def injected_story() -> StoryInput:
    return story(extra=[injection_item()])


def episode() -> StoryInput:
    data = _load()["story"]
    item = next(i for i in data["items"] if i["kind"] == "episode")
    return StoryInput(story_id=data["story_id"], title=item["title"], topic=data["topic"], sources=[_source(item)],
                      passages=_item_passages(item), topic_terms=data["topic_terms"], personas=data["personas"])
