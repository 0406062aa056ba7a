"""build_daily_brief: stories -> ranking -> grounded summaries of the top K -> one stored Brief.

Fake encoder and a fake summariser that copies source sentences (and counts its calls); the
support check, the summary cache, the database (SQLite and PostgreSQL) and the embed stage are real.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from digest.compose import build_daily_brief
from digest.summary.runtime import Summaries
from digest.insights import group_related
from embed.encoder import FakeEncoder
from digest.summary.schema import DailyBrief, PodcastInsight, Sentence, SourceRef, from_dict, to_dict
from store.models import Brief, BriefStory, Delivery, Passage, Source, StoryItem
from tests.conftest import make_settings
from tests.digest_world import NOW, FakeSummarizer, add_item, add_source, embed
from tests.test_cluster import RULE_2
from tests.test_rank import _world

TOPIC = "ai-geopolitics"
EPISODE = ("Welcome back. Today the export rule and its memory bandwidth test for AI accelerator chips sold to China. "
           "The memory bandwidth test means an export licence for most inference accelerators. Cloud resellers join "
           "the Entity List, and chip makers say the rule hands the China market to domestic accelerators.")


@pytest.fixture
def brief_settings(tmp_path, db_url):
    return make_settings(tmp_path, db_url, story_threshold=0.35, min_relevance=0.25)


def _world_with_episode(sessions):
    ids = _world(sessions)
    with sessions() as session, session.begin():
        podcast = add_source(session, "https://pod.example/feed.xml", kind="podcast", title="the podcast")
        ids["episode"] = add_item(session, podcast, "The memory bandwidth rule", EPISODE, kind="episode", hours_ago=9).id
    return ids


def _build(settings, sessions, summarizer=None, day=NOW.date(), now=NOW, **kwargs):
    return build_daily_brief(settings, sessions, TOPIC, day, encoder=FakeEncoder(),
                             summarizer=summarizer or FakeSummarizer(), now=now, **kwargs)


def _texts(brief: DailyBrief) -> str:
    payload = to_dict(brief)
    payload.pop("unverified")
    return json.dumps(payload, ensure_ascii=False).lower()


def test_the_brief_carries_grounded_top_stories_and_labels_the_rumour(brief_settings, sessions):
    ids = _world_with_episode(sessions)
    embed(brief_settings, sessions)
    summarizer = FakeSummarizer()
    brief_id, brief = _build(brief_settings, sessions, summarizer)
    with sessions() as session:
        story = dict(session.execute(select(StoryItem.item_id, StoryItem.story_id)).all())
        passage_item = dict(session.execute(select(Passage.id, Passage.item_id)).all())
        row = session.get(Brief, brief_id)
        carried = session.execute(select(BriefStory.story_id, BriefStory.rank).where(BriefStory.brief_id == brief_id)
                                  .order_by(BriefStory.rank)).all()
    cards = [c.story_id for c in brief.cards]
    assert cards[0] == story[ids["rule"]] and story[ids["lumen"]] in cards
    assert len(cards) == len(set(cards)) and story[ids["rumour"]] not in cards and story[ids["cooking"]] not in cards
    assert "shenzhen" not in _texts(brief)  # the rumour reaches no card, story brief or podcast insight
    assert any("shenzhen" in s.text.lower() and s.unverified and s.passage_ids for s in brief.unverified)
    for card in brief.cards:  # every sentence cites passages of its own story, checked by the support check
        for sentence in card.summary + card.key_takeaway + card.key_insights:
            assert sentence.passage_ids and sentence.support is not None
            assert {story[passage_item[p]] for p in sentence.passage_ids} == {card.story_id}
        assert card.persona == ""  # no subscriber chose a persona: the general reader's cards only
    assert brief.lead is not None and brief.lead.story_id == cards[0] and brief.lead.paragraphs
    assert brief.podcasts is not None and brief.podcasts.insights[0].episode.item_id == ids["episode"]
    assert brief.podcasts.insights[0].story_id == story[ids["rule"]]
    assert row.payload == to_dict(brief) and row.day == NOW.date().isoformat()
    assert [s for s, _ in carried] == brief.story_ids == cards
    # the summariser ran for the top K only: a card each, one story brief, one podcast call
    assert summarizer.calls == {"card": len(cards), "story_brief": 1, "podcast_insights": 1}


def test_a_brief_is_built_once_and_then_returned_as_stored(brief_settings, sessions):
    _world_with_episode(sessions)
    embed(brief_settings, sessions)
    first_id, first = _build(brief_settings, sessions)
    again = FakeSummarizer()
    second_id, second = _build(brief_settings, sessions, again, now=NOW + timedelta(hours=2))
    assert second_id == first_id and to_dict(second) == to_dict(first)
    assert sum(again.calls.values()) == 0
    with sessions() as session:
        assert session.query(Brief).count() == 1


def test_an_unsent_brief_is_rebuilt_on_request_and_a_sent_one_never(brief_settings, sessions):
    from digest.compose import BriefAlreadySent

    _world_with_episode(sessions)
    embed(brief_settings, sessions)
    first_id, first = _build(brief_settings, sessions)
    later = NOW + timedelta(hours=1)  # e.g. after switching the summariser or editing the topic profile
    again = FakeSummarizer()
    second_id, second = _build(brief_settings, sessions, again, now=later, rebuild=True)
    assert second.generated_at == later.isoformat() and first.generated_at != second.generated_at
    assert sum(again.calls.values()) == 0  # the same backend and profile: its outputs come from the summaries cache
    with sessions() as session:
        assert session.query(Brief).count() == 1 and session.query(BriefStory).count() == len(second.story_ids)
    with sessions() as session, session.begin():
        session.add(Delivery(idempotency_key="k", channel="email", target="a@b.example", topic=TOPIC,
                             day=NOW.date().isoformat(), brief_id=second_id, status="sent"))
    with pytest.raises(BriefAlreadySent, match="1 sent"):
        _build(brief_settings, sessions, now=later, rebuild=True)
    with sessions() as session:
        assert session.get(Brief, second_id) is not None


def test_an_empty_brief_built_before_the_items_came_is_built_again_unless_it_was_sent(brief_settings, sessions):
    _, empty = _build(brief_settings, sessions)  # nothing ingested yet
    assert empty.cards == []
    _world_with_episode(sessions)
    embed(brief_settings, sessions)
    _, rebuilt = _build(brief_settings, sessions)
    assert rebuilt.cards  # (SQLite may hand the freed id out again)
    with sessions() as session:
        assert session.query(Brief).count() == 1

    with sessions() as session, session.begin():  # an empty brief that went out stays what readers got
        session.query(Brief).delete()
        session.add(Brief(topic=TOPIC, day=NOW.date().isoformat(), payload=to_dict(empty), content_hash="sent"))
        session.flush()
        sent_id = session.scalar(select(Brief.id))
        session.add(Delivery(idempotency_key="k", channel="email", target="a@b.example", topic=TOPIC,
                             day=NOW.date().isoformat(), brief_id=sent_id, status="sent"))
    assert _build(brief_settings, sessions)[0] == sent_id


def test_a_builder_that_loses_the_race_returns_the_winners_brief(brief_settings, sessions):
    _world_with_episode(sessions)
    embed(brief_settings, sessions)
    summarizer = FakeSummarizer()

    class RacingSummaries(Summaries):
        """Another process stores its brief for the same (topic, day) while this one summarises."""

        def story_brief(self, story):
            with sessions() as session, session.begin():
                session.add(Brief(topic=TOPIC, day=NOW.date().isoformat(), payload=to_dict(DailyBrief(
                    TOPIC, "AI geopolitics", NOW.date().isoformat(), NOW.isoformat(), [], None, None)), content_hash="w"))
            return super().story_brief(story)

    from digest.summary.calls import CallLog
    from digest.summary.runtime import make_grounding
    from digest.summary.vectors import SentenceVectors

    racing = RacingSummaries(summarizer, make_grounding(brief_settings, SentenceVectors(FakeEncoder())), CallLog(),
                             sessions)
    brief_id, brief = _build(brief_settings, sessions, summarizer, summaries=racing)
    with sessions() as session:
        assert session.query(Brief).count() == 1 and session.get(Brief, brief_id).content_hash == "w"
    assert brief.cards == [] and summarizer.calls["card"] > 0


def test_the_next_days_brief_skips_what_was_told_unless_it_grew(brief_settings, sessions):
    ids = _world_with_episode(sessions)
    embed(brief_settings, sessions)
    _, first = _build(brief_settings, sessions)
    with sessions() as session:
        story = dict(session.execute(select(StoryItem.item_id, StoryItem.story_id)).all())
    assert story[ids["rule"]] in first.story_ids and story[ids["lumen"]] in first.story_ids
    tomorrow = NOW + timedelta(days=1)
    with sessions() as session, session.begin():
        gazette = session.scalars(select(Source).where(Source.title == "gazette")).one()
        add_item(session, gazette, "Export rule challenged in court", RULE_2 + " Chip makers challenge the rule in court.",
                 hours_ago=2, now=tomorrow)
    embed(brief_settings, sessions)
    _, second = _build(brief_settings, sessions, day=tomorrow.date(), now=tomorrow)
    assert story[ids["lumen"]] not in second.story_ids  # told yesterday, nothing new
    assert second.story_ids == [story[ids["rule"]]]  # told yesterday, but it has news


def test_summariser_calls_grow_with_k_not_with_items(tmp_path, db_url):
    counts = {}
    for k in (1, 2):
        settings = make_settings(tmp_path / f"k{k}", db_url if k == 1 else f"sqlite:///{tmp_path / 'k2.db'}",
                                 story_threshold=0.35, min_relevance=0.25, brief_k=k)
        from store.db import open_database

        sessions = open_database(settings.db_url)
        _world_with_episode(sessions)
        embed(settings, sessions)
        summarizer = FakeSummarizer()
        _build(settings, sessions, summarizer)
        counts[k] = summarizer.calls["card"]
        sessions.kw["bind"].dispose()
    assert counts == {1: 1, 2: 2}


def test_cards_are_written_for_each_persona_the_topics_readers_chose(brief_settings, sessions):
    from digest.render import select_cards
    from digest.subscribers import add_subscriber, unsubscribe

    _world_with_episode(sessions)
    embed(brief_settings, sessions)
    add_subscriber(sessions, "policy@example.org", topics=[TOPIC], persona="Policy Maker")
    add_subscriber(sessions, "trader@example.org", topics=[TOPIC], persona="Chip trader")
    add_subscriber(sessions, "chef@example.org", topics=["cooking"], persona="Chef")  # another topic: no cards
    gone, _ = add_subscriber(sessions, "gone@example.org", topics=[TOPIC], persona="Consultant")
    unsubscribe(sessions, gone.unsubscribe_token)  # an unsubscribed reader costs no more calls
    summarizer = FakeSummarizer()
    _, brief = _build(brief_settings, sessions, summarizer)
    stories = brief.story_ids
    assert stories and len(stories) == len(set(stories))
    for_story = {sid: [c.persona for c in brief.cards if c.story_id == sid] for sid in stories}
    assert all(p == ["", "Policy Maker", "Chip trader"] for p in for_story.values()), for_story
    assert summarizer.calls["card"] == 3 * len(stories)  # K x (general + personas chosen), still not per item
    assert [c.persona for c in select_cards(brief, "Policy Maker")] == ["Policy Maker"] * len(stories)
    assert [c.persona for c in select_cards(brief, None)] == [""] * len(stories)
    assert [c.persona for c in select_cards(brief, "Chef")] == [""] * len(stories)


def test_a_persona_card_no_different_from_the_general_one_is_not_kept(brief_settings, sessions):
    from digest.subscribers import add_subscriber

    class NothingParticular(FakeSummarizer):
        """Writes every persona the general card (as the extractive backend does when a story has
        nothing that serves the persona better)."""

        def insight_card(self, story, persona):
            return super().insight_card(story, "")

    _world_with_episode(sessions)
    embed(brief_settings, sessions)
    add_subscriber(sessions, "policy@example.org", topics=[TOPIC], persona="Policy Maker")
    summarizer = NothingParticular()
    _, brief = _build(brief_settings, sessions, summarizer)
    assert [c.persona for c in brief.cards] == [""] * len(brief.story_ids)  # one card a story, no false label
    assert summarizer.calls["card"] == 2 * len(brief.story_ids)


def test_an_unknown_topic_fails_before_any_work(brief_settings, sessions):
    from digest.topics import TopicError

    summarizer = FakeSummarizer()
    with pytest.raises(TopicError, match="unknown topic"):
        build_daily_brief(brief_settings, sessions, "cooking", NOW.date(), encoder=FakeEncoder(), summarizer=summarizer)
    assert sum(summarizer.calls.values()) == 0


def _insight(text: str, episode: int) -> PodcastInsight:
    return PodcastInsight(Sentence(text, [episode * 10]), SourceRef(episode, f"ep{episode}", None, "pod", "episode"))


def test_the_same_point_from_other_episodes_is_grouped_under_the_strongest():
    insights = [
        _insight("China releases open weight models to commoditise the model layer and dilute US dominance.", 1),
        _insight("Export controls push Chinese labs onto domestic accelerators.", 1),
        _insight("China releases open weight models to commoditise the model layer and weaken US dominance.", 2),
        _insight("China releases open weight models to commoditise the model layer and dilute US dominance!", 1),
        _insight("A cooking robot made risotto all week.", 3),
    ]
    grouped = group_related(insights, FakeEncoder(), threshold=0.8)
    heads = [g.insight.text for g in grouped]
    assert heads[0] == insights[0].insight.text and len(grouped) == 4  # the same-episode repeat is not "related"
    assert [r.episode.item_id for r in grouped[0].related] == [2]
    assert all(not g.related for g in grouped[1:])
    assert len(group_related(insights, FakeEncoder(), threshold=0.8, limit=2)) == 2


def test_the_stored_payload_reads_back_as_the_same_brief(brief_settings, sessions):
    _world_with_episode(sessions)
    embed(brief_settings, sessions)
    brief_id, brief = _build(brief_settings, sessions)
    with sessions() as session:
        payload = session.get(Brief, brief_id).payload
    assert to_dict(from_dict(DailyBrief, payload)) == to_dict(brief)


SEEDS = Path(__file__).resolve().parents[1].parent / "shared" / "seeds"
OTHER_POINTS = [
    "The US Commerce Department added a memory-bandwidth test to its export rule for AI accelerators.",
    "Portugal is funding two public AI data centres and a Portuguese-language foundation model.",
    "Meridian cut Atlas-5 prices by 65% and shut its fine-tuning API.",
    "Grid-connection queues for data centres now run to years in some regions.",
    "Chinese labs are moving training runs to domestic accelerators because of US sanctions.",
]


@pytest.mark.slow
def test_seed_002s_related_insights_group_under_its_head_with_minilm(tmp_path):
    seed = SEEDS / "002_271ca3de4280d624.txt"
    if not seed.exists():
        pytest.skip(f"seed 002 not found at {seed}")
    from embed.encoder import get_encoder

    paragraphs = [p.strip() for p in seed.read_text(encoding="utf-8").split("\n\n") if p.strip()]
    head, related = paragraphs[2], paragraphs[4:]  # after the heading lines and "Related Insights"
    assert len(related) == 10
    insights = [_insight(text, n) for n, text in enumerate([head, *related, *OTHER_POINTS], 1)]
    threshold = make_settings(tmp_path, "sqlite://").related_insight_threshold
    grouped = group_related(insights, get_encoder("minilm"), threshold)
    assert grouped[0].insight.text == head
    assert [r.insight.text for r in grouped[0].related] == related
    assert [g.insight.text for g in grouped[1:]] == OTHER_POINTS and not any(g.related for g in grouped[1:])
