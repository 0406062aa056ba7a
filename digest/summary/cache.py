"""`summarise_story`: the one call the composer makes per output. Looks the output up in the
summaries table by (kind, content hash of the story's passages, backend, model, persona); only on
a miss does it call the backend, then the support check, then it stores the checked output.

Outputs a generative backend could not make (the call failed, the reply did not validate, or
nothing it wrote passed the sentence rules and the support check) are written by its fallback
(extractive) and returned but not stored, so the next run asks the model again: the set of stories
in a brief never depends on the backend.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import TYPE_CHECKING, Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from digest.summary.base import StoryInput, Summarizer
from digest.summary.schema import InsightCard, PodcastInsight, StoryBrief, from_dict, to_dict
from store.models import Item, Story, Summary

if TYPE_CHECKING:
    from digest.summary.runtime import Summaries

# Bumped when the sentence rules, budgets or glossary change what a backend's output becomes, so a
# stored summary made by older rules is made again instead of served (12-06c: glossary definitions, topic tags).
RULES_VERSION = "2026-12-06d"

Kind = Literal["card", "story_brief", "podcast_insights"]
KINDS = ("card", "story_brief", "podcast_insights")


def story_content_hash(story: StoryInput, kind: str, limit: int | None = None, checked_by: str = "") -> str:
    """Of what the backend reads (the passages, ids and text in order; title, topic, personas), of
    the support check applied (so a new threshold is not served stale summaries) and of the rules."""
    payload = {"kind": kind, "rules": RULES_VERSION, "checked_by": checked_by, "title": story.title, "topic": story.topic,
               "terms": story.topic_terms,
               "personas": [dataclasses.asdict(p) for p in story.personas], "limit": limit,
               "passages": [[p.passage_id, p.item_id, p.text] for p in story.passages],
               "sources": [[s.item_id, s.publisher, s.kind] for s in story.sources]}
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


def summarise_story(summaries: Summaries, story: StoryInput, kind: Kind, persona: str = "", *, limit: int = 3):
    """InsightCard (kind="card"), StoryBrief ("story_brief") or list[PodcastInsight]
    ("podcast_insights", `limit` of them): cached, checked, every sentence cited."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    summarizer, checker, sessions = summaries.summarizer, summaries.checker, summaries.sessions
    content_hash = story_content_hash(story, kind, limit if kind == "podcast_insights" else None, checker.signature())
    key = dict(kind=kind, content_hash=content_hash, backend=summarizer.name, model=summarizer.model, persona=persona)
    if sessions is not None and (cached := _lookup(sessions, key)) is not None:
        return _decode(kind, cached)
    output = checker.check(_produce(summarizer, story, kind, persona, limit), story)
    if summarizer.fallback is not None and _empty(output):  # nothing of the model's passed: never lose the story
        output = checker.check(_produce(summarizer.fallback, story, kind, persona, limit), story)
    summaries.made += 1
    if sessions is not None and _made_by(output, summarizer):
        _store(sessions, key, story, _encode(kind, output))
    return output


def _produce(summarizer: Summarizer, story: StoryInput, kind: str, persona: str, limit: int):
    if kind == "card":
        return summarizer.insight_card(story, persona)
    if kind == "story_brief":
        return summarizer.story_brief(story)
    return summarizer.podcast_insights(story, limit)


def _empty(output) -> bool:
    if isinstance(output, InsightCard):
        return not output.summary
    if isinstance(output, StoryBrief):
        return not output.paragraphs
    return not output


def _made_by(output, summarizer: Summarizer) -> bool:
    if isinstance(output, list):
        return True  # podcast insights carry no backend; a fallback list is still cheap to redo
    return output.backend == summarizer.name


def _encode(kind: str, output) -> dict:
    if kind == "podcast_insights":
        return {"insights": [to_dict(i) for i in output]}
    return to_dict(output)


def _decode(kind: str, payload: dict):
    if kind == "card":
        return from_dict(InsightCard, payload)
    if kind == "story_brief":
        return from_dict(StoryBrief, payload)
    return [from_dict(PodcastInsight, i) for i in payload["insights"]]


def _lookup(sessions: sessionmaker[Session], key: dict) -> dict | None:
    with sessions() as session:
        row = session.scalars(select(Summary).filter_by(**key)).first()
        return row.payload if row else None


def _store(sessions: sessionmaker[Session], key: dict, story: StoryInput, payload: dict) -> None:
    with sessions() as session:
        story_id = story.story_id if session.get(Story, story.story_id) is not None else None
        item_ids = {s.item_id for s in story.sources}
        item_id = next(iter(item_ids)) if len(item_ids) == 1 else None
        if item_id is not None and session.get(Item, item_id) is None:
            item_id = None
        session.add(Summary(**key, story_id=story_id, item_id=item_id, payload=payload))
        try:
            session.commit()
        except IntegrityError:  # another worker stored the same output meanwhile: theirs stands
            session.rollback()
