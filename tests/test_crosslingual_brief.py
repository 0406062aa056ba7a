"""Chinese sources in an English brief: a Chinese report of an English story counts for
corroboration and is listed among the card's sources with its original title and its language; the
card is written from the English sources only; a story told only in Chinese is a labelled card with
its original headline and no summary. Real USE-m3 for the pair that crosses languages, the fake
passage encoder (declared English-only, as MiniLM is) and the fake summariser elsewhere."""

from __future__ import annotations

import json
import re

import pytest

from digest.compose import _cards, covered_only_card, foreign_only, story_input, summaries_for
from digest.render import one_line, render_brief
from digest.summary.schema import DailyBrief, to_dict
from digest.topics import load_topic
from embed.encoder import FakeEncoder
from embed.index import IndexStore
from store.models import Item, Story, StoryItem
from tests.conftest import make_settings
from tests.digest_world import NOW, FakeSummarizer, add_item, add_source
from tests.test_compose import _build
from tests.test_crosslingual import english_fake  # noqa: F401  (fixture)
from tests.test_rank import _world

CJK = re.compile(r"[\u4e00-\u9fff]")
ZH_TITLE = "美国商务部出口新规增设内存带宽测试"
ZH_RULE = ("美国商务部出口新规对销往中国的AI加速芯片增设内存带宽测试。内存带宽超过上限的加速器需申请出口许可证，"
           "新规还将云服务转售商列入实体清单。芯片厂商表示，内存带宽测试主要针对推理加速器。")
ZH_ONLY_TITLE = "杭州至舟山低空物流航线开通 无人机两小时送达当日海鲜"
ZH_ONLY = "杭州至舟山的低空物流航线今天开通，无人机可在两小时内把当日捕捞的海鲜送到杭州的餐馆，运营方计划年底前增开三条航线。"


@pytest.fixture
def brief_settings(tmp_path, db_url):
    return make_settings(tmp_path, db_url, story_threshold=0.35, min_relevance=0.25)


def _with_chinese(sessions) -> dict[str, int]:
    ids = _world(sessions)
    with sessions() as session, session.begin():
        zngc = add_source(session, "https://zngc.example/feed", title="智能观察")
        ids["rule_zh"] = add_item(session, zngc, ZH_TITLE, ZH_RULE, hours_ago=32).id  # before the English reports
        ids["drones"] = add_item(session, zngc, ZH_ONLY_TITLE, ZH_ONLY, hours_ago=6).id
        for name in ("rule_zh", "drones"):
            session.get(Item, ids[name]).language = "zh-CN"
    return ids


def _story_of(sessions, item_id: int) -> Story:
    with sessions() as session:
        story_id = session.query(StoryItem.story_id).filter(StoryItem.item_id == item_id).scalar()
        return session.get(Story, story_id)


def test_a_chinese_report_corroborates_the_english_story_and_is_cited_not_summarised(brief_settings, sessions,
                                                                                        english_fake):
    ids = _with_chinese(sessions)
    from tests.digest_world import embed

    embed(brief_settings, sessions)
    summarizer = FakeSummarizer()
    _, brief = _build(brief_settings, sessions, summarizer=summarizer)
    story = _story_of(sessions, ids["rule"])
    assert _story_of(sessions, ids["rule_zh"]).id == story.id  # one story across languages
    assert story.corroboration == 4  # wire, daily, gazette and the Chinese outlet
    assert not CJK.search(story.title)  # the English title, though the Chinese report came first
    card = next(c for c in brief.cards if c.story_id == story.id)
    chinese = [s for s in card.sources if s.item_id == ids["rule_zh"]]
    assert chinese and chinese[0].language == "zh" and chinese[0].title == ZH_TITLE
    assert card.sources[0].language in (None, "en")  # English sources first: the attribution is one of them
    written = json.dumps({k: v for k, v in to_dict(card).items() if k not in ("sources", "related")},
                         ensure_ascii=False)
    assert not CJK.search(written)  # no Chinese sentence in the English card
    text, html = render_brief(brief).text, render_brief(brief).html
    assert f"智能观察 (in Chinese: “{ZH_TITLE}”)" in text
    assert f'(in Chinese: “<span lang="zh">{ZH_TITLE}</span>”)' in html


def test_the_summary_reads_only_the_english_sources(brief_settings, sessions, english_fake):
    ids = _with_chinese(sessions)
    from digest.cluster import cluster_pending
    from tests.digest_world import embed

    embed(brief_settings, sessions)
    cluster_pending(brief_settings, sessions)
    profile = load_topic(brief_settings, "ai-geopolitics")
    index = IndexStore(brief_settings.index_dir).load()
    with sessions() as session:
        story = session.get(Story, _story_of(sessions, ids["rule"]).id)
        read = story_input(session, story, profile, index)
    assert ids["rule_zh"] in {s.item_id for s in read.sources}
    assert read.passages and ids["rule_zh"] not in {p.item_id for p in read.passages}
    assert not any(CJK.search(p.text) for p in read.passages)
    assert foreign_only(read) is None


