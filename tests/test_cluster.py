"""Stories from items (fake encoder, real embed stage, SQLite and PostgreSQL): incremental joining,
near-duplicates that count once, corroboration, the time window, languages the encoder lacks, and
the link: names, rarity, titles, time and threads that tell sibling events of one topic apart."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sqlalchemy import select

from digest.cluster import (
    FEATURES,
    FITTED_LINK,
    Clusterer,
    LinkModel,
    Rarity,
    Signature,
    cluster_pending,
    members_hash,
    names_of,
    overlap,
    pair_features,
    shingles_of,
    story_members,
)
from embed.index import IndexStore
from store.models import Item, Story, StoryItem
from tests.conftest import make_settings
from tests.digest_world import add_item, add_source, embed

RULE = ("The Commerce Department export rule adds a memory bandwidth test for AI accelerator chips sold to China. "
        "Accelerators above the memory bandwidth limit need an export licence, and the rule adds cloud resellers "
        "to the Entity List. Chip makers say the memory bandwidth test targets inference accelerators.")
RULE_2 = ("Chip makers react to the export rule: the memory bandwidth test for AI accelerator chips sold to China "
          "means an export licence for most inference accelerators, and two cloud resellers join the Entity List.")
LUMEN = ("Lumen AI released Lumen-3, an open weight mixture of experts model from Hangzhou that matches Atlas-5 on "
         "reasoning benchmarks with a tenth of the training compute. The Lumen-3 weights are Apache licensed.")
LUMEN_2 = ("Hands-on with Lumen-3: the open weight Hangzhou model runs well, the Apache licence is clean, and its "
           "reasoning benchmarks sit close to Atlas-5 as Lumen AI claimed, at a tenth of the training compute.")
COOKING = ("A countertop cooking robot made dinner every night for a week: soups, risotto and a passable curry, "
           "with a ladle arm, a heated pot and a recipe app. Cleaning the ladle arm took longer than cooking.")


@pytest.fixture
def story_settings(tmp_path, db_url):
    return make_settings(tmp_path, db_url, story_threshold=0.35)


def _world(sessions):
    with sessions() as session, session.begin():
        wire, daily, mirror = (add_source(session, f"https://{n}.example/feed", title=n) for n in ("wire", "daily", "mirror"))
        thread = add_source(session, "https://forum.example/thread", kind="thread", title="forum thread")
        ids = {
            "rule": add_item(session, wire, "Commerce adds a memory bandwidth test to chip export rule", RULE, hours_ago=30).id,
            "rule_2": add_item(session, daily, "Chip makers react to memory bandwidth export rule", RULE_2, hours_ago=20).id,
            "copy": add_item(session, mirror, "Commerce adds a memory bandwidth test to chip export rule",
                             RULE + " Republished with permission from the wire.", hours_ago=25).id,
            "post": add_item(session, thread, "the memory bandwidth test", "The memory bandwidth test in the export rule "
                             "is the clever part: accelerator chips sold to China lose their inference edge.",
                             kind="post", hours_ago=19).id,
            "lumen": add_item(session, wire, "Lumen-3 matches Atlas-5 at a tenth of the compute", LUMEN, hours_ago=28).id,
            "lumen_2": add_item(session, daily, "Lumen-3 hands-on", LUMEN_2, hours_ago=10).id,
            "cooking": add_item(session, daily, "A week with a cooking robot", COOKING, hours_ago=12).id,
        }
    return ids


def _story_of(sessions) -> dict[int, int]:
    with sessions() as session:
        return dict(session.execute(select(StoryItem.item_id, StoryItem.story_id)).all())


def test_items_form_stories_and_a_syndicated_copy_counts_once(story_settings, sessions):
    ids = _world(sessions)
    embed(story_settings, sessions)
    report = cluster_pending(story_settings, sessions)
    assert report.items == 7 and report.skipped == 0 and report.duplicates == 1
    story = _story_of(sessions)
    assert story[ids["rule"]] == story[ids["rule_2"]] == story[ids["copy"]] == story[ids["post"]]
    assert story[ids["lumen"]] == story[ids["lumen_2"]] != story[ids["rule"]]
    assert story[ids["cooking"]] not in {story[ids["rule"]], story[ids["lumen"]]}
    with sessions() as session:
        rule_story = session.get(Story, story[ids["rule"]])
        copy = session.scalars(select(StoryItem).where(StoryItem.item_id == ids["copy"])).one()
        assert copy.duplicate_of == ids["rule"]  # the earlier original, not the mirror
        # wire, daily and the thread: the mirror's copy adds no publisher
        assert rule_story.item_count == 4 and rule_story.corroboration == 3
        assert rule_story.lead_item_id == ids["rule"]  # earliest distinct article
        assert rule_story.first_seen < rule_story.last_seen
        assert session.get(Story, story[ids["lumen"]]).corroboration == 2


def test_new_items_join_existing_stories_incrementally(story_settings, sessions):
    ids = _world(sessions)
    embed(story_settings, sessions)
    cluster_pending(story_settings, sessions)
    with sessions() as session:
        rule_story = session.get(Story, _story_of(sessions)[ids["rule"]])
        before = (rule_story.item_count, rule_story.content_hash, np.frombuffer(rule_story.centroid, dtype=np.float32).copy())
        stories_before = session.query(Story).count()
    with sessions() as session, session.begin():
        gazette = add_source(session, "https://gazette.example/feed", title="gazette")
        late = add_item(session, gazette, "Export rule: what the memory bandwidth test means", RULE_2 +
                        " Lawyers expect the Entity List additions to be challenged.", hours_ago=1).id
    embed(story_settings, sessions)
    report = cluster_pending(story_settings, sessions)
    assert report.items == 1 and report.joined == 1 and report.new_stories == 0
    with sessions() as session:
        assert session.query(Story).count() == stories_before
        story = session.get(Story, _story_of(sessions)[late])
        assert story.id == rule_story.id
        assert story.item_count == before[0] + 1 and story.corroboration == 4
        assert story.content_hash != before[1]
        assert not np.allclose(np.frombuffer(story.centroid, dtype=np.float32), before[2])


def test_an_item_outside_the_time_window_starts_a_new_story(story_settings, sessions):
    ids = _world(sessions)
    embed(story_settings, sessions)
    cluster_pending(story_settings, sessions)
    with sessions() as session, session.begin():
        source = add_source(session, "https://later.example/feed")
        late = add_item(session, source, "Chip makers react to memory bandwidth export rule", RULE_2, hours_ago=-24 * 10).id
    embed(story_settings, sessions)
    report = cluster_pending(story_settings, sessions)
    assert report.new_stories == 1
    assert _story_of(sessions)[late] != _story_of(sessions)[ids["rule"]]


def test_a_language_the_encoder_does_not_know_stays_a_story_of_its_own(story_settings, sessions):
    ids = _world(sessions)
    with sessions() as session, session.begin():
        source = add_source(session, "https://zh.example/feed")
        zh = add_item(session, source, "Chip makers react to memory bandwidth export rule", RULE_2, hours_ago=5)
        zh.language = "zh-CN"
        zh_id = zh.id
    embed(story_settings, sessions)
    english_only = story_settings.model_copy(update={"story_languages": ["en"], "story_encoder": "passages"})
    cluster_pending(english_only, sessions)
    assert _story_of(sessions)[zh_id] != _story_of(sessions)[ids["rule"]]
    with sessions() as session:
        alone = session.get(Story, _story_of(sessions)[zh_id])
        assert alone.content_hash and alone.item_count == 1 and alone.lead_item_id == zh_id
    # a multilingual encoder: every language joins
    with sessions() as session, session.begin():
        session.query(Story).delete()
    cluster_pending(story_settings.model_copy(update={"story_languages": []}), sessions)
    assert _story_of(sessions)[zh_id] == _story_of(sessions)[ids["rule"]]


def test_items_not_yet_embedded_wait_for_the_next_run(story_settings, sessions):
    _world(sessions)
    report = cluster_pending(story_settings, sessions)  # no index yet
    assert report.items == 0 and report.skipped == 7
    embed(story_settings, sessions)
    assert cluster_pending(story_settings, sessions).items == 7


def test_story_content_hash_ignores_order_and_copies(story_settings, sessions):
    ids = _world(sessions)
    embed(story_settings, sessions)
    cluster_pending(story_settings, sessions)
    with sessions() as session:
        members = story_members(session, _story_of(sessions)[ids["rule"]])
    distinct = [m for m in members if m.duplicate_of is None]
    assert members_hash(members) == members_hash(list(reversed(members))) == members_hash(distinct)
    assert members_hash(distinct[1:]) != members_hash(distinct)


def test_overlap_catches_copies_and_cut_copies_not_retellings():
    assert overlap(shingles_of(RULE), shingles_of(RULE + " Republished with permission.")) >= 0.85
    assert overlap(shingles_of(RULE[: len(RULE) * 2 // 3]), shingles_of(RULE)) >= 0.85  # a cut copy
    assert overlap(shingles_of(RULE), shingles_of(RULE_2)) < 0.5  # same story, own words
    assert overlap(shingles_of("short one"), shingles_of("short one and more")) < 0.85


# --- the link: sibling events of one topic ---------------------------------------------------------

DISTIL = ("Meridian Labs said Beiming Technology harvested Atlas-5 outputs through 2,400 API accounts to train its "
          "Kun-2 model, and tightened its API terms for developers in China.")
DISTIL_2 = ("Beiming Technology denied that its Kun-2 model was trained on Atlas-5 outputs and said Meridian Labs had "
            "shown it no evidence of the 2,400 accounts.")
PRICES = ("Meridian Labs cut the price of Atlas-5 by 65% and retired its Atlas-Open weights, a day after Lumen-3 "
          "matched Atlas-5 on reasoning benchmarks.")
PRICES_2 = "Meridian Labs will publish no new Atlas-Open weights, it said alongside the 65% Atlas-5 price cut."
OLD_RULE = LinkModel(tuple(1.0 if f == "cosine" else 0.0 for f in FEATURES), 0.0, link="mean")  # mean cosine


def _siblings(sessions) -> dict[str, int]:
    ids = _world(sessions)
    with sessions() as session, session.begin():
        wire, daily, gazette, herald = (add_source(session, f"https://{n}.example/news", title=n)
                                        for n in ("wire2", "daily2", "gazette", "herald"))
        ids["distil"] = add_item(session, wire, "Meridian accuses Beiming of distilling Atlas-5", DISTIL, hours_ago=10).id
        ids["prices"] = add_item(session, daily, "Meridian cuts Atlas-5 prices by 65%", PRICES, hours_ago=9).id
        ids["distil_2"] = add_item(session, gazette, "Beiming denies distilling Atlas-5", DISTIL_2, hours_ago=8).id
        ids["prices_2"] = add_item(session, herald, "Meridian retires Atlas-Open", PRICES_2, hours_ago=7).id
    return ids


def test_a_shared_specific_name_joins_and_one_topic_with_other_names_does_not(story_settings, sessions):
    """Four items on Meridian and Atlas-5: two on the distillation charge (Beiming, Kun-2), two on
    the price cut (Atlas-Open, 65%). The names they share with the other event are the topic's."""
    ids = _siblings(sessions)
    embed(story_settings, sessions)
    cluster_pending(story_settings, sessions)
    story = _story_of(sessions)
    assert story[ids["distil"]] == story[ids["distil_2"]]
    assert story[ids["prices"]] == story[ids["prices_2"]]
    assert story[ids["distil"]] != story[ids["prices"]]
    # the cosine alone, averaged (the old rule at 0.35), merges the two events: this test tells them apart
    with sessions() as session, session.begin():
        session.query(Story).delete()
    cluster_pending(story_settings.model_copy(update={"story_threshold": 1 / (1 + math.exp(-0.35))}), sessions,
                    link=OLD_RULE)
    story = _story_of(sessions)
    assert story[ids["distil"]] == story[ids["prices"]]


