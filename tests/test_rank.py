"""Topic profiles and the daily ranking: every part, MMR, the posts-only rumour, novelty, weights."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import select

from digest.cluster import cluster_pending
from digest.rank import (
    RankedStory,
    corroboration_factor,
    day_window,
    mmr_select,
    rank_stories,
    recency_factor,
)
from digest.topics import TopicError, TopicScorer, list_topics, load_topic
from embed.encoder import FakeEncoder
from store.models import Brief, BriefStory, Source, StoryItem, StoryScore
from tests.conftest import make_settings
from tests.digest_world import NOW, add_item, add_source, embed
from tests.test_cluster import COOKING, LUMEN, LUMEN_2, RULE, RULE_2

RUMOUR = ("Everyone is ignoring that a Shenzhen lab's distillation paper basically proves Chinese labs can copy a US "
          "frontier model through a side channel nobody has patched.")
RUMOUR_2 = ("yeah the Shenzhen distillation paper relies on a side channel nobody has patched, if the Shenzhen paper "
            "is real everyone is ignoring the biggest story.")

# --- topic profiles -------------------------------------------------------------------------------


def test_the_bundled_profile_loads_with_everything_the_brief_needs(tmp_path):
    profile = load_topic(make_settings(tmp_path, "sqlite://"), "ai-geopolitics")
    assert profile.title == "AI geopolitics"
    assert profile.persona_names == ["Director of AI/ML", "Policy Maker", "Consultant"]
    for persona in profile.personas:  # each reader role says what it cares about, in terms and examples
        assert persona.cares_about and len(persona.terms) >= 5 and len(persona.examples) >= 3
    assert len(profile.examples) >= 5 and "export controls" in profile.keywords and "distillation" in profile.keywords
    assert str(profile.zone) == "UTC" and profile.send_at.hour == 7


def test_a_user_profile_overrides_the_bundled_one_and_adds_topics(tmp_path):
    topics = tmp_path / "topics"
    topics.mkdir()
    (topics / "mine.toml").write_text('name = "ai-geopolitics"\ntitle = "Mine"\ndescription = "chips"\n'
                                      'timezone = "Europe/Lisbon"\nsend_time = "06:30"\n')
    (topics / "bio.toml").write_text('name = "biotech"\ndescription = "gene therapy approvals"\n')
    settings = make_settings(tmp_path, "sqlite://", topics_dir=topics)
    assert load_topic(settings, "ai-geopolitics").title == "Mine"
    assert set(list_topics(settings)) >= {"ai-geopolitics", "biotech"}
    assert load_topic(settings, "biotech").personas == ()  # no personas: every reader gets the general card


def test_personas_are_names_or_profiles(tmp_path):
    topics = tmp_path / "topics"
    topics.mkdir()
    (topics / "a.toml").write_text('name = "a"\ndescription = "d"\npersonas = ["Investor"]\n')
    (topics / "b.toml").write_text('name = "b"\ndescription = "d"\n[[personas]]\nname = "Investor"\n'
                                   'cares_about = "returns"\nterms = ["Valuation"]\nexamples = ["Shares rose."]\n')
    settings = make_settings(tmp_path, "sqlite://", topics_dir=topics)
    assert [p.name for p in load_topic(settings, "a").personas] == ["Investor"]
    investor = load_topic(settings, "b").personas[0]
    assert (investor.cares_about, investor.terms, investor.examples) == ("returns", ("valuation",), ("Shares rose.",))


@pytest.mark.parametrize("body, message", [
    ('name = "x"\n', "lacks description"),
    ('name = "x"\ndescription = "d"\ntimezone = "Mars/Olympus"\n', "unknown time zone"),
    ('name = "x"\ndescription = "d"\nsend_time = "7 o\'clock"\n', "not HH:MM"),
    ('name = "x"\ndescription = "d"\nkeywords = "chips"\n', "list of strings"),
    ('name = "x"\ndescription = "d"\n[[personas]]\ncares_about = "chips"\n', "every persona needs a name"),
    ('name = "x"\ndescription = "d"\n[[personas]]\nname = "P"\nexample = ["typo"]\n', "unknown keys"),
    ('name = = "x"\n', "cannot read"),
])
def test_a_broken_profile_is_refused_with_the_reason(tmp_path, body, message):
    topics = tmp_path / "topics"
    topics.mkdir()
    (topics / "bad.toml").write_text(body)
    with pytest.raises(TopicError, match=message):
        list_topics(make_settings(tmp_path, "sqlite://", topics_dir=topics))


def test_an_unknown_topic_names_the_ones_there_are(tmp_path):
    with pytest.raises(TopicError, match="unknown topic 'cooking'; available: ai-geopolitics"):
        load_topic(make_settings(tmp_path, "sqlite://"), "cooking")


def test_relevance_prefers_on_topic_text_and_counts_keywords(tmp_path):
    encoder = FakeEncoder()
    scorer = TopicScorer(load_topic(make_settings(tmp_path, "sqlite://"), "ai-geopolitics"), encoder)
    on, off = encoder.embed_batch([RULE, COOKING])
    assert scorer.score(on, RULE).score > scorer.score(off, COOKING).score
    assert {"export control", "chips", "china"} <= set(scorer.score(on, "export control of chips to China").keywords)
    assert scorer.score(off, COOKING).keywords == []


# --- the parts ------------------------------------------------------------------------------------


def test_corroboration_saturates_and_recency_halves_per_half_life():
    assert corroboration_factor(1) == 1.0 and corroboration_factor(3) == 1.5 and corroboration_factor(0) == 1.0
    assert corroboration_factor(2) < corroboration_factor(5) < 2.0
    assert recency_factor(NOW - timedelta(hours=24), NOW, 24)[0] == pytest.approx(0.5)
    assert recency_factor(NOW - timedelta(hours=48), NOW, 24)[0] == pytest.approx(0.25)
    assert recency_factor(NOW + timedelta(hours=3), NOW, 24)[0] == 1.0  # later than the reference: not in the future


def test_the_day_window_is_the_topics_local_day(tmp_path):
    profile = load_topic(make_settings(tmp_path, "sqlite://"), "ai-geopolitics")
    start, reference = day_window(profile, NOW.date(), now=NOW + timedelta(days=3))
    assert start.isoformat() == "2026-11-20T00:00:00+00:00" and reference.isoformat() == "2026-11-21T00:00:00+00:00"
    assert day_window(profile, NOW.date(), now=NOW)[1] == NOW  # built in the morning: ages from the morning


def _ranked(story_id, total, centroid):
    v = np.asarray(centroid, dtype=np.float32)
    return RankedStory(story_id, f"s{story_id}", 1.0, 1.0, 1.0, 1.0, 1.0, total, False, {}, v / np.linalg.norm(v))


def test_mmr_keeps_a_near_same_story_out_of_the_top():
    stories = [_ranked(1, 1.0, [1, 0, 0]), _ranked(2, 0.95, [0.99, 0.14, 0]), _ranked(3, 0.7, [0, 1, 0])]
    assert [s.story_id for s in mmr_select(stories, 2, 0.7)] == [1, 3]
    assert [s.story_id for s in mmr_select(stories, 2, 1.0)] == [1, 2]  # lambda 1: score only
    assert [s.rank for s in mmr_select(stories, 3, 0.7)] == [1, 2, 3]
    assert mmr_select([_ranked(4, 0.0, [1, 0, 0])], 5, 0.7) == []  # a zero score is never picked


# --- ranking a world --------------------------------------------------------------------------------


@pytest.fixture
def rank_settings(tmp_path, db_url):
    return make_settings(tmp_path, db_url, story_threshold=0.35, min_relevance=0.25)


def _world(sessions):
    with sessions() as session, session.begin():
        wire, daily, gazette = (add_source(session, f"https://{n}.example/feed", title=n) for n in ("wire", "daily", "gazette"))
        rumours = add_source(session, "https://forum.example/rumours", kind="thread", title="rumour thread")
        ids = {
            "rule": add_item(session, wire, "Commerce adds a memory bandwidth test to chip export rule", RULE, hours_ago=30).id,
            "rule_2": add_item(session, daily, "Chip makers react to memory bandwidth export rule", RULE_2, hours_ago=20).id,
            "rule_3": add_item(session, gazette, "Export rule and its memory bandwidth test", RULE_2 + " Lawyers expect a challenge.",
                               hours_ago=15).id,
            "lumen": add_item(session, wire, "Lumen-3 matches Atlas-5 at a tenth of the compute", LUMEN, hours_ago=28).id,
            "lumen_2": add_item(session, daily, "Lumen-3 hands-on", LUMEN_2, hours_ago=10).id,
            "cooking": add_item(session, daily, "A week with a cooking robot", COOKING, hours_ago=12).id,
            "rumour": add_item(session, rumours, "Shenzhen distillation paper", RUMOUR, kind="post", hours_ago=8).id,
            "rumour_2": add_item(session, rumours, "the Shenzhen paper", RUMOUR_2, kind="post", hours_ago=7).id,
        }
    return ids


def _stories(sessions, ids):
    with sessions() as session:
        story = dict(session.execute(select(StoryItem.item_id, StoryItem.story_id)).all())
    return {name: story[item_id] for name, item_id in ids.items()}


def _rank(settings, sessions, day=NOW.date(), now=NOW):
    return rank_stories(settings, sessions, "ai-geopolitics", day, encoder=FakeEncoder(), now=now)


def test_ranking_parts_are_stored_and_the_rumour_is_only_unverified(rank_settings, sessions):
    ids = _world(sessions)
    embed(rank_settings, sessions)
    cluster_pending(rank_settings, sessions)
    story = _stories(sessions, ids)
    assert story["rumour"] == story["rumour_2"] and story["rule"] == story["rule_3"]
    ranking = _rank(rank_settings, sessions)
    selected = [s.story_id for s in ranking.selected]
    assert selected[0] == story["rule"]  # three publishers beat two
    assert story["lumen"] in selected
    assert story["rumour"] not in selected and [s.story_id for s in ranking.unverified] == [story["rumour"]]
    assert story["cooking"] not in selected  # off-topic
    with sessions() as session:
        rows = {r.story_id: r for r in session.scalars(select(StoryScore).where(StoryScore.day == NOW.date().isoformat()))}
    rule = rows[story["rule"]]
    assert rule.rank == 1 and rule.corroboration == pytest.approx(1.5) and rule.novelty == 1.0
    assert rule.total == pytest.approx(rule.relevance * rule.corroboration * rule.novelty * rule.recency * rule.source_weight)
    assert rule.details["corroboration"]["count"] == 3 and rule.details["recency"]["age_hours"] == pytest.approx(15, abs=0.01)
    assert "relevance" in rule.details and "mmr" in rule.details
    assert rows[story["rumour"]].rank is None and rows[story["rumour"]].details["posts_only"] is True
    assert rows[story["cooking"]].details["off_topic"] is True and rows[story["cooking"]].rank is None


def test_a_heavier_source_lifts_its_story(rank_settings, sessions):
    ids = _world(sessions)
    embed(rank_settings, sessions)
    cluster_pending(rank_settings, sessions)
    story = _stories(sessions, ids)
    before = {s.story_id: s for s in _rank(rank_settings, sessions).scored}
    assert before[story["rule"]].source_weight == 1.0  # the default
    with sessions() as session, session.begin():
        session.scalars(select(Source).where(Source.title == "gazette")).one().weight = 5.0
    after = {s.story_id: s for s in _rank(rank_settings, sessions).scored}
    assert after[story["rule"]].source_weight == 5.0  # the heaviest of its publishers
    assert after[story["rule"]].total == pytest.approx(5 * before[story["rule"]].total)
    assert after[story["lumen"]].total == pytest.approx(before[story["lumen"]].total)  # gazette is not in it


def test_a_story_in_an_earlier_brief_is_not_novel_until_it_grows(rank_settings, sessions):
    ids = _world(sessions)
    embed(rank_settings, sessions)
    cluster_pending(rank_settings, sessions)
    story = _stories(sessions, ids)
    with sessions() as session, session.begin():
        brief = Brief(topic="ai-geopolitics", day=(NOW.date() - timedelta(days=1)).isoformat(), payload={}, content_hash="x")
        session.add(brief)
        session.flush()
        session.add(BriefStory(brief_id=brief.id, story_id=story["rule"], rank=1))
    ranking = _rank(rank_settings, sessions)
    rule = next(s for s in ranking.scored if s.story_id == story["rule"])
    assert rule.novelty == 0.0 and rule.story_id not in [s.story_id for s in ranking.selected]
    assert rule.details["novelty"]["earlier_brief"] is not None
    with sessions() as session, session.begin():
        late = add_item(session, session.scalars(select(Source).where(Source.title == "gazette")).one(),
                        "Export rule challenged", RULE_2 + " The rule is challenged in court by chip makers.", hours_ago=1).id
    embed(rank_settings, sessions)
    cluster_pending(rank_settings, sessions)
    assert _stories(sessions, {"late": late})["late"] == story["rule"]
    rule = next(s for s in _rank(rank_settings, sessions).scored if s.story_id == story["rule"])
    assert rule.novelty == pytest.approx(1 / 4)  # one of its four distinct members is news


def test_stories_outside_the_window_are_not_candidates(rank_settings, sessions):
    _world(sessions)
    embed(rank_settings, sessions)
    cluster_pending(rank_settings, sessions)
    later = NOW + timedelta(days=10)
    assert _rank(rank_settings, sessions, day=later.date(), now=later).scored == []