def test_a_chinese_only_story_is_labelled_with_its_original_headline(brief_settings, sessions, english_fake):
    ids = _with_chinese(sessions)
    from digest.cluster import cluster_pending
    from tests.digest_world import embed

    embed(brief_settings, sessions)
    cluster_pending(brief_settings, sessions)
    profile = load_topic(brief_settings, "ai-geopolitics")
    with sessions() as session:
        story = session.get(Story, _story_of(sessions, ids["drones"]).id)
        read = story_input(session, story, profile, IndexStore(brief_settings.index_dir).load())
    assert foreign_only(read) == "zh" and read.title == ZH_ONLY_TITLE
    summarizer = FakeSummarizer()
    summaries = summaries_for(brief_settings, sessions, FakeEncoder(), summarizer)
    (card,) = _cards(summaries, [read], [])
    assert summarizer.calls.get("card", 0) == 0  # nothing is summarised from Chinese text
    assert card.covered_only_in == "zh" and card.title == ZH_ONLY_TITLE and not card.summary
    assert one_line(card) == f"Covered only in Chinese: {ZH_ONLY_TITLE}"
    brief = DailyBrief(topic="ai-geopolitics", topic_title="AI geopolitics", day=NOW.date().isoformat(),
                       generated_at=NOW.isoformat(), cards=[card], lead=None, podcasts=None, unverified=[],
                       story_ids=[card.story_id])
    rendered = render_brief(brief)
    assert "Covered only in Chinese" in rendered.text and ZH_ONLY_TITLE in rendered.text
    assert "<strong>Covered only in Chinese</strong>" in rendered.html


def test_a_card_for_a_story_in_english_is_never_labelled():
    from digest.summary.base import StoryInput
    from digest.summary.schema import SourceRef

    english = SourceRef(item_id=1, title="t", url=None, publisher="wire", kind="article", language="en")
    unknown = SourceRef(item_id=2, title="t", url=None, publisher="daily", kind="article")
    chinese = SourceRef(item_id=3, title="标题", url=None, publisher="智能观察", kind="article", language="zh")
    story = StoryInput(story_id=1, title="t", topic="x", sources=[chinese, english], passages=[])
    assert foreign_only(story) is None
    assert foreign_only(StoryInput(story_id=1, title="t", topic="x", sources=[unknown], passages=[])) is None
    only = StoryInput(story_id=2, title="标题", topic="x", sources=[chinese], passages=[])
    assert foreign_only(only) == "zh" and covered_only_card(only, "zh").covered_only_in == "zh"


def test_a_chinese_only_story_on_the_topic_is_ranked_and_shown_labelled(brief_settings, sessions, english_fake):
    """Ranked by USE-m3 against the topic (its MiniLM centroid says nothing), the off-topic one stays out."""
    from digest.rank import FOREIGN_SCALE
    from store.models import StoryScore
    from tests.crosslingual_world import load_crosslingual
    from tests.digest_world import embed

    ids = _with_chinese(sessions)
    ascend = load_crosslingual()["items"]["c3-zh-1"]  # Huawei's Ascend 910C ships: no English report of it here
    with sessions() as session, session.begin():
        xws = add_source(session, "https://xws.example/feed", title="芯闻社")
        item = add_item(session, xws, ascend["title"], ascend["text"], hours_ago=4)
        item.language = "zh-CN"
        ids["ascend"] = item.id
    embed(brief_settings, sessions)
    _, brief = _build(brief_settings, sessions)
    ascend_story, drones = _story_of(sessions, ids["ascend"]).id, _story_of(sessions, ids["drones"]).id
    with sessions() as session:
        scores = {s.story_id: s for s in session.query(StoryScore).filter(StoryScore.story_id.in_([ascend_story, drones]))}
    assert _story_of(sessions, ids["ascend"]).item_count == 1, "joined an English story"
    assert scores[ascend_story].details["relevance"]["by"].startswith("google/universal-sentence-encoder")
    assert scores[ascend_story].relevance >= brief_settings.min_relevance > scores[drones].relevance
    card = next(c for c in brief.cards if c.story_id == ascend_story)
    assert card.covered_only_in == "zh" and card.title == ascend["title"] and not card.summary
    assert drones not in brief.story_ids and FOREIGN_SCALE > 0


def test_slack_marks_a_chinese_source_and_a_chinese_only_story():
    from digest.slack_blocks import card_blocks
    from digest.summary.base import StoryInput
    from digest.summary.schema import SourceRef

    chinese = SourceRef(item_id=3, title=ZH_ONLY_TITLE, url="https://zngc.example/1", publisher="智能观察",
                        kind="article", language="zh")
    card = covered_only_card(StoryInput(story_id=2, title=ZH_ONLY_TITLE, topic="x", sources=[chinese], passages=[]), "zh")
    text = json.dumps(card_blocks(1, card), ensure_ascii=False)
    assert "Covered only in Chinese" in text and ZH_ONLY_TITLE in text and "智能观察 · in Chinese" in text