def test_the_stored_link_is_the_pair_models_probability(story_settings, sessions):
    """The clusterer scores members in bulk; its figure equals the pair features' (what the fit used)."""
    ids = _siblings(sessions)
    embed(story_settings, sessions)
    cluster_pending(story_settings, sessions)
    with sessions() as session:
        items = list(session.scalars(select(Item)))
        clusterer = Clusterer(story_settings, IndexStore(story_settings.index_dir).load())
        signatures = clusterer.prepare(session, items)  # the same items, so the same rarity as the run's
        joined = session.scalars(select(StoryItem).where(StoryItem.item_id == ids["distil_2"])).one()
    expected = FITTED_LINK.probability(pair_features(signatures[ids["distil_2"]], signatures[ids["distil"]],
                                                     clusterer.rarity))
    assert joined.similarity == pytest.approx(float(expected), abs=1e-6)
    assert joined.similarity >= story_settings.story_threshold


def _signature(item_id, names="", words="", title="", published=None, source_id=1, post=False, vector=None):
    return Signature(item_id, np.asarray(vector if vector is not None else [1.0, 0.0], dtype=np.float32),
                     frozenset(names.split()), frozenset(words.split()), frozenset(title.split()), published,
                     source_id, post)


def test_a_rare_shared_name_weighs_more_than_a_common_one():
    rarity = Rarity()
    common = [_signature(n, names="meridian china") for n in range(10)]
    for s in common + [_signature(10, names="beiming meridian"), _signature(11, names="beiming atlas-open")]:
        rarity.add(s)
    beiming = rarity.names.overlap(frozenset({"beiming", "kun-2"}), frozenset({"beiming", "atlas-open"}))
    meridian = rarity.names.overlap(frozenset({"meridian", "kun-2"}), frozenset({"meridian", "atlas-open"}))
    assert beiming > 2 * meridian > 0
    assert rarity.names.overlap(frozenset({"beiming"}), frozenset({"beiming", "meridian", "china"})) == 1.0


