"""Stories across English and Chinese: names inside Chinese text, the languages an encoder covers,
the story encoder loaded only when a pair crosses languages, and the quality gate on
tests/data/crosslingual_pairs.json with the real encoders (MiniLM passages, USE-m3 stories).

Figures: docs/multilingual.md (benchmarks/crosslingual.py); the pins sit a little below them."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest

from digest.cluster import ML_LINK, Clusterer, cluster_pending, signature_of, story_languages
from digest.crosslingual import cjk_lead, cjk_names, cjk_words, is_cjk, mapped_names
from digest.vectors import lead_text
from embed.encoder import FakeEncoder, get_encoder
from embed.multilingual import USEM3_MODEL_ID, LazyEncoder, base_language, covers, languages_of
from embed.runtime import make_story_encoder
from store.models import Item
from tests.conftest import make_settings
from tests.crosslingual_world import build_world, load_crosslingual
from tests.digest_world import add_item, add_source, embed
from tests.test_cluster_quality import baselines, pairwise_scores, split_halves, stories_by_key

# Measured on the held-out half (docs/multilingual.md); pinned a little below, raise only.
PINNED_PAIRWISE_F1 = 0.90  # measured 0.957 (P 1.000, R 0.917); MiniLM for every pair: 0.000
PINNED_BCUBED_F1 = 0.95  # measured 0.979
PINNED_WHOLE_F1 = 0.95  # every pair of the file (300): measured 0.979


def test_latin_names_inside_chinese_text_count():
    names = cjk_names("美国商务部要求英伟达向中国出售H20芯片须获许可，DeepSeek与Meridian Labs回应。")
    assert {"h20", "deepseek", "meridian", "labs"} <= names
    assert {"commerce", "department", "nvidia", "china"} <= names  # from the table


def test_the_name_table_prefers_the_longer_name():
    assert mapped_names("美国商务部") == {"commerce", "department"}
    assert mapped_names("商务部发言人") == set()  # China's ministry is 商务部 too: not the US department
    assert mapped_names("阿里巴巴和阿里云") == {"alibaba", "cloud"}
    assert mapped_names("华为昇腾910C") == {"huawei", "ascend"}


def test_hyphenated_latin_names_count_whole_and_in_parts():
    assert {"deepseek-v4", "deepseek", "v4"} <= cjk_names("深度求索发布DeepSeek-V4")
    assert "the" not in cjk_names("据The Information报道")  # a stopword is no name


def test_chinese_words_are_bigrams_and_latin_words():
    words = cjk_words("高带宽内存 export rules")
    assert {"高带", "带宽", "宽内", "内存", "export", "rule"} <= words
    assert cjk_words("美") == {"美"}


def test_chinese_script_is_recognised_and_its_lead_cut_by_characters():
    assert is_cjk("英伟达H20芯片对华出口须获许可")
    assert not is_cjk("Nvidia says H20 sales to China need a licence (英伟达)")
    assert len(cjk_lead("字" * 1000, 160)) == 288
    item = Item(title="标题", text="字" * 1000)
    assert len(lead_text(item, 160)) == len("标题. ") + 288  # not the whole text: it has no spaces


def test_an_english_and_a_chinese_report_share_names_through_the_signature():
    data = load_crosslingual()["items"]
    en, zh = (Item(id=n, title=data[k]["title"], text=data[k]["text"], source_id=n, kind="article",
                   language="en" if k.endswith(("en-1", "en-2")) else "zh-CN") for n, k in ((1, "c2-en-1"), (2, "c2-zh-1")))
    a, b = signature_of(en, np.ones(3)), signature_of(zh, np.ones(3))
    assert a.language == "en" and b.language == "zh"
    assert {"nvidia", "h20"} <= a.names & b.names


def test_languages_of_encoders_and_items():
    assert languages_of("sentence-transformers/all-MiniLM-L6-v2") == {"en"}
    assert {"en", "zh", "ja"} <= languages_of(USEM3_MODEL_ID)
    assert languages_of("fake-hash-384") is None  # unknown: any language
    assert base_language("zh-CN") == base_language("zh_tw") == "zh" and base_language(None) is None
    assert covers(frozenset({"en"}), "en-GB") and not covers(frozenset({"en"}), "zh-CN")
    assert covers(frozenset({"en"}), None)  # unknown language: assume so


def test_story_languages_follow_the_story_encoder_unless_set(tmp_path):
    settings = make_settings(tmp_path, "sqlite://")
    use = LazyEncoder(lambda: None, USEM3_MODEL_ID, 512)
    minilm = "sentence-transformers/all-MiniLM-L6-v2"
    assert "zh" in story_languages(settings, minilm, use)
    assert story_languages(settings, minilm, None) == {"en"}  # story_encoder = passages: MiniLM's
    assert story_languages(settings.model_copy(update={"story_languages": ["en"]}), minilm, use) == {"en"}
    assert story_languages(settings.model_copy(update={"story_languages": []}), minilm, use) is None


def test_the_story_encoder_comes_from_settings_and_loads_lazily(tmp_path):
    settings = make_settings(tmp_path, "sqlite://")
    lazy = make_story_encoder(settings)
    assert lazy.model_id == USEM3_MODEL_ID and not lazy.loaded
    assert make_story_encoder(settings.model_copy(update={"story_encoder": "passages"})) is None
    assert make_story_encoder(settings.model_copy(update={"story_encoder": "fake"})).model_id.startswith("fake")


class Counting(FakeEncoder):
    def __init__(self) -> None:
        super().__init__()
        self.model_id, self.texts = USEM3_MODEL_ID, []

    def embed_batch(self, texts):
        self.texts.extend(texts)
        return super().embed_batch(texts)


@pytest.fixture
def english_fake(monkeypatch):
    """The fake passage encoder declared English-only, as MiniLM is (its vectors are a bag of words)."""
    import embed.multilingual

    monkeypatch.setitem(embed.multilingual.MODEL_LANGUAGES, FakeEncoder().model_id, frozenset({"en"}))


def _two_languages(settings, sessions):
    with sessions() as session, session.begin():
        wire, zh = add_source(session, "https://wire.example/feed"), add_source(session, "https://zh.example/feed")
        en = add_item(session, wire, "Nvidia needs a licence for H20 sales to China",
                      "Nvidia said the Commerce Department now requires a licence for H20 sales to China.", hours_ago=6)
        cn = add_item(session, zh, "英伟达H20对华出口须获许可", "英伟达表示美国商务部要求其H20芯片对华出口须获得许可证。", hours_ago=5)
        cn.language = "zh-CN"
        ids = en.id, cn.id
    embed(settings, sessions)
    return ids


def test_an_english_only_world_never_calls_the_story_encoder(sessions, settings, english_fake):
    from embed.index import IndexStore

    with sessions() as session, session.begin():
        wire, daily = add_source(session, "https://wire.example/feed"), add_source(session, "https://daily.example/feed")
        add_item(session, wire, "Nvidia needs a licence for H20 sales", "Nvidia said H20 sales need a licence.", hours_ago=6)
        add_item(session, daily, "H20 licence for Nvidia", "A licence is now needed for Nvidia H20 sales.", hours_ago=5)
    embed(settings, sessions)
    counting = Counting()
    index = IndexStore(settings.index_dir).load()
    report = cluster_pending(settings, sessions, index=index, story_encoder=counting)
    assert report.items == 2 and report.story_vectors == 0 and counting.texts == []


def test_a_chinese_item_is_compared_by_the_story_encoder(sessions, settings, english_fake):
    from embed.index import IndexStore

    en_id, zh_id = _two_languages(settings, sessions)
    counting = Counting()
    index = IndexStore(settings.index_dir).load()
    report = cluster_pending(settings, sessions, index=index, story_encoder=counting)
    assert report.story_vectors == 2 and len(counting.texts) == 2  # each item's lead once
    assert any("英伟达" in t for t in counting.texts)
    # the old behaviour, named: English-only stories, the Chinese item a story of its own
    from store.models import Story, StoryItem

    with sessions() as session, session.begin():
        session.query(StoryItem).delete()
        session.query(Story).delete()
    fenced = settings.model_copy(update={"story_encoder": "passages"})
    cluster_pending(fenced, sessions, index=index, story_encoder=None)
    with sessions() as session:
        story = dict(session.query(StoryItem.item_id, StoryItem.story_id).all())
    assert story[en_id] != story[zh_id]


def test_a_chinese_member_does_not_move_an_english_storys_centroid():
    from datetime import UTC, datetime

    from digest.cluster import _StoryState

    when = datetime(2026, 11, 3, tzinfo=UTC)
    english = _StoryState(1, np.array([1.0, 0.0]), 1, when, when)
    english.absorb(np.array([0.0, 1.0]), when, native=False)
    assert english.centroid.tolist() == [1.0, 0.0] and english.distinct == 1
    chinese_led = _StoryState(2, np.array([0.0, 1.0]), 1, when, when, native=False)
    chinese_led.absorb(np.array([1.0, 0.0]), when, native=True)
    assert chinese_led.centroid.tolist() == [1.0, 0.0] and chinese_led.native


def test_the_pairs_file_is_well_formed():
    data = load_crosslingual()
    assert "Written for briefcast" in data["about"]
    pairs = data["pairs"]
    assert len(pairs) >= 60 and all(p["reason"] for p in pairs)
    crossed = [p for p in pairs if data["items"][p["a"]]["lang"] != data["items"][p["b"]]["lang"]]
    assert sum(p["same"] for p in crossed) >= 30 and sum(not p["same"] for p in crossed) >= 30
    for pair in pairs:
        assert pair["same"] == (data["items"][pair["a"]]["story"] == data["items"][pair["b"]]["story"])
    topics = defaultdict(set)
    for name, story in data["stories"].items():
        topics[story["topic"]].add(name)
    assert all(len(stories) >= 3 for stories in topics.values())  # siblings in every topic
    halves = split_halves(data)
    held = [p for p in pairs if halves[p["a"]] == halves[p["b"]] == 1]
    assert sum(p["same"] for p in held) >= 10 and sum(not p["same"] for p in held) >= 30


def test_usem3_finds_the_chinese_twin():
    use = get_encoder("usem3", threads=1)
    data = load_crosslingual()["items"]
    en = [data[k]["title"] + ". " + data[k]["text"] for k in ("c1-en-1", "m1-en-1", "p2-en-1")]
    zh = [data[k]["title"] + "。" + data[k]["text"] for k in ("c1-zh-1", "m1-zh-1", "p2-zh-1", "c2-zh-1", "i1-zh-1")]
    sims = use.embed_batch(en) @ use.embed_batch(zh).T
    assert sims.shape == (3, 5) and np.allclose(np.linalg.norm(use.embed_batch(en), axis=1), 1.0, atol=1e-5)
    assert list(np.argmax(sims, axis=1)) == [0, 1, 2]


@pytest.mark.slow
def test_crosslingual_clustering_quality(tmp_path):
    """The labelled EN-ZH world: MiniLM passages by the real embed stage, USE-m3 for the pairs that
    cross languages (the default settings), scored on the held-out half."""
    from store.db import open_database

    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'xl.db'}")
    sessions = open_database(settings.db_url)
    minilm = get_encoder("minilm")
    ids = build_world(settings, sessions, minilm)
    report = cluster_pending(settings, sessions, encoder=minilm)
    assert report.skipped == 0 and report.items == len(ids) and report.story_vectors > 0
    data = load_crosslingual()
    story_of = stories_by_key(sessions, ids)
    halves = split_halves(data)
    held = [p for p in data["pairs"] if halves[p["a"]] == halves[p["b"]] == 1]
    keys = [k for k in data["items"] if halves[k] == 1]
    from tests.test_cluster_quality import bcubed_scores

    pairwise = pairwise_scores(held, story_of)
    bcubed = bcubed_scores(keys, {k: s["story"] for k, s in data["items"].items()}, story_of)
    whole = pairwise_scores(data["pairs"], story_of)
    print(json.dumps({"held-out": pairwise, "bcubed": bcubed, "whole": whole}))
    assert pairwise["f1"] >= PINNED_PAIRWISE_F1, pairwise
    assert bcubed["f1"] >= PINNED_BCUBED_F1, bcubed
    assert whole["f1"] >= PINNED_WHOLE_F1, whole
    one, alone = (pairwise_scores(held, {k: 1 for k in data["items"]}),
                  pairwise_scores(held, {k: n for n, k in enumerate(data["items"])}))
    assert pairwise["f1"] > max(one["f1"], alone["f1"])
    assert ML_LINK.weights[0] > 0  # the multilingual link reads USE-m3's cosine
    sessions.kw["bind"].dispose()


def test_the_clusterer_uses_the_multilingual_link_only_across_languages(settings, sessions, english_fake):
    from embed.index import IndexStore

    _two_languages(settings, sessions)
    clusterer = Clusterer(settings, IndexStore(settings.index_dir).load(), story_encoder=Counting())
    with sessions() as session:
        items = list(session.query(Item).order_by(Item.id))
        signatures = clusterer.prepare(session, items)
    en, zh = (signatures[i.id] for i in items)
    assert clusterer.native(en) and not clusterer.native(zh)
    assert baselines  # the quality module's helpers are importable here (used by the slow gate)


def test_the_cli_announces_a_changed_story_encoder(tmp_path):
    """`briefcast embed` says when the story encoder differs from the one the last clustering used
    (story vectors are not stored: nothing is re-embedded for it), and is silent otherwise."""
    from tests.test_cli import briefcast

    data = tmp_path / "data"
    data.mkdir()
    (data / "story-encoder.txt").write_text(USEM3_MODEL_ID + "\n")
    changed = briefcast(tmp_path, "embed", BRIEFCAST_ENCODER="fake", BRIEFCAST_STORY_ENCODER="passages")
    assert changed.returncode == 0, changed.stderr
    message = " ".join(changed.stderr.split())
    assert f"Stories were linked with {USEM3_MODEL_ID}" in message and "story encoder is now passages" in message
    same = briefcast(tmp_path, "embed", BRIEFCAST_ENCODER="fake", BRIEFCAST_STORY_ENCODER="usem3")
    assert same.returncode == 0 and "Stories were linked" not in same.stderr


def test_clustering_records_the_story_encoder_it_used(settings, sessions):
    from embed.runtime import recorded_story_model

    _two_languages(settings, sessions)
    cluster_pending(settings, sessions, story_encoder=Counting())
    assert recorded_story_model(settings) == USEM3_MODEL_ID