def test_time_and_threads_in_the_pair_features():
    rarity = Rarity()
    a = _signature(1, published=0.0, source_id=7, post=True)
    near = pair_features(a, _signature(2, published=3600.0, source_id=7, post=True), rarity)
    far = pair_features(a, _signature(3, published=100 * 3600.0, source_id=7, post=True), rarity)
    undated = pair_features(a, _signature(4, source_id=7, post=True), rarity)
    other_source = pair_features(a, _signature(5, published=3600.0, source_id=8, post=True), rarity)
    f = {name: n for n, name in enumerate(FEATURES)}
    assert near[f["hours"]] == pytest.approx(1 / 72) and far[f["hours"]] == 1.0 and undated[f["hours"]] == pytest.approx(1 / 3)
    assert near[f["same_thread"]] == 1.0 and near[f["thread_close"]] == pytest.approx(math.exp(-1 / 12))
    assert undated[f["same_thread"]] == 1.0 and undated[f["thread_close"]] == 0.0  # no times: no closeness bonus
    assert other_source[f["same_source"]] == other_source[f["same_thread"]] == 0.0
    assert FITTED_LINK.score(near) > FITTED_LINK.score(far)


def test_names_are_the_words_of_capitalised_runs_and_model_names():
    found = names_of("Meridian Labs accused Hangzhou-based Lumen AI. The CX-720C ships; Atlas-5's price fell.")
    assert {"meridian", "labs", "hangzhou", "lumen", "ai", "cx-720c", "atlas-5"} <= found
    assert "the" not in found and "accused" not in found
